/**
 * The states of a bridged call, from the first INVITE to the end of both legs.
 *
 *   received -> proceeding -> early -> answered -> ending -> ended
 *        \            \          \                     \
 *         +------------+----------+-> failed | cancelled  (a call that never answered)
 *
 * `proceeding`: the B leg is out (100/180 seen or awaited); `early`: early media (183 with SDP)
 * relayed; `ending`: a BYE is in flight on one leg or both. `failed`, `cancelled` and `ended` are
 * final.
 */
export type CallState = 'received' | 'proceeding' | 'early' | 'answered' | 'ending' | 'ended' | 'failed' | 'cancelled';

export const FINAL_STATES: ReadonlySet<CallState> = new Set(['ended', 'failed', 'cancelled']);

const TRANSITIONS: Readonly<Record<CallState, readonly CallState[]>> = {
  received: ['proceeding', 'failed', 'cancelled'],
  proceeding: ['early', 'answered', 'failed', 'cancelled'],
  early: ['answered', 'failed', 'cancelled'],
  answered: ['ending', 'ended'],
  ending: ['ended'],
  ended: [],
  failed: [],
  cancelled: [],
};

export function canTransition(from: CallState, to: CallState): boolean {
  return TRANSITIONS[from].includes(to);
}

export class CallStateError extends Error {
  override readonly name = 'CallStateError';
  readonly code = 'ERR_CALL_STATE';
  constructor(readonly from: CallState, readonly to: CallState) {
    super(`call state ${from} -> ${to} is not allowed`);
  }
}

/** How a call ended, for logs and the call record. */
export type CallOutcome = 'answered' | 'busy' | 'no-answer' | 'cancelled' | 'rejected' | 'failed' | 'interrupted';

/** Who ended an answered call (or who gave up on an unanswered one). */
export type HangupSide = 'caller' | 'callee' | 'system' | 'operator';
