import Srf from 'drachtio-srf';
import { writeSync } from 'node:fs';
import { pino } from 'pino';
import { B2buaService } from '../lib/b2bua/b2bua-service';
import { CallLimits } from '../lib/b2bua/call-limits';
import { OverloadGuard } from '../lib/b2bua/overload';
import { loadB2buaConfig, type B2buaConfig } from '../lib/config/b2bua-config';
import { ConfigError } from '../lib/config/engine-args';
import { envWithDotenv } from '../lib/config/env';
import { NoMediaAnchor } from '../lib/media/media-anchor';
import { RtpEngineAnchor } from '../lib/media/rtpengine-anchor';
import { CallLogWriter } from '../lib/b2bua/call-log-writer';
import { EngineCapture } from '../lib/b2bua/engine-capture';
import type { CallStore } from '../lib/call-log/call-record';
import { openCallStore, redactUrl } from '../lib/call-log/open-store';
import { B2buaMetrics, MeteredMediaAnchor } from '../lib/operator/metrics';
import { startOperatorServer } from '../lib/operator/operator-server';

/** The environment: .env (when present in the working directory) under the process environment. */
function readEnv(): Record<string, string | undefined> {
  return envWithDotenv(process.env.ENV_FILE ?? '.env', process.env);
}

/**
 * Where the B2BUA's log lines go: stdout, from the main thread, the lines of each 10 ms in one
 * write(2). pino's default destination hands each line to the thread pool, which on a loopback
 * pipe costs more than the write itself (measured: about 75 us per line against 45 us), and a
 * write per line was still ~6% of the B2BUA's CPU at 300 calls/s. Never blocking: when the
 * reader falls behind (EAGAIN), lines wait in memory in order and are retried every 10 ms; past
 * 16 MiB waiting, lines are dropped (counted, and said once the backlog drains). What waits is
 * written out synchronously at exit (a SIGKILL loses at most the last 10 ms of lines).
 */
class StdoutLines {
  static readonly MAX_BACKLOG = 16 * 1024 * 1024;
  #backlog: Buffer[] = [];
  #backlogBytes = 0;
  #dropped = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  /** Lines of the current 10 ms, not yet written. */
  #pending = '';

