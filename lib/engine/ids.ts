import { randomBytes, randomUUID } from 'node:crypto';

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

export function newTxnId(): string {
  return randomUUID();
}

/** A CSeq start for a new dialog or request: random, well below 2**31 (section 8.1.1.5). */
export function newCSeq(): number {
  return 1 + (parseInt(hex(2), 16) % 10000);
}
