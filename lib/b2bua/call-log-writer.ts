import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { CallRecord, CallStore, StoredMediaDirection } from '../call-log/call-record';
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
  /** How long after a call ends its messages are fetched (the last ACK/200 must be in the capture). */
  readonly captureGraceMs: number;
  readonly instance: string;
  readonly logger: Logger;
}

interface CallLogWriterEvents {
  /** A live call's record changed (every state change, and its end). */
  update: [CallRecord];
  /** A call's record is final, its SIP messages stored. */
  final: [CallRecord];
}

/**
 * Writes every call's record through a CallStore: at the first INVITE, at every state change and
 * at the end; then, after a short grace, both legs' SIP messages from the engine's capture.
 * Writes of one call are serialised so a later state is never overwritten by an earlier one. A
 * store error is logged and counted; it never touches the call.
 */
export class CallLogWriter extends EventEmitter<CallLogWriterEvents> {
  readonly #opts: CallLogWriterOptions;
  readonly #chains = new Map<string, Promise<void>>();
  readonly #graces = new Map<string, { timer: NodeJS.Timeout; run: () => void }>();
  #writeErrors = 0;
  #pruneTimer: NodeJS.Timeout | undefined;

  constructor(opts: CallLogWriterOptions) {
    super();
    this.#opts = opts;
  }

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
    for (const id of ids) {
      const record = await store.get(id);
      if (record) await this.#storeMessages(record);
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

  /** Runs pending message fetches now and waits for every write in flight (for shutdown). */
  async flush(): Promise<void> {
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    for (const g of [...this.#graces.values()]) {
      clearTimeout(g.timer);
      g.run();
    }
    while (this.#chains.size > 0) await Promise.all([...this.#chains.values()]);
  }

  #enqueue(id: string, work: () => Promise<void>): void {
    const prev = this.#chains.get(id) ?? Promise.resolve();
    const next = prev.then(work).catch((err: unknown) => {
      this.#writeErrors++;
      this.#opts.logger.error({ callId: id, err: (err as Error).message }, 'call log write failed');
    });
    this.#chains.set(id, next);
    void next.then(() => {
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    });
  }

  #write(summary: CallSummary): void {
    const record = recordOf(summary);
    this.emit('update', record);
    const store = this.#opts.store;
    if (store) this.#enqueue(record.id, () => store.upsert(record));
  }

  #end(summary: CallSummary): void {
    const record = recordOf(summary);
    this.emit('update', record);
    const store = this.#opts.store;
    if (!store) {
      this.emit('final', record);
      return;
    }
    const bCallIds = [...summary.bCallIds];
    this.#enqueue(record.id, () => store.upsert(record));
    const run = (): void => {
      this.#graces.delete(record.id);
      this.#enqueue(record.id, async () => {
        await this.#storeMessages(record, bCallIds);
        this.emit('final', record);
      });
    };
    const timer = setTimeout(run, this.#opts.captureGraceMs);
    this.#graces.set(record.id, { timer, run });
  }

  async #storeMessages(record: CallRecord, bCallIds: readonly string[] = record.bCallId ? [record.bCallId] : []): Promise<void> {
    const { store, capture } = this.#opts;
    if (!store || !capture) return;
    try {
      const { messages, truncated } = await callMessages(capture, record.aCallId, bCallIds);
      if (messages.length > 0 && (await store.messages(record.id)).length === 0) await store.addMessages(record.id, messages);
      if (truncated) this.#opts.logger.info({ callId: record.id }, 'call log: SIP capture of this call was truncated by the engine');
    } catch (err) {
      this.#opts.logger.warn({ callId: record.id, err: (err as Error).message }, 'call log: could not read the SIP capture from the engine');
    }
  }
}
