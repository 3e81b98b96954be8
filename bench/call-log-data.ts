/**
 * The benchmark's call log: realistic calls, the same on every run (seeded). 1000 extensions
 * (6000-6999) with fixed names and phone addresses, calls spread evenly over 30 days, outcomes
 * mixed as on a PBX (about 60% answered).
 */
import type { CallState } from '../lib/b2bua/call-state';
import type { CallOutcome, CallRecord, HangupSide } from '../lib/call-log/call-record';

/** mulberry32: a small seeded generator, so every run writes the same log. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export const EXTENSIONS = Array.from({ length: 1000 }, (_, i) => String(6000 + i));
const FIRST = ['Alice', 'Bob', 'Carol', 'Dave', 'Erin', 'Frank', 'Grace', 'Heidi', 'Ivan', 'Judy', 'Mallory', 'Niaj', 'Olivia', 'Peggy', 'Rupert', 'Sybil', 'Trent', 'Victor', 'Walter', 'Zoe'];
export const LAST = ['Smith', 'Jones', 'Brown', 'Garcia', 'Miller', 'Davis', 'Martin', 'Lopez', 'Wilson', 'Moore', 'Taylor', 'Thomas', 'White', 'Harris', 'Clark', 'Lewis', 'Young', 'Walker', 'Hall', 'Allen'];
/** Each extension's display name (one in five has none) and phone address. */
export const PHONES = EXTENSIONS.map((ext, i) => ({
  ext,
  name: i % 5 === 4 ? null : `${FIRST[i % FIRST.length]} ${LAST[Math.floor(i / FIRST.length) % LAST.length]}`,
  address: `10.${20 + Math.floor(i / 250)}.${Math.floor(i / 10) % 25}.${(i % 10) + 10}`,
}));

const OUTCOME_MIX: ReadonlyArray<[CallOutcome, number]> = [
  ['answered', 0.6],
  ['no-answer', 0.14],
  ['busy', 0.1],
  ['cancelled', 0.09],
  ['rejected', 0.03],
  ['failed', 0.03],
  ['interrupted', 0.01],
];
export const OUTCOMES = OUTCOME_MIX.map(([o]) => o);
export const DAY_MS = 86_400_000;
export const SPAN_MS = 30 * DAY_MS;

export function hex(rand: () => number, length: number): string {
  let s = '';
  while (s.length < length) s += Math.floor(rand() * 0x100000000).toString(16).padStart(8, '0');
  return s.slice(0, length);
}

function uuid(rand: () => number): string {
  const h = hex(rand, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}

function outcomeOf(rand: () => number): CallOutcome {
  let x = rand();
  for (const [outcome, share] of OUTCOME_MIX) {
    x -= share;
    if (x < 0) return outcome;
  }
  return 'answered';
}

/** The calls of the log: number `i` of `total`, received in order over the 30 days before `end`. */
export class CallFactory {
  constructor(
    readonly total: number,
    readonly end: number,
  ) {}

  receivedAt(i: number): number {
    return this.end - SPAN_MS + Math.floor((i * SPAN_MS) / this.total);
  }

  /** The first write of call `i` (the INVITE has just arrived). */
  first(i: number): CallRecord {
    const rand = prng(i + 1);
    const caller = pick(rand, PHONES);
    let callee = pick(rand, PHONES);
    if (callee === caller) callee = PHONES[(PHONES.indexOf(caller) + 1) % PHONES.length]!;
    const receivedAt = new Date(this.receivedAt(i));
    return {
      id: uuid(rand),
      instance: `b2bua-${(i % 2) + 1}`,
      aCallId: `${hex(rand, 20)}@${caller.address}`,
      bCallId: null,
      callerUser: caller.ext,
      callerName: caller.name,
      callerAddress: caller.address,
      callerPort: 5060,
      callee: callee.ext,
      state: 'received',
      receivedAt,
      ringingAt: null,
      answeredAt: null,
      endedAt: null,
      postDialDelayMs: null,
      durationSec: null,
      billableSec: null,
      outcome: null,
      hangupBy: null,
      aStatus: null,
      aReason: null,
      bStatus: null,
      bReason: null,
      transfers: [],
      media: null,
      updatedAt: receivedAt,
    };
  }

  /** Call `i` as it ended. */
  final(i: number): CallRecord {
    const r = this.first(i);
    const rand = prng(0x9e3779b9 ^ (i + 1));
    const outcome = outcomeOf(rand);
    const t0 = r.receivedAt.getTime();
    const pdd = 80 + Math.floor(rand() * 400);
    const statusOf: Record<CallOutcome, [number, string, CallState, HangupSide]> = {
      answered: [200, 'OK', 'ended', rand() < 0.5 ? 'caller' : 'callee'],
      'no-answer': [480, 'Temporarily Unavailable', 'failed', 'system'],
      busy: [486, 'Busy Here', 'failed', 'callee'],
      cancelled: [487, 'Request Terminated', 'cancelled', 'caller'],
      rejected: [603, 'Decline', 'failed', 'callee'],
      failed: [503, 'Service Unavailable', 'failed', 'system'],
      interrupted: [500, 'Server Internal Error', 'failed', 'system'],
    };
    const [status, reason, state, hangupBy] = statusOf[outcome];
    const answered = outcome === 'answered';
    const answerDelay = answered ? 2000 + Math.floor(rand() * 15_000) : 0;
    const talk = answered ? Math.floor(rand() * rand() * 900_000) : 0;
    const endedAt = t0 + pdd + (answered ? answerDelay + talk : Math.floor(rand() * 30_000));
    const media = answered
      ? {
          callerToCallee: { packets: Math.floor(talk / 20), bytes: Math.floor(talk / 20) * 172, packetsLost: Math.floor(rand() * 5), jitterMs: Math.round(rand() * 40) / 10, mos: 4.1 + Math.round(rand() * 3) / 10 },
          calleeToCaller: { packets: Math.floor(talk / 20), bytes: Math.floor(talk / 20) * 172, packetsLost: Math.floor(rand() * 5), jitterMs: Math.round(rand() * 40) / 10, mos: 4.1 + Math.round(rand() * 3) / 10 },
          engine: '127.0.0.3:22222',
        }
      : null;
    return {
      ...r,
      bCallId: outcome === 'failed' ? null : uuid(rand),
      state,
      ringingAt: outcome === 'failed' ? null : new Date(t0 + pdd),
      answeredAt: answered ? new Date(t0 + pdd + answerDelay) : null,
      endedAt: new Date(endedAt),
      postDialDelayMs: pdd,
      durationSec: (endedAt - t0) / 1000,
      billableSec: answered ? Math.ceil(talk / 1000) : 0,
      outcome,
      hangupBy,
      aStatus: status,
      aReason: reason,
      bStatus: outcome === 'failed' ? null : status,
      bReason: outcome === 'failed' ? null : reason,
      transfers: answered && rand() < 0.02 ? [pick(rand, EXTENSIONS)] : [],
      media,
      updatedAt: new Date(endedAt),
    };
  }
}
