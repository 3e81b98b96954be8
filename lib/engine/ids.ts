import { randomBytes } from 'node:crypto';

/**
 * Identifiers the engine generates. Branches carry the RFC 3261 magic cookie (section 8.1.1.7);
 * tags and Call-IDs are random enough to be globally unique (sections 19.3, 8.1.1.4).
 * Random bytes come from a pool refilled in blocks: this runs several times per call.
 */
let pool = Buffer.alloc(0);
let offset = 0;

function hex(bytes: number): string {
  if (offset + bytes > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const s = pool.toString('hex', offset, offset + bytes);
  offset += bytes;
  return s;
}

export function newBranch(): string {
  return `z9hG4bK${hex(10)}`;
}

export function newTag(): string {
  return hex(6);
}

export function newCallId(): string {
  return hex(16);
}

/**
 * Transaction ids and wire message ids: UUID-shaped (version 4 layout, as drachtio writes
 * them), a random prefix drawn once per process and a 48-bit counter in the last group. They
 * only need to be unique among the engine's live transactions and messages, and several are
 * made per call: a counter costs one string concatenation where a random UUID costs a crypto
 * call and a formatting pass.
 */
let idPrefix = '';
/** the counter's high part, as hex, is cached: it changes once every 4096 ids */
let idHigh = 0;
let idHighHex = '';
let idLow = 0;
const ID_HIGH_LIMIT = 2 ** 36;
/** '000' to 'fff' */
const HEX3: readonly string[] = Array.from({ length: 4096 }, (_, i) => i.toString(16).padStart(3, '0'));

function freshIdPrefix(): void {
  const h = randomBytes(15).toString('hex');
  const variant = ((parseInt(h[12]!, 16) & 0x3) | 0x8).toString(16);
  idPrefix = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(16, 19)}-`;
  // the counter starts at a random value far from its 48-bit limit
  setHigh(parseInt(h.slice(19, 26), 16));
  idLow = 0;
}

function setHigh(n: number): void {
  idHigh = n;
  idHighHex = idPrefix + n.toString(16).padStart(9, '0');
}

export function newTxnId(): string {
  if (idPrefix === '') freshIdPrefix();
  if (idLow === 4096) {
    if (idHigh + 1 >= ID_HIGH_LIMIT) freshIdPrefix();
    else setHigh(idHigh + 1);
    idLow = 0;
  }
  return idHighHex + HEX3[idLow++]!;
}

/** The id of a message the engine writes to an application (`<msgId>|...`). */
export const newMsgId = newTxnId;

/** A CSeq start for a new dialog or request: random, well below 2**31 (section 8.1.1.5). */
export function newCSeq(): number {
  return 1 + (parseInt(hex(2), 16) % 10000);
}
