/**
 * JSON schemas of the operator API: they validate requests (bad input gets 400 with a reason),
 * shape responses, and are what /openapi.json publishes.
 */
import { CALL_OUTCOMES, HANGUP_SIDES, type CallRecord, type StoredSipMessage } from '../call-log/call-record';

const nullable = (type: string): { type: string[] } => ({ type: [type, 'null'] });
const isoTime = { type: 'string', format: 'date-time' } as const;
const nullableIsoTime = { type: ['string', 'null'], format: 'date-time' } as const;

const OUTCOME_ALT = CALL_OUTCOMES.join('|');

export const errorSchema = {
  type: 'object',
  properties: { error: { type: 'string' }, reason: { type: 'string' } },
  required: ['error', 'reason'],
} as const;

const mediaDirectionSchema = {
  type: 'object',
  properties: {
    packets: { type: 'integer' },
    bytes: { type: 'integer' },
    packetsLost: nullable('integer'),
    jitterMs: nullable('number'),
    mos: nullable('number'),
  },
} as const;

export const callRecordSchema = {
  type: 'object',
  description: 'One call through the B2BUA. Times are ISO-8601; `live` is true while the call is in progress.',
  properties: {
    id: { type: 'string', description: 'The X-Call-ID sent on the B leg' },
    live: { type: 'boolean' },
    instance: { type: 'string' },
    aCallId: { type: 'string' },
    bCallId: nullable('string'),
    callerUser: { type: 'string' },
    callerName: nullable('string'),
    callerAddress: { type: 'string' },
    callerPort: { type: 'integer' },
    callee: { type: 'string' },
    state: { type: 'string' },
    receivedAt: isoTime,
    ringingAt: nullableIsoTime,
    answeredAt: nullableIsoTime,
    endedAt: nullableIsoTime,
    postDialDelayMs: nullable('integer'),
    durationSec: nullable('number'),
    billableSec: nullable('integer'),
    outcome: { type: ['string', 'null'], enum: [...CALL_OUTCOMES, null] },
    hangupBy: { type: ['string', 'null'], enum: [...HANGUP_SIDES, null] },
    aStatus: nullable('integer'),
    aReason: nullable('string'),
    bStatus: nullable('integer'),
    bReason: nullable('string'),
    transfers: { type: 'array', items: { type: 'string' } },
    media: {
      type: ['object', 'null'],
      properties: { callerToCallee: mediaDirectionSchema, calleeToCaller: mediaDirectionSchema, engine: { type: 'string' } },
    },
    updatedAt: isoTime,
  },
} as const;

export const messageSchema = {
  type: 'object',
  properties: {
    leg: { type: 'string', enum: ['a', 'b'] },
    at: isoTime,
    dir: { type: 'string', enum: ['in', 'out'], description: 'As the SIP engine saw it' },
    transport: { type: 'string' },
    peer: { type: 'string' },
    local: { type: 'string' },
    text: { type: 'string' },
  },
} as const;

export interface CallListQuery {
  caller?: string;
  callee?: string;
  outcome?: string;
  from?: string;
  to?: string;
  q?: string;
  limit: number;
  cursor?: string;
}

const userFilter = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[^\\u0000-\\u001f]+$' } as const;

export const callListQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    caller: { ...userFilter, description: 'Caller user, exact' },
    callee: { ...userFilter, description: 'Dialled extension, exact' },
    outcome: { type: 'string', pattern: `^(${OUTCOME_ALT})(,(${OUTCOME_ALT}))*$`, description: 'Comma-separated outcomes' },
    from: { ...isoTime, description: 'Received at or after' },
    to: { ...isoTime, description: 'Received before' },
    q: { type: 'string', minLength: 3, maxLength: 100, description: 'Free text: part of a caller, callee, address or call id' },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
    cursor: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_=-]+$', description: "A page's nextCursor" },
  },
} as const;

export const statsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { from: isoTime, to: isoTime },
} as const;

export const callKeyParamsSchema = {
  type: 'object',
  properties: { key: { type: 'string', minLength: 1, maxLength: 256, description: 'Call id (UUID) or either SIP Call-ID' } },
  required: ['key'],
} as const;

export const callIdParamsSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' } },
  required: ['id'],
} as const;

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

export type CallRecordJson = Omit<CallRecord, 'receivedAt' | 'ringingAt' | 'answeredAt' | 'endedAt' | 'updatedAt'> & {
  live: boolean;
  receivedAt: string;
  ringingAt: string | null;
  answeredAt: string | null;
  endedAt: string | null;
  updatedAt: string;
};

export function recordJson(r: CallRecord, live: boolean): CallRecordJson {
  return {
    ...r,
    live,
    receivedAt: r.receivedAt.toISOString(),
    ringingAt: iso(r.ringingAt),
    answeredAt: iso(r.answeredAt),
    endedAt: iso(r.endedAt),
    updatedAt: r.updatedAt.toISOString(),
  };
}

export function messageJson(m: StoredSipMessage): Omit<StoredSipMessage, 'at'> & { at: string } {
  return { ...m, at: m.at.toISOString() };
}
