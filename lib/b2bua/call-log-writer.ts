import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { CallMessages, CallRecord, CallStore, StoredMediaDirection } from '../call-log/call-record';
import type { MediaDirectionStats } from '../media/media-anchor';
import type { B2buaService } from './b2bua-service';
import type { CallSummary } from './call-session';
import { callMessages, type CaptureSource } from './engine-capture';

function direction(d: MediaDirectionStats): StoredMediaDirection {
  return { packets: d.packets, bytes: d.bytes, packetsLost: d.packetsLost ?? null, jitterMs: d.jitterMs ?? null, mos: d.mos ?? null };
}

/** The call record for a call's summary as it stands now. */
export function recordOf(s: CallSummary, now: Date = new Date()): CallRecord {
  const received = s.receivedAt.getTime();
  const ended = s.endedAt ?? null;
  // Post-dial delay: INVITE to the first sign of the far end (ringing, answer, or the final failure).
  const firstAnswer = s.ringingAt ?? s.answeredAt ?? ended;
  return {
    id: s.id,
    instance: s.instance,
    aCallId: s.aLeg.callId,
    bCallId: s.bLeg.callId === '' ? null : s.bLeg.callId,
    callerUser: s.caller.user,
    callerName: s.caller.displayName ?? null,
    callerAddress: s.caller.address,
    callerPort: s.caller.port,
    callee: s.callee,
    state: s.state,
    receivedAt: s.receivedAt,
    ringingAt: s.ringingAt ?? null,
    answeredAt: s.answeredAt ?? null,
    endedAt: ended,
    postDialDelayMs: firstAnswer ? firstAnswer.getTime() - received : null,
    durationSec: ended ? Math.round(ended.getTime() - received) / 1000 : null,
    billableSec: ended ? (s.answeredAt ? Math.ceil((ended.getTime() - s.answeredAt.getTime()) / 1000) : 0) : null,
    // The session knows `answered` from the answer on; the record has an outcome only once it ended.
    outcome: ended ? (s.outcome ?? null) : null,
    hangupBy: s.hangupBy ?? null,
    aStatus: s.aLeg.status ?? null,
    aReason: s.aLeg.reason ?? null,
    bStatus: s.bLeg.status ?? null,
    bReason: s.bLeg.reason ?? null,
    transfers: [...s.transfers],
    media: s.media ? { callerToCallee: direction(s.media.callerToCallee), calleeToCaller: direction(s.media.calleeToCaller), engine: s.media.engine } : null,
    updatedAt: now,
  };
}

export interface CallLogWriterOptions {
  /** Undefined when the call log is off (CALL_LOG=off): events still flow, nothing is stored. */
  readonly store: CallStore | undefined;
  readonly capture: CaptureSource | undefined;
  /**
   * How long after a call ends its messages are fetched (the last ACK/200 must be in the capture);
   * rounded up to the next multiple of `flushMs` since the epoch, so captures are read in groups.
   */
  readonly captureGraceMs: number;
  readonly instance: string;
  readonly logger: Logger;
  /**
   * How long a change waits to be written together with others (CALL_LOG_FLUSH_MS; default 50
   * ms, 0 for the next turn of the event loop): one transaction per window rather than one per
   * state change, and a call that changes state several times in one window written once. What
   * a crash can lose: the last window, except answers, which are staged at the next turn.
   */
  readonly flushMs?: number;
  /** Writes without waiting for the window once this many calls' records and captures wait (default 200). */
  readonly flushPending?: number;
}

export const DEFAULT_FLUSH_MS = 50;
export const DEFAULT_FLUSH_PENDING = 200;

interface CallLogWriterEvents {
  /** A live call's record changed (every state change, and its end). */
  update: [CallRecord];
  /** A call's record is final, its SIP messages stored. */
  final: [CallRecord];
}

/**
 * Writes every call's record through a CallStore: at the first INVITE, at every state change and
 * at the end; then, after a short grace, both legs' SIP messages from the engine's capture.
 *
 * Writes are batched: the latest record of each call that changed, and the captures read, wait
 * up to `flushMs` and go to the store in one `write()` (fewer, larger transactions; SQLite's
 * trigram index and WAL commit cost per transaction, not per row). A call answered is also
 * staged at the next turn of the event loop (CallStore.stage(): durable at a fraction of a
 * write's cost): a crash right after an answer must still find it, since billing starts there.
 * One batch is written (or staged) at a time, so a later state of a call is never overwritten by
 * an earlier one. `update` events are emitted at once; `final` after the batch holding the call's
 * messages is written. A store error is logged and counted (one per record or capture lost); it
 * never touches the call.
 */
