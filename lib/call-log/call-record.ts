/**
 * The call record: one row per call through the B2BUA, written at the first INVITE and updated at
 * every state change, so a crash loses nothing. `CallStore` is what the SQLite and PostgreSQL
 * stores implement; the B2BUA writes through it and the operator API reads through it.
 */
import type { CallOutcome, CallState, HangupSide } from '../b2bua/call-state';

export type { CallOutcome, HangupSide };

export const CALL_OUTCOMES: readonly CallOutcome[] = ['answered', 'busy', 'no-answer', 'cancelled', 'rejected', 'failed', 'interrupted'];
export const HANGUP_SIDES: readonly HangupSide[] = ['caller', 'callee', 'system', 'operator'];

/** Media figures one way, as RTPEngine's `delete` reply gave them. */
export interface StoredMediaDirection {
  packets: number;
  bytes: number;
  packetsLost: number | null;
  jitterMs: number | null;
  mos: number | null;
}

export interface StoredMedia {
  /** What the caller sent towards the callee. */
  callerToCallee: StoredMediaDirection;
  /** What the callee sent towards the caller. */
  calleeToCaller: StoredMediaDirection;
  /** The RTPEngine that anchored the call ("host:port"). */
  engine: string;
}

export interface CallRecord {
  /** The call's id: the UUID sent as X-Call-ID on the B leg (what sngrep/Homer correlate on). */
  id: string;
  /** The B2BUA instance that handled it (B2BUA_INSTANCE). */
  instance: string;
  /** SIP Call-ID of the A leg (caller -> Kamailio -> engine). */
  aCallId: string;
  /** SIP Call-ID of the B leg (engine -> Kamailio -> callee); null until it is sent. */
  bCallId: string | null;
  callerUser: string;
  callerName: string | null;
  /** Where the A leg's INVITE came from, as the engine saw it. */
  callerAddress: string;
  callerPort: number;
  /** The dialled extension. */
  callee: string;
  /** Last state the B2BUA reported (received, proceeding, early, answered, ending, ended, failed, cancelled). */
  state: CallState;
  receivedAt: Date;
  ringingAt: Date | null;
  answeredAt: Date | null;
  endedAt: Date | null;
  /** Milliseconds from the INVITE to the first ringing, answer or final failure. */
  postDialDelayMs: number | null;
  /** Seconds from the INVITE to the end (ms precision); null while the call lasts. */
  durationSec: number | null;
  /** Whole seconds from answer to end, rounded up (every started second is billed); 0 if not answered. */
  billableSec: number | null;
  /** Set when the call is over. */
  outcome: CallOutcome | null;
  hangupBy: HangupSide | null;
  /** The final status the B2BUA sent the caller, and its reason phrase. */
  aStatus: number | null;
  aReason: string | null;
  /** The final status the callee (through Kamailio) sent on the B leg. */
  bStatus: number | null;
  bReason: string | null;
  /** Extensions this call was transferred to (REFER), in order. */
  transfers: string[];
  media: StoredMedia | null;
  /** When the row was last written. */
  updatedAt: Date;
}

/** One SIP message of a call, as the engine captured it. */
export interface StoredSipMessage {
  /** 'a' for the caller's leg, 'b' for the callee's (a transfer's new B leg is also 'b'). */
  leg: 'a' | 'b';
  /** Capture time. */
  at: Date;
  /** As the engine saw it: 'in' received, 'out' sent. */
  dir: 'in' | 'out';
  transport: string;
  /** The far end "address:port" and the engine's own. */
  peer: string;
  local: string;
  /** The whole message, start line to body. */
  text: string;
}

export interface CallQuery {
  /** Caller user (exact). */
  caller?: string;
  /** Callee extension (exact). */
  callee?: string;
  /** Any of these outcomes. */
  outcomes?: readonly CallOutcome[];
  /** receivedAt >= from */
  from?: Date;
  /** receivedAt < to */
  to?: Date;
  /** Free text: a case-insensitive substring of caller user/name/address, callee, id, or either Call-ID. */
  text?: string;
  instance?: string;
  /** 1..500 */
  limit: number;
  /** Opaque, from a previous page's nextCursor. */
  cursor?: string;
}

export interface CallPage {
  /** Newest first (receivedAt descending, then id descending). */
  calls: CallRecord[];
  /** Pass as `cursor` for the next (older) page; null when this is the last. */
  nextCursor: string | null;
}

export interface CallStats {
  calls: number;
  answered: number;
  /** Answer-seizure ratio: answered / calls (0..1); null when there were no calls. */
  asr: number | null;
  /** Average billable seconds of answered calls; null when none was answered. */
  acdSec: number | null;
  byOutcome: Partial<Record<CallOutcome, number>>;
}

export interface PruneResult {
  calls: number;
  messages: number;
}

/** One call's SIP messages as captured, for CallStore.write. */
export interface CallMessages {
  callId: string;
  messages: readonly StoredSipMessage[];
}

/** What the call-log writer stores at once: the latest records of some calls and some calls' messages. */
export interface CallLogBatch {
  /** Inserted, or replacing every field of the stored record with the same id; for an id given twice, the later wins. */
  readonly records: readonly CallRecord[];
  /**
   * Each call's captured messages, stored only if that call has none yet (so writing a capture
   * again never doubles it); for a call given twice, the first wins.
   */
  readonly messages: readonly CallMessages[];
}

export interface CallStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Inserts the record, or replaces every field of the one with the same id. */
  upsert(record: CallRecord): Promise<void>;
  /**
   * Writes a batch: records first, then messages. PostgreSQL writes it in one transaction;
   * SQLite, whose work blocks the event loop, in as few short transactions as keep each one
   * brief, in order, yielding to the event loop between them.
   */
  write(batch: CallLogBatch): Promise<void>;
  /**
   * Makes records durable at once, ahead of the write() that must follow with them (or with later
   * states of their calls): what a crash right after must not lose, such as an answer. Cheaper
   * than write() where the store can: SQLite journals them in a small side table, which write()
   * clears and interruptUnfinished() applies; PostgreSQL writes them.
   */
  stage(records: readonly CallRecord[]): Promise<void>;
  get(id: string): Promise<CallRecord | undefined>;
  /** The record whose id, A-leg Call-ID or B-leg Call-ID is `key`. */
  find(key: string): Promise<CallRecord | undefined>;
  list(query: CallQuery): Promise<CallPage>;
  /** Appends messages to a call (kept in capture order). */
  addMessages(callId: string, messages: readonly StoredSipMessage[]): Promise<void>;
  /** A call's messages in time order. */
  messages(callId: string): Promise<StoredSipMessage[]>;
  /**
   * Closes the records of `instance` that have no outcome (left by a crash) as `interrupted`,
   * ended at `at`; returns their ids. Records the instance staged and did not write are applied
   * first (where newer than the stored ones).
   */
  interruptUnfinished(instance: string, at: Date): Promise<string[]>;
  /** Deletes calls received before `callsBefore`, and messages of calls received before `messagesBefore`. */
  prune(callsBefore: Date, messagesBefore: Date): Promise<PruneResult>;
  /** Figures over calls received in [from, to). */
  stats(from: Date, to: Date): Promise<CallStats>;
  /** Resolves when the store can be written (for /ready). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Thrown for a query the store refuses (a bad cursor, a limit out of range). */
export class CallQueryError extends Error {
  override readonly name = 'CallQueryError';
  readonly code = 'ERR_CALL_QUERY';
}