  write(line: string): boolean {
    if (this.#closed) return true;
    if (this.#pending.length + line.length > 1024 * 1024) this.#take();
    this.#pending += line;
    if (this.#timer === undefined) this.#timer = setTimeout(() => this.#retry(), 10).unref();
    return true;
  }

  /** Moves the pending lines to the backlog, as one chunk. */
  #take(): void {
    if (this.#pending.length === 0) return;
    const chunk = Buffer.from(this.#pending);
    this.#pending = '';
    this.#queue(chunk);
  }

  /** Writes what waits, blocking up to `timeoutMs` on a full pipe (for the exit). */
  flushSync(timeoutMs = 1000): void {
    this.#take();
    const until = Date.now() + timeoutMs;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (this.#backlog.length > 0 && !this.#closed && Date.now() < until) {
      if (!this.#drainOnce()) Atomics.wait(pause, 0, 0, 5);
    }
  }

  #transient(err: unknown): boolean {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') return true;
    // EPIPE and the like: nobody reads our output any more.
    this.#closed = true;
    this.#backlog = [];
    this.#backlogBytes = 0;
    return false;
  }

  #queue(chunk: Buffer): void {
    if (this.#backlogBytes + chunk.length > StdoutLines.MAX_BACKLOG) {
      // a chunk is whole lines: count them
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) this.#dropped++;
      return;
    }
    this.#backlog.push(chunk);
    this.#backlogBytes += chunk.length;
    if (this.#timer === undefined) this.#timer = setTimeout(() => this.#retry(), 10).unref();
  }

  #retry(): void {
    this.#timer = undefined;
    this.#take();
    this.#drainOnce();
    if (this.#backlog.length > 0) {
      this.#timer = setTimeout(() => this.#retry(), 10).unref();
    } else if (this.#dropped > 0) {
      const dropped = this.#dropped;
      this.#dropped = 0;
      this.write(`${JSON.stringify({ level: 40, time: Date.now(), proc: 'b2bua', msg: 'log lines dropped: stdout was not read in time', dropped })}\n`);
    }
  }

  /** Writes as much of the backlog as the pipe takes now; false when it took nothing. */
  #drainOnce(): boolean {
    let progress = false;
    while (this.#backlog.length > 0) {
      const head = this.#backlog[0] as Buffer;
      let n = 0;
      try {
        n = writeSync(1, head);
      } catch (err) {
        this.#transient(err);
        return progress;
      }
      progress ||= n > 0;
      this.#backlogBytes -= n;
      if (n < head.length) {
        this.#backlog[0] = head.subarray(n);
        return progress;
      }
      this.#backlog.shift();
    }
    return progress;
  }
}

function fail(message: string): never {
  process.stderr.write(`b2bua: ${message}\n`);
  process.exit(1);
}

/** Entry point of the B2BUA process: a drachtio-srf application bridging extension calls. */
async function main(): Promise<void> {
  // drachtio-srf's SIP parser reads process.env.DRACHTIO_PRESERVE_HEADER_NAMES for every header
  // of every message it parses or looks up (lib/sip-parser/parser.js getHeaderName), a few
  // hundred reads per call. Node's process.env is a native interceptor (getenv under a lock);
  // a plain copy, taken at start-up, makes those reads ordinary property loads.
  // This process neither changes its environment nor relies on native code seeing changes.
  process.env = { ...process.env };
  let config: B2buaConfig;
  try {
    config = loadB2buaConfig(readEnv());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const out = new StdoutLines();
  process.on('exit', () => out.flushSync());
  // Two views of one logger: `callsLog` for the per-call lines (the call sessions and the media
  // anchor, which log call fields only), and `log`, with redaction, for everything else (the
  // operator endpoint and its requests, settings, errors). Redaction walks every logged object
  // (`*.secret`): about twice the cost of a line, paid where a secret could appear.
  const callsLog = pino({ level: config.logLevel, base: { proc: 'b2bua', instance: config.instance, pid: process.pid } }, out);
  const log = callsLog.child({}, { redact: { paths: ['secret', '*.secret', 'token', '*.token', 'req.headers.authorization'], censor: '[redacted]' } });

  const media = new MeteredMediaAnchor(
    config.media.kind === 'off'
      ? new NoMediaAnchor()
      : new RtpEngineAnchor({ engines: config.media.engines, selection: config.media.selection, timeoutMs: config.media.timeoutMs, logger: callsLog.child({ component: 'media' }) }),
  );

  // The call log opens (and migrates) before any call is taken, and closes the records an earlier
  // run left open (a crash, SIGKILL) as interrupted.
  const cl = config.callLog;
  const where = cl.databaseUrl ? redactUrl(cl.databaseUrl) : cl.sqlitePath;
  let store: CallStore | undefined;
  if (cl.enabled) {
    try {
      store = await openCallStore({ databaseUrl: cl.databaseUrl, sqlitePath: cl.sqlitePath });
    } catch (err) {
      fail(`call log at ${where}: ${(err as Error).message} (${cl.databaseUrl ? 'DATABASE_URL' : 'CALL_LOG_PATH'})`);
    }
  }
  // The call log takes each finished call's capture from the engine (which then forgets it); the
  // operator API only looks, at live calls and at calls whose messages are not stored yet.
  const capture = cl.captureUrl ? new EngineCapture(cl.captureUrl) : undefined;
  const captureTaken = cl.captureUrl ? new EngineCapture(cl.captureUrl, { take: true }) : undefined;
  const callLog = new CallLogWriter({ store, capture: captureTaken, captureGraceMs: cl.captureGraceMs, flushMs: cl.flushMs, instance: config.instance, logger: log.child({ component: 'call-log' }) });
  await callLog.recover();
  callLog.startPruning(cl.retentionDays, cl.sipRetentionDays);

  // Overload protection watches the media server's backlog, so it exists only with media.
  const overload =
    config.media.kind === 'off' || config.media.overload.waitMs === 0
      ? undefined
      : new OverloadGuard((rank) => media.backlog(rank), config.media.overload, callsLog.child({ component: 'overload' }));

  const srf = new Srf();
  const service = new B2buaService({
    srf,
    media,
    kamailioUri: config.kamailioUri,
    instance: config.instance,
    dialPlan: config.dialPlan,
    limits: new CallLimits({ maxCalls: config.maxCalls, maxCallsPerExtension: config.maxCallsPerExtension }),
    ...(overload ? { overload } : {}),
    retryAfterSec: config.retryAfterSec,
    noAnswerTimeoutMs: config.noAnswerTimeoutSec * 1000,
    sessionTimer: config.sessionTimer,
    logger: callsLog,
  });
  service.attach();
  callLog.attach(service);
  const metrics = new B2buaMetrics(service, callLog, media, overload);
  media.meter(metrics.rtpengineErrors);

  let connected = false;
  srf.on('connect', (err, hostPort) => {
    if (err) return;
    connected = true;
    log.info({ drachtio: `${config.drachtio.host}:${config.drachtio.port}`, sip: hostPort }, 'b2bua connected to the drachtio server');
  });
  srf.on('error', (err) => {
    log.warn({ err: err.message, drachtio: `${config.drachtio.host}:${config.drachtio.port}` }, 'drachtio connection error (retrying)');
  });
  // drachtio-srf emits 'close' (not the 'disconnect' of its typings) when the socket drops, then
  // reconnects by itself and emits 'connect' again.
  (srf as unknown as NodeJS.EventEmitter).on('close', () => {
    if (!connected) return;
    connected = false;
    log.warn('drachtio connection lost: releasing the calls in progress');
    void service.abandonAll();
  });
  srf.connect({ host: config.drachtio.host, port: config.drachtio.port, secret: config.drachtio.secret });

  const operator = config.operator
    ? await startOperatorServer({
        config: config.operator,
        service,
        callLog,
        store,
        capture,
        metrics,
        maxCalls: config.maxCalls,
        logger: log,
        readiness: {
          drachtio: async () => {
            if (!connected) throw new Error('not connected');
          },
          media: () => media.ping(),
          ...(store ? { callLog: () => (store as CallStore).ping() } : {}),
        },
      }).catch((err: unknown) => fail(`operator endpoint on ${config.operator?.address}:${config.operator?.port}: ${(err as Error).message} (OPERATOR_ADDRESS / OPERATOR_PORT)`))
    : undefined;
  log.info(
    {
      kamailio: config.kamailioUri,
      dialPlan: config.dialPlan.patterns,
      media: config.media.kind === 'off' ? 'off' : config.media.engines.map((e) => `${e.host}:${e.port}`),
      operator: config.operator ? `${config.operator.address}:${config.operator.port}` : 'off',
      callLog: store ? `${store.kind} ${where}` : 'off',
      sipCapture: cl.captureUrl ?? 'off',
      limits: { maxCalls: config.maxCalls, perExtension: config.maxCallsPerExtension },
      overload: overload ? { mediaRequests: overload.limits.requests, mediaWaitMs: overload.limits.waitMs } : 'off',
    },
    'b2bua started',
  );

  process.on('unhandledRejection', (err) => {
    log.error({ err: err instanceof Error ? err.stack : String(err) }, 'unhandled rejection');
  });

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, calls: service.sessions.size, timeoutSec: config.shutdownTimeoutSec }, 'shutting down: refusing new calls');
    const hungUp = await service.drain(config.shutdownTimeoutSec * 1000);
    if (hungUp > 0) log.warn({ calls: hungUp }, 'shutdown: calls still up after the grace period were hung up');
    srf.disconnect();
    await callLog.flush();
    await operator?.close();
    capture?.close();
    captureTaken?.close();
    overload?.close();
    await media.close();
    await store?.close();
    log.info('b2bua stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => fail((err as Error).stack ?? String(err)));
