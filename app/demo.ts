import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { StackConfig } from '../lib/config/stack-config';
import { ExtensionStore } from '../lib/extensions';
import { waitForSockets } from '../lib/stack/native-process';
import { findRepoRoot, Stack } from '../lib/stack/stack';

// `npm run demo`: a whole stack of its own on free loopback ports, two SIPp phones registered
// through Kamailio, one call with audio (a PCMA pcap) relayed by RTPEngine, then a summary.

const SCENARIOS = join(findRepoRoot(), 'test', 'scenarios');

async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const a = srv.address();
        srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const sock = createSocket('udp4');
      sock.once('error', () => resolve(false));
      sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

interface SippRun {
  code: number | null;
  messages: string;
}

function sipp(args: string[], traceDir: string, name: string): { done: Promise<SippRun>; pid: number } {
  const messageFile = join(traceDir, `${name}.msg`);
  const child = spawn('timeout', ['--kill-after=5', '60', 'sipp', ...args, '-nostdin', '-trace_msg', '-message_file', messageFile, '-trace_err', '-error_file', join(traceDir, `${name}.err`)], {
    stdio: 'ignore',
  });
  const done = new Promise<SippRun>((resolve) => {
    child.once('exit', (code) => {
      let messages = '';
      try {
        messages = readFileSync(messageFile, 'utf8');
      } catch {
        // no trace
      }
      resolve({ code, messages });
    });
  });
  return { done, pid: child.pid ?? -1 };
}

function firstLines(trace: string): string[] {
  const out: string[] = [];
  for (const block of trace.split(/^-{10,}.*$/m)) {
    const m = /^(UDP|TCP) message (sent|received)[^\n]*\n+(\S[^\r\n]*)/m.exec(block.trim());
    if (m) out.push(`${m[2] === 'sent' ? '->' : '<-'} ${m[3]}`);
  }
  return out;
}

async function main(): Promise<void> {
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const varDir = mkdtempSync(join(tmpdir(), 'b2bua-demo-'));
  const [sipPort, engineSip, wire, status, ng, operator, uasPort] = await Promise.all(Array.from({ length: 7 }, () => freePort()));
  const config: StackConfig = {
    sip: { address: '127.0.0.1', port: sipPort as number, advertised: undefined, domain: '127.0.0.1' },
    engine: { sipAddress: '127.0.0.2', sipPort: engineSip as number, wireAddress: '127.0.0.1', wirePort: wire as number, statusPort: status as number },
    rtpengine: { ngPort: ng as number, portMin: 41000, portMax: 41999, mediaAddress: '127.0.0.3' },
    media: 'rtpengine',
    varDir,
    antiflood: undefined,
  };
  const pw = { '6001': randomBytes(6).toString('hex'), '6002': randomBytes(6).toString('hex') };
  const store = ExtensionStore.open(join(varDir, 'kamailio.sqlite'));
  store.addExtension('6001', pw['6001'], '127.0.0.1');
  store.addExtension('6002', pw['6002'], '127.0.0.1');
  store.close();

  say('demo: starting Kamailio, RTPEngine (media on 127.0.0.3), the SIP engine and the B2BUA ...');
  const stack = await Stack.start({
    config,
    secret: randomBytes(12).toString('hex'),
    b2buaEnv: { OPERATOR_PORT: String(operator), OPERATOR_ADMIN_TOKENS: randomBytes(16).toString('hex'), LOG_LEVEL: 'info', B2BUA_INSTANCE: 'demo' },
    logger: pino({ level: 'warn' }),
    supervise: false,
  });
  // The B2BUA's JSON lines as the supervisor reads them (its log file is appended in batches).
  const b2buaLines: string[] = [...(stack.process('b2bua')?.output() ?? [])];
  stack.process('b2bua')?.on('line', (line) => b2buaLines.push(line));
  const kamailio = `127.0.0.1:${sipPort}`;
  let exitCode = 0;
  try {
    say(`demo: Kamailio on ${kamailio}; extensions 6001 and 6002 provisioned`);
    const callee = sipp(['-sf', join(SCENARIOS, 'uas-ext-answer.xml'), '-i', '127.0.0.1', '-p', String(uasPort), '-m', '1', '-rtp_echo', '-key', 'caller', '6002'], varDir, 'callee');
    await waitForSockets([{ port: uasPort as number, protocol: 'udp' }]);
    const reg = await sipp(
      ['-sf', join(SCENARIOS, 'kam-register.xml'), '-i', '127.0.0.1', '-m', '1', '-s', '6002', '-ap', pw['6002'], '-key', 'domain', '127.0.0.1', '-key', 'contact_host', '127.0.0.1', '-key', 'contact_port', String(uasPort), '-key', 'expires', '300', '-key', 'status', '200', kamailio],
      varDir,
      'register',
    ).done;
    say(`demo: 6002 ${reg.code === 0 ? 'registered (REGISTER -> 401 -> REGISTER with digest -> 200)' : 'FAILED to register'}`);
    say('demo: 6001 calls 6002 and plays 8 s of PCMA audio; 6002 echoes it back ...');
    const caller = await sipp(
      ['-sf', join(SCENARIOS, 'uac-ext-audio.xml'), '-i', '127.0.0.1', '-m', '1', '-s', '6002', '-au', '6001', '-ap', pw['6001'], '-key', 'caller', '6001', '-d', '8000', kamailio],
      varDir,
      'caller',
    ).done;
    const calleeRun = await callee.done;
    say('');
    say('  caller 6001 (SIPp)                    callee 6002 (SIPp)');
    const a = firstLines(caller.messages);
    const b = firstLines(calleeRun.messages);
    for (let i = 0; i < Math.max(a.length, b.length); i++) say(`  ${(a[i] ?? '').slice(0, 40).padEnd(42)}${(b[i] ?? '').slice(0, 48)}`);
    say('');
    const log = b2buaLines
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const ended = log.find((l) => l.msg === 'call ended');
    if (ended) {
      const media = ended.media as { callerToCallee?: { packets: number; bytes: number }; calleeToCaller?: { packets: number; bytes: number } } | undefined;
      say(`demo: B2BUA call ${String(ended.callId)}: ${String(ended.outcome)}, hung up by ${String(ended.hangupBy)}, ${Math.round(Number(ended.durationMs) / 100) / 10} s`);
      say(`demo: RTPEngine relayed ${media?.callerToCallee?.packets ?? 0} packets 6001 -> 6002 and ${media?.calleeToCaller?.packets ?? 0} packets 6002 -> 6001`);
    }
    const ok = caller.code === 0 && calleeRun.code === 0 && reg.code === 0;
    say(`demo: ${ok ? 'the call worked end to end' : `something failed (SIPp exit codes: caller ${caller.code}, callee ${calleeRun.code}); traces in ${varDir}`}`);
    exitCode = ok ? 0 : 1;
  } finally {
    await stack.stop();
    if (exitCode === 0) rmSync(varDir, { recursive: true, force: true });
  }
  process.exit(exitCode);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${(err as Error).message}\n`);
  process.exit(1);
});
