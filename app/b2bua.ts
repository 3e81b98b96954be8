import Srf from 'drachtio-srf';
import { pino } from 'pino';
import { B2buaService } from '../lib/b2bua/b2bua-service';
import { CallLimits } from '../lib/b2bua/call-limits';
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

function fail(message: string): never {
  process.stderr.write(`b2bua: ${message}\n`);
  process.exit(1);
}

/** Entry point of the B2BUA process: a drachtio-srf application bridging extension calls. */
async function main(): Promise<void> {
  let config: B2buaConfig;
  try {
    config = loadB2buaConfig(readEnv());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const log = pino({
    level: config.logLevel,
    base: { proc: 'b2bua', instance: config.instance, pid: process.pid },
    redact: { paths: ['secret', '*.secret', 'token', '*.token', 'req.headers.authorization'], censor: '[redacted]' },
  });

  const media = new MeteredMediaAnchor(
    config.media.kind === 'off'
      ? new NoMediaAnchor()
      : new RtpEngineAnchor({ engines: config.media.engines, selection: config.media.selection, timeoutMs: config.media.timeoutMs, logger: log.child({ component: 'media' }) }),
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
  const capture = cl.captureUrl ? new EngineCapture(cl.captureUrl) : undefined;
  const callLog = new CallLogWriter({ store, capture, captureGraceMs: cl.captureGraceMs, instance: config.instance, logger: log.child({ component: 'call-log' }) });
  await callLog.recover();
  callLog.startPruning(cl.retentionDays, cl.sipRetentionDays);

  const srf = new Srf();
  const service = new B2buaService({
    srf,
    media,
    kamailioUri: config.kamailioUri,
    instance: config.instance,
    dialPlan: config.dialPlan,
    limits: new CallLimits({ maxCalls: config.maxCalls, maxCallsPerExtension: config.maxCallsPerExtension }),
    retryAfterSec: config.retryAfterSec,
    noAnswerTimeoutMs: config.noAnswerTimeoutSec * 1000,
    logger: log,
  });
  service.attach();
  callLog.attach(service);
  const metrics = new B2buaMetrics(service, callLog);
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
    await media.close();
    await store?.close();
    log.info('b2bua stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => fail((err as Error).stack ?? String(err)));
