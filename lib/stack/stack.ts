import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { StackConfig } from '../config/stack-config';
import { startKamailio } from './kamailio';
import { describeExit, NativeProcess, waitForLine } from './native-process';
import { startRtpEngine } from './rtpengine';

/** The nearest directory above `start` holding package.json: the repository root from lib/ or dist/lib/. */
export function findRepoRoot(start: string = __dirname): string {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${start}`);
  }
}

export interface StackOptions {
  readonly config: StackConfig;
  /** The drachtio shared secret the engine and the B2BUA share. Never logged. */
  readonly secret: string;
  /** Environment of the B2BUA process (its settings; DRACHTIO_* and RTPENGINE_NG are filled in). */
  readonly b2buaEnv: Readonly<Record<string, string>>;
  readonly logger: Logger;
  /** Extra engine options (e.g. ["--sip-t1", "100"]). */
  readonly engineArgs?: readonly string[];
  /** Write the B2BUA's JSON log lines to this stream too (the terminal under `npm start`). */
  readonly echoB2bua?: NodeJS.WritableStream;
  /** Restart a child that dies (default true); tests turn it off to see failures. */
  readonly supervise?: boolean;
  /**
   * The B2BUA uses a drachtio server started elsewhere (a real drachtio-server, or the engine run
   * by hand): no engine child, and no capture URL (a drachtio-server has no capture endpoint).
   * config.engine then says where it is: its SIP address (Kamailio's ENGINE_URI and the one
   * address Kamailio trusts) and its wire address; `secret` must be its shared secret.
   */
  readonly externalEngine?: boolean;
  /** Directory of the compiled entry points (default <repo>/dist/app). */
  readonly appDir?: string;
}

/** 'rtpengine' is the first RTPEngine; further instances are 'rtpengine-2', 'rtpengine-3', ... */
type ChildName = 'kamailio' | 'rtpengine' | `rtpengine-${number}` | 'engine' | 'b2bua';

export interface RtpEngineInstance {
  readonly name: 'rtpengine' | `rtpengine-${number}`;
  readonly ngPort: number;
  readonly portMin: number;
  readonly portMax: number;
}

/**
 * The RTPEngine processes a config asks for: NG ports ngPorts (or ngPort, ngPort+1, ...), and the
 * media port range cut into equal even-aligned shares, so no two instances ever bind one port.
 */
export function rtpEngineInstances(config: StackConfig): RtpEngineInstance[] {
  const { ngPort, ngPorts, portMin, portMax } = config.rtpengine;
  const n = config.rtpengine.instances ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`rtpengine.instances must be a positive integer, got ${n}`);
  if (ngPorts !== undefined && ngPorts.length !== n) throw new RangeError(`rtpengine.ngPorts lists ${ngPorts.length} ports for ${n} instances`);
  // RTP on even ports, RTCP on the next odd one: every share starts even and holds whole pairs.
  const first = portMin % 2 === 0 ? portMin : portMin + 1;
  const share = Math.floor((portMax - first + 1) / n / 2) * 2;
  if (share < 16) throw new RangeError(`rtpengine: ${n} instances leave ${share} ports each in ${portMin}-${portMax}; at least 16 are needed`);
  return Array.from({ length: n }, (_, i) => ({
    name: i === 0 ? 'rtpengine' : (`rtpengine-${i + 1}` as const),
    ngPort: ngPorts?.[i] ?? ngPort + i,
    portMin: first + i * share,
    portMax: first + (i + 1) * share - 1,
  }));
}

interface Child {
  readonly name: ChildName;
  readonly launch: () => Promise<NativeProcess>;
  proc: NativeProcess | undefined;
  restarts: number[];
}

const RESTART_WINDOW_MS = 60_000;
const MAX_RESTARTS_IN_WINDOW = 5;

/**
 * The whole system on one machine: Kamailio, RTPEngine, the SIP engine and the B2BUA as child
 * processes, started in dependency order, restarted when one dies (with back-off, up to 5 times a
 * minute), and stopped in reverse order by PID. Runtime files live under the config's varDir.
 */
export class Stack {
  readonly #opts: StackOptions;
  readonly #children: Child[] = [];
  #stopping = false;
  #failed: ((err: Error) => void) | undefined;
  /** Settles with an error if a child keeps dying (the caller should stop the stack). */
  readonly failure: Promise<Error>;

  private constructor(options: StackOptions) {
    this.#opts = options;
    this.failure = new Promise<Error>((resolve) => {
      this.#failed = resolve;
    });
  }

  static async start(options: StackOptions): Promise<Stack> {
    const stack = new Stack(options);
    try {
      await stack.#startAll();
    } catch (err) {
      await stack.stop();
      throw err;
    }
    return stack;
  }

  get config(): StackConfig {
    return this.#opts.config;
  }

  /** The running process of a child, if any. */
  process(name: ChildName): NativeProcess | undefined {
    return this.#children.find((c) => c.name === name)?.proc;
  }

  /** Every RTPEngine process (one per instance), in instance order. */
  rtpengines(): NativeProcess[] {
    return this.#children.filter((c) => c.name === 'rtpengine' || c.name.startsWith('rtpengine-')).flatMap((c) => (c.proc ? [c.proc] : []));
  }

  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.#children) if (c.proc?.running) out[c.name] = c.proc.pid;
    return out;
  }

  async #startAll(): Promise<void> {
    const { config, logger, secret } = this.#opts;
    const run = join(config.varDir, 'run');
    const logs = join(config.varDir, 'log');
    mkdirSync(run, { recursive: true });
    mkdirSync(logs, { recursive: true });
    const appDir = this.#opts.appDir ?? join(findRepoRoot(), 'dist', 'app');
    const log = (name: string): Logger => logger.child({ child: name });

    const children: Array<Omit<Child, 'proc' | 'restarts'>> = [
      {
        name: 'kamailio',
        launch: () =>
          startKamailio({
            listen: { address: config.sip.address, port: config.sip.port, advertise: config.sip.advertised },
            engine: { address: config.engine.sipAddress, port: config.engine.sipPort },
            dbFile: join(config.varDir, 'kamailio.sqlite'),
            domain: config.sip.domain,
            runDir: join(run, 'kamailio'),
            antiflood: config.antiflood ?? false,
            sharedMemoryMb: config.kamailio?.sharedMemoryMb,
            children: config.kamailio?.children,
            debugLevel: config.kamailio?.debugLevel,
            logger: log('kamailio'),
            logFile: join(logs, 'kamailio.log'),
          }),
      },
    ];
    const rtpengines = config.media === 'rtpengine' ? rtpEngineInstances(config) : [];
    for (const r of rtpengines) {
      children.push({
        name: r.name,
        launch: () =>
          startRtpEngine({
            name: r.name,
            interface: { address: config.rtpengine.mediaAddress, advertise: config.sip.advertised },
            ng: { address: '127.0.0.1', port: r.ngPort },
            portMin: r.portMin,
            portMax: r.portMax,
            logLevel: config.rtpengine.logLevel ?? 5,
            pidFile: join(run, `${r.name}.pid`),
            logger: log(r.name),
            logFile: join(logs, `${r.name}.log`),
          }),
      });
    }
    if (this.#opts.externalEngine !== true) {
      children.push({
        name: 'engine',
        launch: () =>
          NativeProcess.start({
            name: 'engine',
            command: process.execPath,
            args: [
              join(appDir, 'engine.js'),
              '--contact', `sip:${config.engine.sipAddress}:${config.engine.sipPort};transport=udp,tcp`,
              '--address', config.engine.wireAddress,
              '--port', String(config.engine.wirePort),
              '--loglevel', 'info',
              '--prometheus-scrape-port', `127.0.0.1:${config.engine.statusPort}`,
              '--capture',
              '--capture-max-calls', '5000',
              ...(this.#opts.engineArgs ?? []),
            ],
            // The secret goes by environment, not argv, so `ps` does not show it.
            env: { ...process.env, DRACHTIO_SECRET: secret },
            logger: log('engine'),
            logFile: join(logs, 'engine.log'),
            ready: (p) => waitForLine(p, (l) => l.includes('"engine ready"')).then(() => undefined),
          }),
      });
    }
    children.push({
      name: 'b2bua',
      launch: () =>
        NativeProcess.start({
          name: 'b2bua',
          command: process.execPath,
          args: [join(appDir, 'b2bua.js')],
          env: {
            PATH: process.env.PATH ?? '/usr/bin:/bin',
            // The call log beside the other runtime files, and the ladders from the engine's capture.
            CALL_LOG_PATH: join(config.varDir, 'calls.db'),
            ...(this.#opts.externalEngine === true ? {} : { ENGINE_CAPTURE_URL: `http://127.0.0.1:${config.engine.statusPort}` }),
            ...this.#opts.b2buaEnv,
            ENV_FILE: '/dev/null',
            DRACHTIO_HOST: config.engine.wireAddress,
            DRACHTIO_PORT: String(config.engine.wirePort),
            DRACHTIO_SECRET: secret,
            KAMAILIO_SIP_URI: `sip:${config.sip.address}:${config.sip.port}`,
            MEDIA: config.media,
            RTPENGINE_NG: rtpengines.map((r) => `127.0.0.1:${r.ngPort}`).join(',') || `127.0.0.1:${config.rtpengine.ngPort}`,
          },
          logger: log('b2bua'),
          logFile: join(logs, 'b2bua.log'),
          echo: this.#opts.echoB2bua,
          // SIGKILL only after the B2BUA's own drain (SHUTDOWN_TIMEOUT) had its chance.
          stopTimeoutMs: (Number(this.#opts.b2buaEnv.SHUTDOWN_TIMEOUT ?? 30) || 30) * 1000 + 15_000,
          ready: (p) => waitForLine(p, (l) => l.includes('"b2bua connected to the drachtio server"')).then(() => undefined),
        }),
    });

    for (const spec of children) {
      const child: Child = { ...spec, proc: undefined, restarts: [] };
      this.#children.push(child);
      await this.#launch(child);
    }
  }

  async #launch(child: Child): Promise<void> {
    const started = Date.now();
    const proc = await child.launch();
    if (this.#stopping) {
      // stop() ran while this child was (re)starting: do not leave it behind.
      await proc.stop();
      return;
    }
    child.proc = proc;
    this.#opts.logger.info({ child: child.name, pid: proc.pid, ms: Date.now() - started }, `${child.name} started`);
    proc.once('exit', (exit) => {
      if (this.#stopping || child.proc !== proc) return;
      this.#opts.logger.error({ child: child.name, pid: proc.pid, exit: describeExit(exit), last: proc.output().slice(-5) }, `${child.name} died`);
      if (this.#opts.supervise === false) {
        this.#failed?.(new Error(`${child.name} exited (${describeExit(exit)})`));
        return;
      }
      void this.#restart(child);
    });
  }

  async #restart(child: Child): Promise<void> {
    const now = Date.now();
    child.restarts = child.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    if (child.restarts.length >= MAX_RESTARTS_IN_WINDOW) {
      this.#failed?.(new Error(`${child.name} died ${MAX_RESTARTS_IN_WINDOW} times within a minute; giving up`));
      return;
    }
    child.restarts.push(now);
    const delay = Math.min(30_000, 500 * 2 ** (child.restarts.length - 1));
    this.#opts.logger.warn({ child: child.name, inMs: delay }, `restarting ${child.name}`);
    await new Promise((r) => setTimeout(r, delay));
    if (this.#stopping) return;
    try {
      await this.#launch(child);
    } catch (err) {
      this.#opts.logger.error({ child: child.name, err: (err as Error).message }, `${child.name} failed to restart`);
      if (!this.#stopping) void this.#restart(child);
    }
  }

  /** Stops every child in reverse start order (the B2BUA first, so it can drain). Idempotent. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const child of [...this.#children].reverse()) {
      const proc = child.proc;
      if (!proc?.running) continue;
      const exit = await proc.stop();
      this.#opts.logger.info({ child: child.name, pid: proc.pid, exit: describeExit(exit) }, `${child.name} stopped`);
    }
  }
}
