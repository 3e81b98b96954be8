// RTPEngine for tests: a fake NG server (UDP, bencode) for unit tests, the real rtpengine on free
// loopback ports for integration tests, and UDP peers that send and receive RTP.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { NativeProcess } from '../../lib/stack/native-process';
import { startRtpEngine } from '../../lib/stack/rtpengine';
import { bdecode, bencode, type BValue } from './bencode';
import { freePortRange, freePorts, releasePorts } from './ports';
import { deferred, withTimeout } from './wait';

export type NgDict = { [key: string]: BValue };

/** One request the fake server received. */
export interface NgRequestSeen {
  cookie: string;
  command: string;
  params: NgDict;
  /** Date.now() at arrival. */
  at: number;
}

/** What the fake does with a request: reply (optionally later), or drop it (a dead RTPEngine). */
export type NgDecision = { reply: NgDict; delayMs?: number } | 'drop';

/**
 * Decides the fate of each request. `emulate()` runs the built-in RTPEngine imitation (it changes
 * the fake's call table at once, like RTPEngine would, whenever the reply is sent).
 */
export type NgBehaviour = (req: NgRequestSeen, emulate: () => NgDict) => NgDecision;

/**
 * Figures the fake puts into a delete reply, per tag: packets/bytes it "received from" that party
 * and the SSRC it sends with; lost/mos10/jitter are what that party's RTCP receiver reports said
 * about the media it RECEIVED (RTPEngine files them under the reporter's own SSRC).
 */
export type FakeStats = Record<string, { packets: number; bytes: number; ssrc?: number; lost?: number; mos10?: number; jitter?: number }>;

interface FakeCall {
  tags: Set<string>;
  created: number;
}

/**
 * A UDP NG server on 127.0.0.1 that imitates RTPEngine's offer/answer/delete/query/list/ping well
 * enough for the anchor: offers and answers come back with `c=IN IP4 <mediaAddress>` and the port
 * 40000 + n, deletes of known calls carry `stats` (settable per call), unknown calls get RTPEngine's
 * warning or error.
 */
export class FakeNgServer {
  readonly host = '127.0.0.1';
  readonly requests: NgRequestSeen[] = [];
  /** Calls the fake holds, as RTPEngine would (offer seen, not deleted). */
  readonly calls = new Map<string, FakeCall>();
  /** Delete reply figures by call id. */
  readonly stats = new Map<string, FakeStats>();
  behaviour: NgBehaviour = (_req, emulate) => ({ reply: emulate() });
  /** Replies sent so far. */
  replies = 0;
  readonly #socket: Socket;
  readonly #waiters = new Set<{ match: (r: NgRequestSeen) => boolean; resolve: (r: NgRequestSeen) => void }>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #nextPort = 40000;
  #port = 0;

  private constructor(readonly mediaAddress: string) {
    this.#socket = createSocket('udp4');
    this.#socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
  }

  static async start(mediaAddress = '127.0.0.9'): Promise<FakeNgServer> {
    const server = new FakeNgServer(mediaAddress);
    await new Promise<void>((resolve, reject) => {
      server.#socket.once('error', reject);
      server.#socket.bind(0, server.host, () => resolve());
    });
    server.#port = server.#socket.address().port;
    return server;
  }

  get port(): number {
    return this.#port;
  }

