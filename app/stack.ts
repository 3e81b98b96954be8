import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadB2buaConfig } from '../lib/config/b2bua-config';
import { ConfigError } from '../lib/config/engine-args';
import { envWithDotenv } from '../lib/config/env';
import { loadStackConfig, type StackConfig } from '../lib/config/stack-config';
import { ExtensionStore, generatePassword } from '../lib/extensions';
import { NativeProcessError } from '../lib/stack/native-process';
import { Stack } from '../lib/stack/stack';

const DEMO_EXTENSIONS = ['6001', '6002', '6003'];

function fail(message: string): never {
  process.stderr.write(`stack: ${message}\n`);
  process.exit(1);
}

/** A secret kept in var/ across restarts (created once, readable by the owner only). */
function persistentSecret(file: string, bytes: number): string {
  if (existsSync(file)) {
    const v = readFileSync(file, 'utf8').trim();
    if (v.length >= 16) return v;
  }
  const v = randomBytes(bytes).toString('hex');
  writeFileSync(file, `${v}\n`, { mode: 0o600 });
  return v;
}

/** Creates the demo extensions when none exist; returns the new ones with their passwords. */
function provision(config: StackConfig): { created: Array<[string, string]>; existing: string[] } {
  const store = ExtensionStore.open(join(config.varDir, 'kamailio.sqlite'));
  try {
    const existing = store.listExtensions().map((e) => e.extension);
    if (existing.length > 0) return { created: [], existing };
    const created: Array<[string, string]> = DEMO_EXTENSIONS.map((ext) => [ext, generatePassword(12)]);
    for (const [ext, pw] of created) store.addExtension(ext, pw, config.sip.domain);
    return { created, existing: [] };
  } finally {
    store.close();
  }
}

/** `npm start`: Kamailio, RTPEngine, the SIP engine and the B2BUA, supervised, until Ctrl-C. */
async function main(): Promise<void> {
  const env = envWithDotenv('.env', process.env);
  let config: StackConfig;
  try {
    config = loadStackConfig(env, process.cwd());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  mkdirSync(config.varDir, { recursive: true });
  const secret = env.DRACHTIO_SECRET?.trim() || persistentSecret(join(config.varDir, 'drachtio-secret'), 24);
  const adminToken = env.OPERATOR_ADMIN_TOKENS?.trim() ? undefined : persistentSecret(join(config.varDir, 'operator-token'), 24);
  const b2buaEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) b2buaEnv[k] = v;
  if (adminToken) b2buaEnv.OPERATOR_ADMIN_TOKENS = adminToken;
  b2buaEnv.OPERATOR_PORT ??= '8080';
  // Check the B2BUA's settings here too, so a bad one stops start-up before anything runs.
  try {
    loadB2buaConfig({ ...b2buaEnv, DRACHTIO_SECRET: secret });
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }

  const log = pino({ level: env.LOG_LEVEL ?? 'info', base: { proc: 'stack' }, redact: { paths: ['secret', '*.secret'], censor: '[redacted]' } });
  const { created, existing } = provision(config);

  let stack: Stack;
  try {
    stack = await Stack.start({ config, secret, b2buaEnv, logger: log, echoB2bua: process.stdout });
  } catch (err) {
    if (err instanceof NativeProcessError || err instanceof ConfigError) fail(err.message);
    throw err;
  }

  const sipHost = config.sip.advertised ?? config.sip.address;
  const lines = [
    '',
    `  Phones register at  sip:${sipHost}:${config.sip.port}  (UDP and TCP), domain/realm "${config.sip.domain}"`,
    ...(created.length > 0
      ? ['  New demo extensions (passwords are shown once; change them with `npm run extensions -- passwd <ext>`):', ...created.map(([e, p]) => `      ${e}  password ${p}`)]
      : [`  Extensions: ${existing.join(', ')}   (npm run extensions -- list)`]),
    `  Dial plan: ${b2buaEnv.DIAL_PLAN ?? '6XXX'}    media: ${config.media === 'off' ? 'off' : `RTPEngine on ${config.rtpengine.mediaAddress}, ports ${config.rtpengine.portMin}-${config.rtpengine.portMax}`}`,
    `  Operator web page and API: http://${b2buaEnv.OPERATOR_ADDRESS ?? '127.0.0.1'}:${b2buaEnv.OPERATOR_PORT}/  (bearer token in ${adminToken ? join(config.varDir, 'operator-token') : 'OPERATOR_ADMIN_TOKENS'})`,
    `  Call log: ${b2buaEnv.DATABASE_URL ? 'PostgreSQL (DATABASE_URL)' : (b2buaEnv.CALL_LOG_PATH ?? join(config.varDir, 'calls.db'))}    npm run calls -- list | show <id> | tail`,
    `  Engine status: http://127.0.0.1:${config.engine.statusPort}/status    logs: ${join(config.varDir, 'log')}/`,
    `  PIDs: ${Object.entries(stack.pids()).map(([n, p]) => `${n} ${p}`).join(', ')}`,
    '  Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = async (why: string, code: number): Promise<void> => {
    if (stopping) {
      process.stderr.write('stack: second signal, killing children\n');
      for (const pid of Object.values(stack.pids())) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      process.exit(1);
    }
    stopping = true;
    log.info({ why }, 'stopping the stack');
    await stack.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop('SIGINT', 0));
  process.on('SIGTERM', () => void stop('SIGTERM', 0));
  void stack.failure.then((err) => {
    log.fatal({ err: err.message }, 'a component keeps failing');
    void stop(err.message, 1);
  });
}

main().catch((err: unknown) => fail((err as Error).stack ?? String(err)));