export class CallLogWriter extends EventEmitter<CallLogWriterEvents> {
  readonly #opts: CallLogWriterOptions;
  readonly #flushMs: number;
  readonly #flushPending: number;
  /** The latest record of each call not yet handed to the store. */
  #records = new Map<string, CallRecord>();
  /** Calls among them just answered: staged at the next turn, written with the window. */
  readonly #urgent = new Set<string>();
  /** The window closed while a write was running: everything goes when it is done. */
  #allDue = false;
  /** Captures waiting for the next batch. */
  #messages: CallMessages[] = [];
  /** What to do once the next batch is written (the `final` events of its calls). */
  #afterWrite: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  /** The batch being written. */
  #writing: Promise<void> | undefined;
  readonly #graces = new Map<string, { timer: NodeJS.Timeout; run: () => void }>();
  /** Captures being read from the engine. */
  readonly #reads = new Set<Promise<void>>();
  #writeErrors = 0;
  #pruneTimer: NodeJS.Timeout | undefined;

  constructor(opts: CallLogWriterOptions) {
    super();
    this.#opts = opts;
    const flushMs = opts.flushMs ?? DEFAULT_FLUSH_MS;
    const flushPending = opts.flushPending ?? DEFAULT_FLUSH_PENDING;
    if (!Number.isFinite(flushMs) || flushMs < 0) throw new RangeError(`call log flushMs must be a number of milliseconds >= 0, got ${flushMs}`);
    if (!Number.isInteger(flushPending) || flushPending < 1) throw new RangeError(`call log flushPending must be an integer >= 1, got ${flushPending}`);
    this.#flushMs = flushMs;
    this.#flushPending = flushPending;
  }

  /** Records and captures that could not be stored. */
  get writeErrors(): number {
    return this.#writeErrors;
  }

  get store(): CallStore | undefined {
    return this.#opts.store;
  }