  get address(): { host: string; port: number } {
    return { host: this.host, port: this.#port };
  }

  /** Requests seen so far with this command (and call id). */
  seen(command: string, callId?: string): NgRequestSeen[] {
    return this.requests.filter((r) => r.command === command && (callId === undefined || r.params['call-id'] === callId));
  }

  /** Resolves with the first request (already seen or still to come) that matches. */
  waitFor(match: (r: NgRequestSeen) => boolean, timeoutMs = 3000, description = 'an NG request'): Promise<NgRequestSeen> {
    const found = this.requests.find(match);
    if (found) return Promise.resolve(found);
    const d = deferred<NgRequestSeen>();
    const waiter = { match, resolve: (r: NgRequestSeen) => d.resolve(r) };
    this.#waiters.add(waiter);
    return withTimeout(d.promise, timeoutMs, description).finally(() => this.#waiters.delete(waiter));
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }

  #onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    const space = msg.indexOf(' ');
    if (space < 1) return;
    const cookie = msg.toString('latin1', 0, space);
    let params: NgDict;
    try {
      const decoded = bdecode(msg, space + 1).value;
      if (typeof decoded !== 'object' || Array.isArray(decoded)) return;
      params = decoded;
    } catch {
      return;
    }
    const command = typeof params.command === 'string' ? params.command : '';
    const req: NgRequestSeen = { cookie, command, params, at: Date.now() };
    this.requests.push(req);
    for (const w of this.#waiters) if (w.match(req)) w.resolve(req);
    const decision = this.behaviour(req, () => this.#emulate(req));
    if (decision === 'drop') return;
    const send = (): void => {
      this.replies += 1;
      this.#socket.send(Buffer.concat([Buffer.from(`${cookie} `, 'latin1'), bencode(decision.reply)]), rinfo.port, rinfo.address);
    };
    if (decision.delayMs && decision.delayMs > 0) {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        send();
      }, decision.delayMs);
      this.#timers.add(t);
    } else {
      send();
    }
  }

  #rewrite(sdp: string): string {
    const port = this.#nextPort;
    this.#nextPort += 2;
    return sdp
      .replace(/^c=IN IP4 \S+/gm, `c=IN IP4 ${this.mediaAddress}`)
      .replace(/^(o=\S+ \S+ \S+ IN IP4 )\S+/m, `$1${this.mediaAddress}`)
      .replace(/^m=audio \d+/m, `m=audio ${port}`);
  }

