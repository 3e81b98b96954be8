// docker-compose.yml, the production deployment, checked offline with Debian's docker-compose 1.29
// (no Docker engine runs here): the file is accepted, and the configuration it resolves to keeps
// the deployment's rules. Above all: Kamailio trusts X-Call-ID / X-From-App from ENGINE_IP only,
// so ENGINE_IP must be the drachtio container's fixed address; and the wire-protocol secret comes
// from the environment, never from the file.
//
// docker-compose must be installed (`npm test` runs `scripts/ensure.mjs --native`, which installs
// it); without it this test fails, it does not skip.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import t from 'tap';

const ROOT = resolve(__dirname, '..', '..');
const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');
/** The brief's five, and `extensions`, which creates Kamailio's SQLite schema before it starts. */
const SERVICES = ['b2bua', 'drachtio', 'extensions', 'freeswitch', 'kamailio', 'rtpengine'];

/** The required settings, as an operator's .env would give them (192.0.2.0/24 is TEST-NET-1). */
const REQUIRED: Readonly<Record<string, string>> = {
  DRACHTIO_SECRET: `compose-test-${randomBytes(8).toString('hex')}`,
  SIP_ADVERTISED_ADDRESS: '192.0.2.10',
  SIP_DOMAIN: 'pbx.example.org',
};

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function isObject(value: Json | undefined): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The value at `path` below `value`, or undefined when any step is missing. */
function at(value: Json | undefined, ...path: string[]): Json | undefined {
  let current = value;
  for (const key of path) {
    if (!isObject(current)) return undefined;
    current = current[key];
  }
  return current;
}

function strings(value: Json | undefined): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/** The argument after each occurrence of `flag` in a command line. */
function argsAfter(command: string[], flag: string): string[] {
  return command.flatMap((arg, i) => (arg === flag && i + 1 < command.length ? [command[i + 1] ?? ''] : []));
}