  /** Follows every call the service admits. */
  attach(service: B2buaService): void {
    service.on('session', (session) => {
      this.#write(session.summary);
      session.on('state', () => this.#write(session.summary));
    });
    service.on('call-end', (summary) => this.#end(summary));
  }

  /**
   * Closes this instance's records left open by a crash as `interrupted`, and stores what the
   * engine still holds of their messages. Call before taking calls.
   */
  async recover(): Promise<string[]> {
    const store = this.#opts.store;
    if (!store) return [];
    const ids = await store.interruptUnfinished(this.#opts.instance, new Date());
    if (ids.length > 0) this.#opts.logger.warn({ calls: ids.length, ids: ids.slice(0, 20) }, 'call log: calls left open by an earlier run closed as interrupted');
    const captures: CallMessages[] = [];
    for (const id of ids) {
      const record = await store.get(id);
      const capture = record ? await this.#readCapture(record, record.bCallId ? [record.bCallId] : []) : undefined;
      if (capture) captures.push(capture);
    }
    if (captures.length > 0) {
      try {
        await store.write({ records: [], messages: captures });
      } catch (err) {
        this.#failed(err, [], captures);
      }
    }
    return ids;
  }

  /** Deletes records and SIP messages past retention now and then every hour. */
  startPruning(retentionDays: number, sipRetentionDays: number): void {
    const prune = async (): Promise<void> => {
      const store = this.#opts.store;
      if (!store) return;
      const day = 86_400_000;
      const now = Date.now();
      try {
        const r = await store.prune(new Date(now - retentionDays * day), new Date(now - sipRetentionDays * day));
        if (r.calls > 0 || r.messages > 0) this.#opts.logger.info({ calls: r.calls, messages: r.messages, retentionDays, sipRetentionDays }, 'call log pruned');
      } catch (err) {
        this.#opts.logger.error({ err: (err as Error).message }, 'call log: pruning failed');
      }
    };
    void prune();
    this.#pruneTimer = setInterval(() => void prune(), 3_600_000);
    this.#pruneTimer.unref();
  }

  /** Reads pending captures now and writes everything waiting, until nothing is left (for shutdown). */
  async flush(): Promise<void> {
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    for (;;) {
      for (const g of [...this.#graces.values()]) {
        clearTimeout(g.timer);
        g.run();
      }
      if (this.#reads.size > 0) await Promise.all([...this.#reads]);
      else if (this.#writing) await this.#writing;
      else if (this.#records.size > 0 || this.#messages.length > 0 || this.#afterWrite.length > 0) this.#startWrite(true);
      else return;
    }
  }

  #write(summary: CallSummary): void {
    const record = recordOf(summary);
    this.emit('update', record);
    if (!this.#opts.store) return;
    this.#records.set(record.id, record);
    // The answer is what billing starts from: a crash right after it must not lose it.
    if (record.state === 'answered') this.#urgent.add(record.id);
    this.#schedule();
  }

  #end(summary: CallSummary): void {
    const record = recordOf(summary);
    this.emit('update', record);
    if (!this.#opts.store) {
      this.emit('final', record);
      return;
    }
    this.#records.set(record.id, record);
    this.#schedule();
    const bCallIds = [...summary.bCallIds];
    const run = (): void => {
      this.#graces.delete(record.id);
      const read = (async () => {
        const capture = await this.#readCapture(record, bCallIds);
        if (capture) this.#messages.push(capture);
        this.#afterWrite.push(() => this.emit('final', record));
        this.#schedule();
      })();
      this.#reads.add(read);
      void read.finally(() => this.#reads.delete(read));
    };
    // The grace ends on a window boundary: the calls that ended in one window have their captures
    // read together (one write to the engine) and stored in one batch.
    const grace = this.#opts.captureGraceMs;
    const quantum = this.#flushMs;
    const delay = quantum > 0 ? grace + ((quantum - ((Date.now() + grace) % quantum)) % quantum) : grace;
    const timer = setTimeout(run, delay);
    this.#graces.set(record.id, { timer, run });
  }

  /**
   * Arranges the next write: everything when the window closes, or at the next turn when many
   * wait; the answered calls staged at the next turn. None while one is running: it calls again.
   */
  #schedule(): void {
    if (this.#writing) return;
    const waiting = this.#records.size + this.#messages.length;
    const all = this.#allDue || this.#flushMs === 0 || waiting >= this.#flushPending;
    if (all || this.#urgent.size > 0) {
      this.#immediate ??= setImmediate(() => {
        this.#immediate = undefined;
        this.#startWrite(this.#allDue || this.#flushMs === 0 || this.#records.size + this.#messages.length >= this.#flushPending);
      });
    }
    if (!all && this.#timer === undefined && (waiting > 0 || this.#afterWrite.length > 0)) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#startWrite(true);
      }, this.#flushMs);
    }
  }

  /** Hands everything waiting to the store as one batch (`all`), or stages the answered calls' records. */
  #startWrite(all: boolean): void {
    if (this.#writing) {
      if (all) this.#allDue = true;
      return;
    }
    if (!all) {
      this.#startStage();
      return;
    }
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#allDue = false;
    const records = [...this.#records.values()];
    const messages = this.#messages;
    const after = this.#afterWrite;
    this.#records = new Map();
    this.#messages = [];
    this.#afterWrite = [];
    // Written now: no need to stage them.
    this.#urgent.clear();
    const store = this.#opts.store;
    if (!store || (records.length === 0 && messages.length === 0)) {
      this.#runAll(after);
      return;
    }
    // Set before the write starts: a store may fail (or finish) synchronously.
    let written!: () => void;
    this.#writing = new Promise<void>((resolve) => (written = resolve));
    void (async () => {
      try {
        await store.write({ records, messages });
      } catch (err) {
        this.#failed(err, records, messages);
      }
      this.#writing = undefined;
      written();
      this.#runAll(after);
      if (this.#records.size > 0 || this.#messages.length > 0 || this.#afterWrite.length > 0) this.#schedule();
    })();
  }

  /**
   * Stages the answered calls' records: durable now, cheaply; they stay pending and go with the
   * window's write like any other.
   */
  #startStage(): void {
    const records: CallRecord[] = [];
    for (const id of this.#urgent) {
      const record = this.#records.get(id);
      if (record !== undefined) records.push(record);
    }
    this.#urgent.clear();
    const store = this.#opts.store;
    if (!store || records.length === 0) return;
    let staged!: () => void;
    this.#writing = new Promise<void>((resolve) => (staged = resolve));
    void (async () => {
      try {
        await store.stage(records);
      } catch (err) {
        // Not lost yet: the window's write still carries them.
        this.#opts.logger.warn({ records: records.length, callIds: records.slice(0, 10).map((r) => r.id), err: (err as Error).message }, 'call log: could not stage answered calls');
      }
      this.#writing = undefined;
      staged();
      if (this.#records.size > 0 || this.#messages.length > 0 || this.#afterWrite.length > 0) this.#schedule();
    })();
  }

  #runAll(callbacks: ReadonlyArray<() => void>): void {
    for (const f of callbacks) {
      try {
        f();
      } catch (err) {
        this.#opts.logger.error({ err: (err as Error).message }, 'call log: a final-record listener failed');
      }
    }
  }

  #failed(err: unknown, records: readonly CallRecord[], messages: readonly CallMessages[]): void {
    this.#writeErrors += records.length + messages.length;
    this.#opts.logger.error(
      {
        records: records.length,
        captures: messages.length,
        callIds: [...records.map((r) => r.id), ...messages.map((m) => m.callId)].slice(0, 10),
        err: (err as Error).message,
      },
      'call log write failed',
    );
  }

  /** Both legs' messages from the engine; undefined when there are none or they cannot be read (logged). */
  async #readCapture(record: CallRecord, bCallIds: readonly string[]): Promise<CallMessages | undefined> {
    const { capture } = this.#opts;
    if (!capture) return undefined;
    try {
      const { messages, truncated } = await callMessages(capture, record.aCallId, bCallIds);
      if (truncated) this.#opts.logger.info({ callId: record.id }, 'call log: SIP capture of this call was truncated by the engine');
      return messages.length > 0 ? { callId: record.id, messages } : undefined;
    } catch (err) {
      this.#opts.logger.warn({ callId: record.id, err: (err as Error).message }, 'call log: could not read the SIP capture from the engine');
      return undefined;
    }
  }
}
