/**
 * WAL checkpoints of the SQLite call log on a worker thread. A checkpoint copies the WAL's pages
 * into the database file and fsyncs it: 10-20 ms for SQLite's default 1000 pages on a disk. Left
 * to SQLite, it runs inside whichever commit crosses the threshold, on the event loop of the
 * B2BUA. Here the B2BUA's connection never checkpoints (wal_autocheckpoint=0); a second
 * connection on a worker does.
 *
 * A PASSIVE checkpoint never waits for the writer and never blocks it: the writer goes on
 * appending to the WAL meanwhile. But the WAL only starts again from its beginning when a writer
 * finds every frame copied, and under steady writes frames keep arriving during each checkpoint:
 * the file would grow for ever (measured: 185 MB in 12 s at 400 calls/s). So once the WAL holds
 * `restartFrames`, the store's writes pause (without blocking its event loop) while a RESTART
 * checkpoint copies the frames added since the last one and syncs, milliseconds, and the next
 * write starts the WAL again.
 */
import { Worker } from 'node:worker_threads';

export interface CheckpointResult {
  /** PASSIVE: copied what it could alongside the writer; RESTART: with the writer paused, so the WAL starts again. */
  readonly mode: 'PASSIVE' | 'RESTART';
  /** Frames in the WAL as the checkpoint found it, and how many of them are in the database file. */
  readonly log: number;
  readonly checkpointed: number;
  /** It could not finish (a reader held on to the WAL). */
  readonly busy: boolean;
  readonly ms: number;
}

export interface WalCheckpointerOptions {
  readonly file: string;
  readonly busyTimeoutMs: number;
  /** The least time between the starts of two PASSIVE checkpoints. */
  readonly intervalMs: number;
  /** WAL frames (pages) from which the WAL is restarted. */
  readonly restartFrames: number;
  readonly onCheckpoint?: ((result: CheckpointResult) => void) | undefined;
  /** The worker failed or exited: nobody checkpoints any more. */
  readonly onFailure: (err: Error) => void;
}

/** Longest the writes wait for a RESTART checkpoint; past it they try the lock again (and wait for it without blocking). */
const RESTART_WAIT_MS = 1000;

/** The worker: plain JavaScript, so it runs the same from dist/ and under the test runner's TypeScript loader. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { timeout: workerData.busyTimeoutMs });
parentPort.on('message', (mode) => {
  if (mode === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  const started = performance.now();
  try {
    const [r] = db.pragma(mode === 'RESTART' ? 'wal_checkpoint(RESTART)' : 'wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ mode, log: r.log, checkpointed: r.checkpointed, busy: r.busy !== 0, ms: performance.now() - started });
  } catch (err) {
    parentPort.postMessage({ mode, error: String(err && err.message ? err.message : err) });
  }
});
`;

/**
 * The worker's driver, on the store's thread. PASSIVE checkpoints at most every intervalMs after
 * a write. Once one finds the WAL at restartFrames, the next write pauses the store's writes
 * (`restarting`) and has the worker run a RESTART checkpoint: with no writer about, it finishes
 * at once, and the first write after it starts the WAL again. (Left to wait for a gap between
 * the store's transactions, a RESTART starves while writes are steady.)
 */
export class WalCheckpointer {
  readonly #opts: WalCheckpointerOptions;
  readonly #worker: Worker;
  /** A checkpoint is running in the worker. */
  #busy = false;
  /** poke() came while one ran: look again when it is done. */
  #poked = false;
  #lastStart = 0;
  #restartNeeded = false;
  #restart: { promise: Promise<void>; done: () => void; timer: NodeJS.Timeout } | undefined;
  #again: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  #failed = false;

  constructor(opts: WalCheckpointerOptions) {
    this.#opts = opts;
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver: require.resolve('better-sqlite3'), file: opts.file, busyTimeoutMs: opts.busyTimeoutMs },
    });
    // Never what keeps the process alive.
    this.#worker.unref();
    this.#worker.on('message', (m: CheckpointResult | { mode: CheckpointResult['mode']; error: string }) => this.#done(m));
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => {
      if (this.#closing === undefined) this.#fail(new Error(`call log WAL checkpoint worker exited (code ${code})`));
    });
  }

  /** While a RESTART checkpoint runs: what the store's writes wait for first. */
  get restarting(): Promise<void> | undefined {
    return this.#restart?.promise;
  }

  /** After a write (between two transactions of the store): the next checkpoint, now or soon. */
  poke(): void {
    if (this.#closing !== undefined || this.#failed) return;
    if (this.#busy) {
      this.#poked = true;
      return;
    }
    if (this.#restartNeeded) {
      this.#restartNeeded = false;
      let done!: () => void;
      const promise = new Promise<void>((resolve) => (done = resolve));
      const timer = setTimeout(() => this.#endRestart(), RESTART_WAIT_MS);
      timer.unref();
      this.#restart = { promise, done, timer };
      this.#start('RESTART');
      return;
    }
    const wait = this.#lastStart + this.#opts.intervalMs - performance.now();
    if (wait > 0) {
      this.#again ??= setTimeout(() => {
        this.#again = undefined;
        this.poke();
      }, wait);
      this.#again.unref();
      return;
    }
    this.#lastStart = performance.now();
    this.#start('PASSIVE');
  }

  /** Stops the worker (its connection closed first). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#again !== undefined) clearTimeout(this.#again);
      this.#endRestart();
      if (this.#failed) return;
      const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
      // Until it has closed its connection, the worker is what close() waits for.
      this.#worker.ref();
      this.#worker.postMessage('close');
      await exited;
    })();
    return this.#closing;
  }

  #start(mode: CheckpointResult['mode']): void {
    this.#busy = true;
    this.#worker.postMessage(mode);
  }

  #done(m: CheckpointResult | { mode: CheckpointResult['mode']; error: string }): void {
    this.#busy = false;
    if (m.mode === 'RESTART') this.#endRestart();
    if ('error' in m) {
      this.#fail(new Error(`call log WAL checkpoint (${m.mode}) failed: ${m.error}`));
      return;
    }
    if (m.mode === 'PASSIVE' && m.log >= this.#opts.restartFrames) this.#restartNeeded = true;
    this.#opts.onCheckpoint?.({ mode: m.mode, log: m.log, checkpointed: m.checkpointed, busy: m.busy, ms: m.ms });
    if (this.#poked || this.#restartNeeded) {
      this.#poked = false;
      this.poke();
    }
  }

  #endRestart(): void {
    const restart = this.#restart;
    if (restart === undefined) return;
    this.#restart = undefined;
    clearTimeout(restart.timer);
    restart.done();
  }

  #fail(err: Error): void {
    if (this.#failed || this.#closing !== undefined) return;
    this.#failed = true;
    if (this.#again !== undefined) clearTimeout(this.#again);
    this.#endRestart();
    void this.#worker.terminate();
    this.#opts.onFailure(err);
  }
}
