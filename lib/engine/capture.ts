import { deflateRawSync, inflateRawSync, constants as zlib } from 'node:zlib';
import { realClock, type Clock, type TimerHandle } from './transaction/timers';

/**
 * Optional per-call SIP capture: every message in and out, with a timestamp and the peer, kept
 * per Call-ID in memory (bounded in calls and bytes per call) for operators' ladder diagrams.
 *
 * A call's capture is held for as long as the call lasts and a while after, so it is kept
 * small: a message's bytes are kept as they were sent or received (no decoded text, no object
 * per message), and once a call has been quiet for a moment its messages are deflated together,
 * against a dictionary of SIP and SDP boilerplate: the messages of one call repeat each other
 * (Call-ID, tags, Via, Record-Route, SDP), so a call's set-up shrinks to a few hundred bytes.
 * Messages are decoded only when someone reads them.
 */
export interface CapturedMessage {
  readonly t: number;
  readonly dir: 'in' | 'out';
  readonly transport: string;
  readonly peer: string;
  readonly local: string;
  readonly text: string;
}

/**
 * A call quiet for this long has its pending messages deflated. It is longer than the B2BUA's
 * default grace (CAPTURE_GRACE_MS, 1 s) before it takes a finished call's capture, so a short
 * call is read as it was captured and never deflated and inflated again.
 */
const IDLE_MS = 2500;
/** How often pending calls are looked at. */
const SWEEP_MS = 500;
/** Distinct peer and local addresses kept as shared strings (beyond it each message has its own). */
const MAX_INTERNED = 4096;

/**
 * The dictionary both sides of the deflate share: text that nearly every SIP message has, most
 * common last (deflate reaches the end of the dictionary with the shortest distances).
 */
const DICTIONARY = Buffer.from(
  [
    'SUBSCRIBE NOTIFY REFER MESSAGE INFO UPDATE PRACK OPTIONS REGISTER',
    'Supported: replaces, timer, 100rel\r\nRequire: 100rel\r\nRSeq: RAck: Session-Expires: Min-SE: Reason: SIP ;cause=200 ;text="',
    'Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE, PRACK, SUBSCRIBE\r\n',
    'User-Agent: Server: X-Call-ID: X-From-App: P-Asserted-Identity: Expires: Event: Accept: application/sdp\r\n',
    'a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n',
    'a=sendrecv\r\na=rtcp:',
    'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0 8 101\r\n',
    'SIP/2.0 100 Trying\r\nSIP/2.0 180 Ringing\r\nSIP/2.0 183 Session Progress\r\nSIP/2.0 487 Request Terminated\r\n',
    'SIP/2.0 200 OK\r\n',
    'Record-Route: <sip:127.0.0.1:5060;lr>\r\nRoute: <sip:127.0.0.1:5060;lr>\r\n',
    'Contact: <sip:127.0.0.1:5060;transport=udp>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n',
    'Via: SIP/2.0/UDP 127.0.0.1:5060;rport=5060;received=127.0.0.1;branch=z9hG4bK',
    'From: <sip:127.0.0.1>;tag=\r\nTo: <sip:127.0.0.1>;tag=\r\nCall-ID: \r\nCSeq: 1 INVITE\r\nCSeq: 1 ACK\r\nCSeq: 2 BYE\r\n',
    'Content-Length: 0\r\n\r\n',
  ].join(''),
  'latin1',
);
const ZLIB_OPTIONS = { dictionary: DICTIONARY, level: 6, windowBits: 13, memLevel: 6, strategy: zlib.Z_DEFAULT_STRATEGY, chunkSize: 4096 };

/** Flags packed beside each message's length. */
const OUT = 1;
const TCP = 2;

/**
 * One call's capture. While the call is busy its messages wait as they are (`pending`, with
 * `meta` and `addresses` beside them); once it is quiet they are deflated into `packed`, each
 * message preceded by a line `<time> <length*4+flags> <peer> <local>`.
 */
interface CallEntry {
  readonly callId: string;
  /** per pending message: time, then `length * 4 + flags` */
  meta: number[];
  /** per pending message: peer, then local address */
  addresses: string[];
  pending: Buffer[];
  /** deflated batches, in order, each as a latin1 string (cheaper to keep than a Buffer) */
  packed: string[];
  bytes: number;
  truncated: boolean;
  lastAt: number;
  queued: boolean;
  evicted: boolean;
}

const NONE: never[] = [];

export class CallCapture {
  readonly #calls = new Map<string, CallEntry>();
  /** calls with pending messages, in the order they got them */
  #queue: CallEntry[] = [];
  #sweep: TimerHandle | undefined;
  /** bytes kept: deflated batches and pending messages */
  #stored = 0;
  readonly #peers = new Map<string, Map<number, string>>();
  #interned = 0;

  constructor(
    readonly maxCalls: number,
    readonly maxBytesPerCall: number,
    readonly clock: Clock = realClock,
  ) {}

