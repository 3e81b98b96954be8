import { pino } from 'pino';
import { SipEngine } from '../lib/engine/engine';
import { startStatusServer } from '../lib/engine/status-server';
import { ConfigError, ENGINE_USAGE, parseEngineArgs } from '../lib/config/engine-args';
import { ENGINE_VERSION } from '../lib/engine/version';

/** Entry point of the SIP engine process: drachtio-server's command line, JSON logs on stdout. */
async function main(): Promise<void> {
  let args;
  try {
    args = parseEngineArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`engine: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  if (args.help) {
    process.stdout.write(`${ENGINE_USAGE}\n`);
    return;
  }
  if (args.version) {
    process.stdout.write(`${ENGINE_VERSION}\n`);
    return;
  }
  const log = pino({ level: args.loglevel, base: { proc: 'engine', pid: process.pid } });
  const engine = new SipEngine({
    sip: args.sip,
    wire: { address: args.address, port: args.port, secret: args.secret },
    timers: { T1: args.t1, T2: args.t2, T4: args.t4 },
    maxMessageSize: args.maxMessageSize,
    tcp: { stallTimeoutMs: args.tcpStallSeconds * 1000, idleTimeoutMs: 300_000 },
    capture: args.capture ? { maxCalls: args.captureMaxCalls, maxBytesPerCall: 256 * 1024 } : undefined,
    version: ENGINE_VERSION,
    log,
  });
  let status: Awaited<ReturnType<typeof startStatusServer>> | undefined;
  try {
    await engine.start();
    if (args.status) status = await startStatusServer(engine, args.status.host, args.status.port);
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'engine failed to start');
    process.stderr.write(`engine: ${(err as Error).message}\n`);
    await engine.close().catch(() => undefined);
    process.exit(1);
  }
  log.info(
    {
      sip: args.sip.map((s) => `${s.transports.join(',')}/${s.host}:${s.port}${s.externalIp ? ` (advertised ${s.externalIp})` : ''}`),
      wire: `${args.address}:${args.port}`,
      status: args.status ? `${args.status.host}:${args.status.port}` : undefined,
      version: ENGINE_VERSION,
    },
    'engine ready',
  );
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) process.exit(0);
    stopping = true;
    log.info({ signal }, 'engine stopping');
    status?.close();
    void engine.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