function ipv4ToInt(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${address}`);
  }
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

function inCidr(address: string, cidr: string): boolean {
  const [base = '', bits = ''] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipv4ToInt(base) / size) * size;
  const n = ipv4ToInt(address);
  return n >= start && n < start + size;
}

/** Docker duration ("45s", "1m30s", "500ms") in seconds. */
function durationSeconds(text: string): number {
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6 };
  let total = 0;
  let rest = text.trim();
  while (rest) {
    const match = /^(\d+(?:\.\d+)?)(h|ms|m|s|us)/.exec(rest);
    if (!match?.[1] || !match[2]) throw new Error(`not a duration: ${text}`);
    total += Number(match[1]) * (units[match[2]] ?? 0);
    rest = rest.slice(match[0].length);
  }
  return total;
}

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/local/bin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<RunResult> {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', rejectRun);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

const dockerCompose = findBinary('docker-compose');

if (dockerCompose === undefined) {
  t.fail('docker-compose is not installed, so docker-compose.yml cannot be checked. Install it with '
    + '`node scripts/ensure.mjs --native` (as root), or `apt-get install -y --no-install-recommends docker-compose`.');
} else {
  const composeBinary: string = dockerCompose;
  const rawFile = readFileSync(COMPOSE_FILE, 'utf8');

  // A developer's .env must not leak into these checks: docker-compose reads an empty one instead,
  // and every variable the file interpolates (and COMPOSE_*, which steers docker-compose itself)
  // is removed from the inherited environment.
  const workDir = mkdtempSync(join(tmpdir(), 'compose-test-'));
  const emptyEnvFile = join(workDir, 'empty.env');
  writeFileSync(emptyEnvFile, '');
  t.teardown(() => rmSync(workDir, { recursive: true, force: true }));
  const interpolated = new Set([...rawFile.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1] ?? ''));

  const childEnv = (settings: Readonly<Record<string, string>>): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) {
      if (!interpolated.has(name) && !name.startsWith('COMPOSE_')) env[name] = value;
    }
    return { ...env, ...settings };
  };

  const compose = (args: string[], settings: Readonly<Record<string, string>> = REQUIRED): Promise<RunResult> =>
    run(composeBinary, ['--env-file', emptyEnvFile, '-f', COMPOSE_FILE, ...args], childEnv(settings));

  const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter(Boolean);

  // docker-compose prints the resolved file as YAML. Its own Python has PyYAML (a dependency of
  // docker-compose), so that interpreter, named on the script's first line, turns it into JSON.
  const python = (): string[] => {
    const head = readFileSync(composeBinary).subarray(0, 200).toString('latin1').split('\n')[0] ?? '';
    return head.startsWith('#!') ? head.slice(2).trim().split(/\s+/) : ['python3'];
  };

  let resolvedCache: Promise<JsonObject> | undefined;
  const resolved = (): Promise<JsonObject> => {
    resolvedCache ??= (async () => {
      const out = await compose(['config']);
      if (out.code !== 0) throw new Error(`docker-compose config failed (${out.code}): ${out.stderr}`);
      const [interpreter = 'python3', ...pre] = python();
      const toJson = 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)';
      const json = await run(interpreter, [...pre, '-c', toJson], process.env, out.stdout);
      if (json.code !== 0) throw new Error(`converting the resolved YAML with ${interpreter} failed: ${json.stderr}`);
      const value = JSON.parse(json.stdout) as Json;
      if (!isObject(value)) throw new Error(`docker-compose config printed no mapping: ${out.stdout.slice(0, 200)}`);
      return value;
    })();
    return resolvedCache;
  };

  const service = async (name: string): Promise<JsonObject> => {
    const value = at(await resolved(), 'services', name);
    if (!isObject(value)) throw new Error(`service ${name} is missing from the resolved file`);
    return value;
  };

  t.test('the file is valid: `config -q` exits 0 and prints nothing', async (tt) => {
    const out = await compose(['config', '-q']);
    tt.equal(out.code, 0, `exit code 0 (stderr: ${out.stderr.trim()})`);
    tt.equal(out.stderr, '', 'nothing on stderr (no unset variable, no warning)');
    tt.equal(out.stdout, '', 'nothing on stdout');
  });

  t.test('the services; FreeSWITCH only under the conference profile', async (tt) => {
    const services = await compose(['config', '--services']);
    tt.equal(services.code, 0, services.stderr);
    tt.same(lines(services.stdout).sort(), SERVICES);
    const profiles = await compose(['config', '--profiles']);
    tt.equal(profiles.code, 0, profiles.stderr);
    tt.same(lines(profiles.stdout), ['conference'], 'the only profile is `conference`');
    // docker-compose 1.29 lists profiled services in `config --services` too (only up/run honour
    // profiles), so "not started by default" is asserted on each service's profiles.
    tt.same(strings(at(await service('freeswitch'), 'profiles')), ['conference'], 'freeswitch needs --profile conference');
    for (const name of SERVICES.filter((s) => s !== 'freeswitch')) {
      tt.equal(at(await service(name), 'profiles'), undefined, `${name} has no profile: always started`);
    }
  });

  t.test('Kamailio trusts exactly the drachtio container\'s fixed address (ENGINE_IP)', async (tt) => {
    const config = await resolved();
    const ipam = at(config, 'networks', 'voip', 'ipam', 'config');
    const pool = Array.isArray(ipam) ? ipam[0] : undefined;
    const subnet = at(pool, 'subnet');
    const dynamicRange = at(pool, 'ip_range');
    tt.type(subnet, 'string', 'the voip network has a fixed subnet');
    tt.type(dynamicRange, 'string', 'dynamic addresses come from a range of their own');
    if (typeof subnet !== 'string' || typeof dynamicRange !== 'string') return;

    const kamailio = await service('kamailio');
    const drachtio = await service('drachtio');
    const engineIp = at(drachtio, 'networks', 'voip', 'ipv4_address');
    const kamailioIp = at(kamailio, 'networks', 'voip', 'ipv4_address');
    tt.type(engineIp, 'string', 'drachtio has a static IPv4 address');
    tt.type(kamailioIp, 'string', 'kamailio has a static IPv4 address');
    if (typeof engineIp !== 'string' || typeof kamailioIp !== 'string') return;
    for (const [who, ip] of [['drachtio', engineIp], ['kamailio', kamailioIp]] as const) {
      tt.ok(inCidr(ip, subnet), `${who}'s ${ip} is inside ${subnet}`);
      tt.notOk(inCidr(ip, dynamicRange), `${who}'s ${ip} is outside the dynamic range ${dynamicRange}`);
    }

    const kamailioCommand = strings(at(kamailio, 'command'));
    const defines = argsAfter(kamailioCommand, '-A');
    tt.ok(defines.includes(`ENGINE_IP="${engineIp}"`), `kamailio runs with -A ENGINE_IP="${engineIp}"`);
    tt.ok(defines.includes(`ENGINE_URI="sip:${engineIp}:5080"`), 'ENGINE_URI is drachtio\'s SIP contact');
    // db_sqlite takes what follows "sqlite://" as the file's path (kamailio/kamailio.cfg's default too).
    tt.ok(defines.includes('DBURL="sqlite:///var/lib/kamailio/kamailio.sqlite"'), 'DBURL names the SQLite database');
    tt.ok(defines.includes(`SIP_DOMAIN="${REQUIRED.SIP_DOMAIN}"`), 'SIP_DOMAIN comes from the environment');
    tt.ok(defines.includes('WITH_ANTIFLOOD'), 'antiflood is on');
    tt.ok(defines.some((d) => /^PIKE_DENSITY=\d+$/.test(d)), 'PIKE_DENSITY is a number');
    const listens = argsAfter(kamailioCommand, '-l');
    tt.ok(listens.some((l) => l.startsWith(`udp:${kamailioIp}:5060`)), 'kamailio listens on UDP at its own address');
    tt.ok(listens.some((l) => l.startsWith(`tcp:${kamailioIp}:5060`)), 'kamailio listens on TCP at its own address');
    tt.ok(listens.every((l) => l.endsWith(`/${REQUIRED.SIP_ADVERTISED_ADDRESS}:5060`)), 'and advertises the host\'s address');
    for (const flag of ['-DD', '-E']) tt.ok(kamailioCommand.includes(flag), `kamailio runs with ${flag}`);
    tt.same(argsAfter(kamailioCommand, '-Y'), ['/run/kamailio']);
    tt.same(argsAfter(kamailioCommand, '-m'), ['256']);
    tt.same(argsAfter(kamailioCommand, '-M'), ['8']);

    const drachtioCommand = strings(at(drachtio, 'command'));
    tt.equal(drachtioCommand[0], 'drachtio', 'the image\'s entrypoint is given `drachtio` first');
    tt.same(argsAfter(drachtioCommand, '--contact'), [`sip:${engineIp}:5080;transport=udp,tcp`], 'drachtio\'s SIP contact is ENGINE_IP');
    tt.same(argsAfter(drachtioCommand, '--port'), ['9022']);
    tt.equal(at(await service('b2bua'), 'environment', 'KAMAILIO_SIP_URI'), `sip:${kamailioIp}:5060`, 'B legs go to Kamailio\'s fixed address');

    for (const name of SERVICES.filter((s) => s !== 'drachtio')) {
      tt.not(at(await service(name), 'networks', 'voip', 'ipv4_address'), engineIp, `${name} cannot hold ENGINE_IP`);
    }
  });

  t.test('DRACHTIO_SECRET comes from the environment, never from the file', async (tt) => {
    const assignments = rawFile.split('\n').filter((l) => /^\s*-?\s*DRACHTIO_SECRET\s*[:=]/.test(l));
    tt.ok(assignments.length >= 2, 'drachtio and the B2BUA both get DRACHTIO_SECRET');
    for (const line of assignments) {
      tt.match(line, /^\s*DRACHTIO_SECRET:\s*\$\{DRACHTIO_SECRET:\?[^}]+\}\s*$/, `required from the environment: ${line.trim()}`);
    }
    tt.notMatch(rawFile, /--secret/, 'no secret on any command line');
    tt.equal(at(await service('b2bua'), 'environment', 'DRACHTIO_SECRET'), REQUIRED.DRACHTIO_SECRET, 'the B2BUA gets the value from the environment');
    tt.equal(at(await service('drachtio'), 'environment', 'DRACHTIO_SECRET'), REQUIRED.DRACHTIO_SECRET, 'drachtio gets the same value');
  });

  t.test('without DRACHTIO_SECRET the file is rejected, naming it', async (tt) => {
    const { DRACHTIO_SECRET: _secret, ...withoutSecret } = REQUIRED;
    for (const [label, settings] of [['unset', withoutSecret], ['empty', { ...withoutSecret, DRACHTIO_SECRET: '' }]] as const) {
      const out = await compose(['config', '-q'], settings);
      tt.not(out.code, 0, `${label}: docker-compose exits with an error`);
      tt.match(out.stderr, /set DRACHTIO_SECRET/, `${label}: the message names DRACHTIO_SECRET`);
    }
  });

  t.test('the B2BUA: built from the Dockerfile, settings from .env.example, drained before it is killed', async (tt) => {
    const b2bua = await service('b2bua');
    tt.equal(at(b2bua, 'build', 'context'), ROOT, 'built from the repository\'s Dockerfile');
    tt.equal(at(b2bua, 'build', 'target'), undefined, 'the Dockerfile\'s last stage');
    tt.equal(at(b2bua, 'restart'), 'unless-stopped');
    const dependsOn = at(b2bua, 'depends_on');
    const dependencies = isObject(dependsOn) ? Object.keys(dependsOn) : strings(dependsOn);
    tt.ok(dependencies.includes('drachtio') && dependencies.includes('rtpengine'), 'starts after drachtio and rtpengine');

    const environment = at(b2bua, 'environment');
    tt.ok(isObject(environment), 'an environment map');
    if (!isObject(environment)) return;
    const contract = new Set([...readFileSync(join(ROOT, '.env.example'), 'utf8').matchAll(/^#?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    for (const name of Object.keys(environment)) tt.ok(contract.has(name), `${name} is a setting of .env.example`);
    for (const name of ['DRACHTIO_HOST', 'DRACHTIO_PORT', 'DRACHTIO_SECRET', 'KAMAILIO_SIP_URI', 'RTPENGINE_NG', 'MEDIA', 'DIAL_PLAN']) {
      tt.ok(name in environment, `${name} is set`);
    }
    tt.equal(environment.DRACHTIO_HOST, 'drachtio');

    const shutdown = Number(environment.SHUTDOWN_TIMEOUT);
    const grace = at(b2bua, 'stop_grace_period');
    tt.ok(Number.isFinite(shutdown) && shutdown > 0, 'SHUTDOWN_TIMEOUT is set');
    tt.type(grace, 'string', 'stop_grace_period is set');
    if (typeof grace === 'string') {
      tt.ok(durationSeconds(grace) > shutdown, `stop_grace_period ${grace} is longer than SHUTDOWN_TIMEOUT ${shutdown}s`);
    }
  });

  t.test('RTPEngine: userspace, the repository\'s config, its NG port where the B2BUA looks', async (tt) => {
    const rtpengine = await service('rtpengine');
    const command = strings(at(rtpengine, 'command'));
    tt.ok(command.includes('--table=-1'), 'userspace forwarding (--table=-1)');
    tt.ok(command.includes('--config-file=/etc/rtpengine/rtpengine.conf'), 'reads the mounted config file');
    tt.ok(strings(at(rtpengine, 'volumes')).includes(`${join(ROOT, 'rtpengine', 'rtpengine.conf')}:/etc/rtpengine/rtpengine.conf:ro`),
      'rtpengine/rtpengine.conf is mounted read-only');
    tt.ok(command.includes(`--interface=${REQUIRED.SIP_ADVERTISED_ADDRESS}`), 'media on the advertised address');
    const listenNg = command.find((arg) => arg.startsWith('--listen-ng='))?.slice('--listen-ng='.length);
    tt.equal(at(await service('b2bua'), 'environment', 'RTPENGINE_NG'), listenNg, 'RTPENGINE_NG is where rtpengine listens');
    if (at(rtpengine, 'network_mode') === 'host') {
      const pool = at(await resolved(), 'networks', 'voip', 'ipam', 'config');
      const gateway = at(Array.isArray(pool) ? pool[0] : undefined, 'gateway');
      tt.equal(listenNg?.split(':')[0], gateway, 'on the host network, NG listens on the voip bridge\'s gateway only');
    }
  });

  t.test('Kamailio: its config read-only from the repository, its SQLite database on a named volume', async (tt) => {
    const volumes = await compose(['config', '--volumes']);
    tt.equal(volumes.code, 0, volumes.stderr);
    tt.ok(lines(volumes.stdout).includes('kamailio-db'), 'the kamailio-db volume is declared');
    const kamailio = await service('kamailio');
    const mounts = strings(at(kamailio, 'volumes'));
    tt.ok(mounts.includes(`${join(ROOT, 'kamailio')}:/etc/kamailio:ro`), 'kamailio/ is mounted read-only at /etc/kamailio');
    tt.ok(mounts.some((m) => /^kamailio-db:\/var\/lib\/kamailio(:rw)?$/.test(m)), 'the DBURL directory is the named volume');

    // The schema comes from the extensions CLI, in the same file and before Kamailio starts.
    const dbUrl = argsAfter(strings(at(kamailio, 'command')), '-A').find((d) => d.startsWith('DBURL='));
    const dbFile = /^DBURL="sqlite:\/\/(\/.+)"$/.exec(dbUrl ?? '')?.[1];
    const extensions = await service('extensions');
    tt.same(argsAfter(strings(at(extensions, 'entrypoint')), '--db'), [dbFile], 'the extensions CLI opens the DBURL file');
    tt.ok(strings(at(extensions, 'volumes')).some((m) => /^kamailio-db:\/var\/lib\/kamailio(:rw)?$/.test(m)), 'on the same volume');
    tt.same(strings(at(extensions, 'command')), ['list'], 'on `up` it only creates or migrates the schema');
    tt.equal(at(kamailio, 'depends_on', 'extensions', 'condition'), 'service_completed_successfully', 'Kamailio starts after it has finished');
    tt.equal(at(extensions, 'image'), at(await service('b2bua'), 'image'), 'it runs the B2BUA image');
    tt.equal(at(extensions, 'environment', 'SIP_DOMAIN'), REQUIRED.SIP_DOMAIN, 'new credentials use Kamailio\'s realm');
    tt.equal(at(kamailio, 'image'), 'kamailio/kamailio:5.6.3-bookworm');
    tt.match(String(at(await service('drachtio'), 'image')), /^drachtio\/drachtio-server:0\.9\.\d+$/, 'a drachtio-server 0.9.x tag');
  });
}