  #emulate(req: NgRequestSeen): NgDict {
    const p = req.params;
    const callId = typeof p['call-id'] === 'string' ? p['call-id'] : '';
    const fromTag = typeof p['from-tag'] === 'string' ? p['from-tag'] : '';
    const toTag = typeof p['to-tag'] === 'string' ? p['to-tag'] : '';
    switch (req.command) {
      case 'ping':
        return { result: 'pong' };
      case 'offer': {
        if (!callId || !fromTag || typeof p.sdp !== 'string') return { result: 'error', 'error-reason': 'Incomplete message' };
        const call = this.calls.get(callId) ?? { tags: new Set<string>(), created: Math.floor(Date.now() / 1000) };
        call.tags.add(fromTag);
        if (toTag) call.tags.add(toTag);
        this.calls.set(callId, call);
        return { result: 'ok', sdp: this.#rewrite(p.sdp) };
      }
      case 'answer': {
        const call = this.calls.get(callId);
        if (!call) return { result: 'error', 'error-reason': 'Unknown call-id' };
        if (typeof p.sdp !== 'string' || !toTag) return { result: 'error', 'error-reason': 'Incomplete message' };
        call.tags.add(toTag);
        return { result: 'ok', sdp: this.#rewrite(p.sdp) };
      }
      case 'delete': {
        const call = this.calls.get(callId);
        if (!call) return { result: 'ok', warning: "Call-ID not found or tags didn't match" };
        this.calls.delete(callId);
        return { result: 'ok', ...fakeStatsReply(call, this.stats.get(callId) ?? {}) };
      }
      case 'query': {
        const call = this.calls.get(callId);
        if (!call) return { result: 'error', 'error-reason': 'Unknown call-id' };
        return { result: 'ok', ...fakeStatsReply(call, this.stats.get(callId) ?? {}) };
      }
      case 'list':
        return { result: 'ok', calls: [...this.calls.keys()] };
      default:
        return { result: 'error', 'error-reason': 'Unrecognized command' };
    }
  }
}

/** A delete/query reply body in RTPEngine 10.5's shape (tags -> medias -> streams, SSRC, totals). */
function fakeStatsReply(call: FakeCall, stats: FakeStats): NgDict {
  const tags: NgDict = {};
  const ssrcs: NgDict = {};
  let packets = 0;
  let bytes = 0;
  for (const tag of call.tags) {
    const s = stats[tag] ?? { packets: 0, bytes: 0 };
    packets += s.packets;
    bytes += s.bytes;
    const rtp: NgDict = { 'local port': 40000, flags: ['RTP', 'filled'], stats: { packets: s.packets, bytes: s.bytes, errors: 0 } };
    if (s.ssrc !== undefined) {
      rtp.SSRC = s.ssrc;
      const entry: NgDict = {};
      if (s.lost !== undefined) entry['cumulative loss'] = s.lost;
      if (s.mos10 !== undefined) {
        entry['average MOS'] = { MOS: s.mos10, 'round-trip time': 1000, jitter: s.jitter ?? 0, 'packet loss': 0, samples: 2 };
      }
      ssrcs[String(s.ssrc)] = entry;
    }
    const rtcp: NgDict = { 'local port': 40001, flags: ['RTCP', 'filled'], stats: { packets: 3, bytes: 300, errors: 0 } };
    tags[tag] = { tag, created: call.created, medias: [{ index: 1, type: 'audio', protocol: 'RTP/AVP', streams: [rtp, rtcp], flags: ['initialized'] }] };
  }
  return {
    created: call.created,
    created_us: 0,
    'last signal': call.created,
    SSRC: ssrcs,
    tags,
    totals: { RTP: { packets, bytes, errors: 0 }, RTCP: { packets: 0, bytes: 0, errors: 0 } },
  };
}

// ---- the real RTPEngine ----------------------------------------------------------------------

export interface TestRtpEngine {
  proc: NativeProcess;
  /** NG control address. */
  ng: { host: string; port: number };
  /** Where it relays media (and what it writes into SDP). */
  mediaAddress: string;
  portMin: number;
  portMax: number;
  pidFile: string;
  /** Stops it (SIGTERM by PID), waits for the exit, removes its directory, frees the ports. Idempotent. */
  stop(): Promise<void>;
}

export interface TestRtpEngineOptions {
  /** Media address (default 127.0.0.3, so relayed RTP is told apart from phones on 127.0.0.1). */
  mediaAddress?: string;
  /** Size of the media port range (default 40: ten calls' worth). */
  ports?: number;
  logger?: Logger;
}

/** A quiet pino logger for tests (LOG_LEVEL=debug shows everything on stderr). */
export function testLogger(): Logger {
  return pino({ level: process.env.LOG_LEVEL ?? 'silent' }, pino.destination(2));
}

/** The real rtpengine on free loopback ports, userspace only. */
export async function startTestRtpEngine(options: TestRtpEngineOptions = {}): Promise<TestRtpEngine> {
  const mediaAddress = options.mediaAddress ?? '127.0.0.3';
  const [ngPort] = await freePorts(1);
  if (ngPort === undefined) throw new Error('startTestRtpEngine: no free NG port');
  const range = await freePortRange(options.ports ?? 40);
  const dir = await mkdtemp(join(tmpdir(), 'rtpengine-test-'));
  const pidFile = join(dir, 'rtpengine.pid');
  const release = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
    releasePorts([ngPort, ...Array.from({ length: range.last - range.first + 1 }, (_, i) => range.first + i)]);
  };
  let proc: NativeProcess;
  try {
    proc = await startRtpEngine({
      interface: { address: mediaAddress },
      ng: { address: '127.0.0.1', port: ngPort },
      portMin: range.first,
      portMax: range.last,
      pidFile,
      logger: options.logger ?? testLogger(),
      logLevel: 6,
    });
  } catch (err) {
    await release();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    proc,
    ng: { host: '127.0.0.1', port: ngPort },
    mediaAddress,
    portMin: range.first,
    portMax: range.last,
    pidFile,
    stop() {
      stopping ??= (async () => {
        await proc.stop();
        await release();
      })();
      return stopping;
    },
  };
}

// ---- RTP peers ---------------------------------------------------------------------------------

/** A minimal RTP packet: version 2, payload type 0 (PCMU), 160 bytes of silence. */
export function rtpPacket(seq: number, ssrc: number, payloadType = 0): Buffer {
  const b = Buffer.alloc(12 + 160, 0xff);
  b[0] = 0x80;
  b[1] = payloadType & 0x7f;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  return b;
}

/** Seconds between the NTP epoch (1900) and the Unix epoch. */
const NTP_UNIX_OFFSET = 2_208_988_800;

/**
 * An RTCP sender report (RFC 3550 6.4.1) with no report blocks, stamped now. `lsr` is the middle
 * 32 bits of its NTP timestamp: what a receiver report about it carries as LSR.
 */