  /** Records one message: `data` is kept as it is until deflated (the caller must not change it). */
  record(callId: string, t: number, dir: 'in' | 'out', transport: string, peerAddress: string, peerPort: number, local: string, data: Buffer): void {
    let c = this.#calls.get(callId);
    if (!c) {
      if (this.#calls.size >= this.maxCalls) this.#evictOldest();
      // the Call-ID is a slice of the message's text: a copy lets that text go
      const id = Buffer.from(callId, 'utf8').toString('utf8');
      c = { callId: id, meta: NONE, addresses: NONE, pending: NONE, packed: NONE, bytes: 0, truncated: false, lastAt: t, queued: false, evicted: false };
      this.#calls.set(id, c);
    }
    if (c.bytes + data.length > this.maxBytesPerCall) {
      c.truncated = true;
      return;
    }
    c.bytes += data.length;
    if (c.pending.length === 0) {
      c.meta = [];
      c.addresses = [];
      c.pending = [];
    }
    c.meta.push(t, data.length * 4 + (dir === 'out' ? OUT : 0) + (transport === 'tcp' ? TCP : 0));
    c.addresses.push(this.#peer(peerAddress, peerPort), local);
    c.pending.push(data);
    this.#stored += data.length;
    c.lastAt = this.clock.now();
    if (!c.queued) {
      c.queued = true;
      this.#queue.push(c);
      this.#sweep ??= this.clock.schedule(SWEEP_MS, () => this.#compactIdle());
    }
  }

  get(callId: string): { messages: CapturedMessage[]; truncated: boolean } | undefined {
    const c = this.#calls.get(callId);
    return c ? decode(c) : undefined;
  }

  /**
   * A call's capture, removed: its reader (the B2BUA's call log, once the call is over) keeps it
   * from now on, and the engine neither holds nor deflates it any longer. A message that comes
   * later for the same Call-ID (a retransmission) starts a new capture.
   */
  take(callId: string): { messages: CapturedMessage[]; truncated: boolean } | undefined {
    const c = this.#calls.get(callId);
    if (!c) return undefined;
    const taken = decode(c);
    this.#calls.delete(callId);
    this.#release(c);
    return taken;
  }

  /** Calls captured. */
  get size(): number {
    return this.#calls.size;
  }

  /** Bytes held: deflated batches and messages not deflated yet. */
  get storedBytes(): number {
    return this.#stored;
  }

  /** Stops the background deflating (the engine is closing). */
  close(): void {
    this.#sweep?.cancel();
    this.#sweep = undefined;
  }

  /** `address:port`, shared between messages (most messages go to or come from a few peers). */
  #peer(address: string, port: number): string {
    let ports = this.#peers.get(address);
    let s = ports?.get(port);
    if (s !== undefined) return s;
    s = `${address}:${port}`;
    if (this.#interned >= MAX_INTERNED) return s;
    s = Buffer.from(s, 'latin1').toString('latin1');
    if (!ports) {
      ports = new Map();
      this.#peers.set(Buffer.from(address, 'latin1').toString('latin1'), ports);
    }
    ports.set(port, s);
    this.#interned++;
    return s;
  }

  #evictOldest(): void {
    const oldest = this.#calls.values().next().value;
    if (oldest === undefined) return;
    this.#calls.delete(oldest.callId);
    this.#release(oldest);
  }

  /** Forgets a call's messages (it has left #calls; the sweep skips it). */
  #release(c: CallEntry): void {
    c.evicted = true;
    for (const p of c.pending) this.#stored -= p.length;
    for (const p of c.packed) this.#stored -= p.length;
    c.pending = NONE;
    c.packed = NONE;
    c.meta = NONE;
    c.addresses = NONE;
  }

  /** Deflates the pending messages of every call that has been quiet for IDLE_MS. */
  #compactIdle(): void {
    this.#sweep = undefined;
    const now = this.clock.now();
    const still: CallEntry[] = [];
    for (const c of this.#queue) {
      if (c.evicted) continue;
      if (now - c.lastAt < IDLE_MS) {
        still.push(c);
        continue;
      }
      c.queued = false;
      const parts: Buffer[] = [];
      for (let i = 0; i < c.pending.length; i++) {
        parts.push(Buffer.from(`${c.meta[2 * i]} ${c.meta[2 * i + 1]} ${c.addresses[2 * i]} ${c.addresses[2 * i + 1]}\n`, 'latin1'), c.pending[i]!);
      }
      const packed = deflateRawSync(Buffer.concat(parts), ZLIB_OPTIONS).toString('latin1');
      for (const p of c.pending) this.#stored -= p.length;
      this.#stored += packed.length;
      c.packed = c.packed.length === 0 ? [packed] : [...c.packed, packed];
      c.pending = NONE;
      c.meta = NONE;
      c.addresses = NONE;
    }
    this.#queue = still;
    if (still.length > 0) this.#sweep = this.clock.schedule(SWEEP_MS, () => this.#compactIdle());
  }
}

/** A call's messages, decoded: deflated batches first (they are older), then those pending. */
function decode(c: CallEntry): { messages: CapturedMessage[]; truncated: boolean } {
  const messages: CapturedMessage[] = [];
  for (const p of c.packed) {
    const all = inflateRawSync(Buffer.from(p, 'latin1'), ZLIB_OPTIONS);
    let at = 0;
    while (at < all.length) {
      const eol = all.indexOf(0x0a, at);
      if (eol < 0) break;
      const [t, packed, peer, local] = all.toString('latin1', at, eol).split(' ');
      const length = Math.floor(Number(packed) / 4);
      messages.push(message(Number(t), Number(packed), peer ?? '', local ?? '', all.toString('utf8', eol + 1, eol + 1 + length)));
      at = eol + 1 + length;
    }
  }
  for (let i = 0; i < c.pending.length; i++) {
    messages.push(message(c.meta[2 * i]!, c.meta[2 * i + 1]!, c.addresses[2 * i]!, c.addresses[2 * i + 1]!, c.pending[i]!.toString('utf8')));
  }
  return { messages, truncated: c.truncated };
}

function message(t: number, packed: number, peer: string, local: string, text: string): CapturedMessage {
  return { t, dir: packed & OUT ? 'out' : 'in', transport: packed & TCP ? 'tcp' : 'udp', peer, local, text };
}