export function rtcpSenderReport(ssrc: number, packets: number, octets: number): { packet: Buffer; lsr: number } {
  const b = Buffer.alloc(28);
  b[0] = 0x80; // V=2, no padding, RC=0
  b[1] = 200; // SR
  b.writeUInt16BE(28 / 4 - 1, 2);
  b.writeUInt32BE(ssrc >>> 0, 4);
  const now = Date.now();
  const seconds = (Math.floor(now / 1000) + NTP_UNIX_OFFSET) >>> 0;
  const fraction = Math.floor(((now % 1000) / 1000) * 2 ** 32) >>> 0;
  b.writeUInt32BE(seconds, 8);
  b.writeUInt32BE(fraction, 12);
  b.writeUInt32BE((packets * 160) >>> 0, 16);
  b.writeUInt32BE(packets >>> 0, 20);
  b.writeUInt32BE(octets >>> 0, 24);
  return { packet: b, lsr: (((seconds & 0xffff) << 16) | (fraction >>> 16)) >>> 0 };
}

export interface ReceiverReportBlock {
  /** SSRC of the report's sender (the receiving party's own SSRC). */
  from: number;
  /** SSRC of the stream reported on. */
  about: number;
  cumulativeLost: number;
  highestSeq: number;
  /** Interarrival jitter in RTP timestamp units (8 kHz for PCMU: 8 = 1 ms). */
  jitter: number;
  lsr: number;
  /** Delay since that SR, in 1/65536 s. */
  dlsr: number;
}

/** An RTCP receiver report (RFC 3550 6.4.2) with one report block. */
export function rtcpReceiverReport(r: ReceiverReportBlock): Buffer {
  const b = Buffer.alloc(32);
  b[0] = 0x81; // V=2, RC=1
  b[1] = 201; // RR
  b.writeUInt16BE(32 / 4 - 1, 2);
  b.writeUInt32BE(r.from >>> 0, 4);
  b.writeUInt32BE(r.about >>> 0, 8);
  b[12] = Math.min(255, Math.floor((r.cumulativeLost * 256) / Math.max(1, r.highestSeq + 1)));
  b.writeUIntBE(r.cumulativeLost & 0xffffff, 13, 3);
  b.writeUInt32BE(r.highestSeq >>> 0, 16);
  b.writeUInt32BE(r.jitter >>> 0, 20);
  b.writeUInt32BE(r.lsr >>> 0, 24);
  b.writeUInt32BE(r.dlsr >>> 0, 28);
  return b;
}

export interface Received {
  data: Buffer;
  from: RemoteInfo;
}

/** A UDP socket on 127.0.0.1 standing in for a phone's RTP port. */
export class RtpPeer {
  readonly received: Received[] = [];
  readonly #socket: Socket;
  readonly #waiters = new Set<() => void>();

  private constructor() {
    this.#socket = createSocket('udp4');
    this.#socket.on('message', (data, from) => {
      this.received.push({ data, from });
      for (const w of this.#waiters) w();
    });
  }

  static async open(host = '127.0.0.1', port = 0): Promise<RtpPeer> {
    const peer = new RtpPeer();
    await new Promise<void>((resolve, reject) => {
      peer.#socket.once('error', reject);
      peer.#socket.bind(port, host, () => resolve());
    });
    return peer;
  }

  /** An RTP peer and its RTCP peer on the next port (what an SDP without a=rtcp implies). */
  static async openPair(host = '127.0.0.1'): Promise<{ rtp: RtpPeer; rtcp: RtpPeer }> {
    const { first } = await freePortRange(2);
    return { rtp: await RtpPeer.open(host, first), rtcp: await RtpPeer.open(host, first + 1) };
  }

  get port(): number {
    return this.#socket.address().port;
  }

  send(data: Buffer, port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => this.#socket.send(data, port, host, (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves once `count` datagrams have arrived in total; rejects after timeoutMs. */
  waitForPackets(count: number, timeoutMs = 3000): Promise<Received[]> {
    if (this.received.length >= count) return Promise.resolve(this.received.slice(0, count));
    const d = deferred<Received[]>();
    const check = (): void => {
      if (this.received.length >= count) d.resolve(this.received.slice(0, count));
    };
    this.#waiters.add(check);
    return withTimeout(d.promise, timeoutMs, `${count} datagrams at 127.0.0.1:${this.port} (got ${this.received.length})`).finally(() =>
      this.#waiters.delete(check),
    );
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}

/** The m=audio port and c= address of an SDP body. */
export function sdpMedia(sdp: string): { address: string; port: number } {
  const c = /^c=IN IP4 (\S+)/m.exec(sdp);
  const m = /^m=audio (\d+) /m.exec(sdp);
  if (!c || !m) throw new Error(`no c=/m=audio in SDP:\n${sdp}`);
  return { address: c[1] as string, port: Number(m[1]) };
}
