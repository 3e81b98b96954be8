// Setup latency from a packet capture: tcpdump on the loopback interface at the callers' SIP
// ports, kernel timestamps in microseconds, read back here (classic pcap) and paired per Call-ID:
// the authenticated INVITE leaving a caller, its first 180 and its first 200 reaching one.
// SIPp's own -trace_rtt figures come from CLOCK_MONOTONIC_COARSE (one kernel tick, 4 ms at
// HZ=250), too coarse for a 2 ms target; this is the independent, finer measurement.

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseCSeq, parseMessage } from '../lib/engine/message';

// ---------------------------------------------------------------------------------- capture

export interface CaptureOptions {
  /** UDP ports to capture (either direction). */
  readonly ports: readonly number[];
  /**
   * Ports whose UDP and TCP packets are captured as well (the chain's hops for the per-hop
   * breakdown, bench/hop-latency.ts: Kamailio, the engine's SIP and wire ports, RTPEngine's NG).
   */
  readonly hopPorts?: readonly number[];
  /** The pcap file tcpdump writes (its directory is created). */
  readonly file: string;
  /** Interface; default 'lo'. */
  readonly iface?: string;
  /** tcpdump ends itself (SIGINT, so the file is complete) after this many seconds; default 4 hours. */
  readonly limitSec?: number;
  /** How long to wait for tcpdump to say it is capturing; default 10 s. */
  readonly startTimeoutMs?: number;
  /** The tcpdump binary; default 'tcpdump' on PATH. */
  readonly command?: string;
}

export interface CaptureExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** What tcpdump printed on stderr (its counters at the end). */
  readonly stderr: string;
  /** "N packets dropped by kernel", when it said so. */
  readonly droppedByKernel: number | undefined;
}

export interface Capture {
  readonly pid: number;
  readonly file: string;
  /** SIGINT (tcpdump writes what it holds and exits), SIGKILL after 5 s; resolves on exit. Idempotent. */
  stop(): Promise<CaptureExit>;
}

const INSTALL_HINT = 'install it with: apt-get install -y --no-install-recommends tcpdump (or node scripts/ensure.mjs --native as root)';

const running = new Set<number>();
let exitHook = false;

/** Captures still running when this process exits (an interrupted or failed run) get their SIGINT. */
function hookExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const pid of running) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  });
}

/** The tcpdump arguments for a capture (exported for the tests). */
export function tcpdumpArgs(o: CaptureOptions, asRoot: boolean): string[] {
  if (o.ports.length === 0) throw new Error('a capture needs at least one port');
  const hopPorts = o.hopPorts ?? [];
  for (const p of [...o.ports, ...hopPorts]) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`not a port: ${p}`);
  const anyOf = (ports: readonly number[]): string => ports.map((p) => `port ${p}`).join(' or ');
  const filter = hopPorts.length === 0 ? `udp and (${anyOf(o.ports)})` : `(udp and (${anyOf([...o.ports, ...hopPorts])})) or (tcp and (${anyOf(hopPorts)}))`;
  return [
    '-i', o.iface ?? 'lo', '-n', '-s', '0',
    // A larger kernel buffer than libpcap's 2 MB: no drops when the machine is busy.
    '-B', '8192',
    // Immediate mode: each packet reaches tcpdump as it comes. Without it, packets wait in the
    // kernel's ring for a full block or a 1 s timeout, and those still waiting at SIGINT are lost
    // (the last calls of a load).
    '--immediate-mode',
    // Debian's tcpdump drops to the user tcpdump after opening the device: keep root's file owner.
    ...(asRoot ? ['-Z', 'root'] : []),
    '-w', o.file, filter,
  ];
}

/**
 * Starts tcpdump writing `file` with the UDP packets to and from `ports`; resolves once it says
 * it is listening (the capture socket is open: every later packet is in the file), rejects with
 * what it printed when it cannot start.
 */
export async function startCapture(o: CaptureOptions): Promise<Capture> {
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const args = tcpdumpArgs(o, asRoot);
  mkdirSync(dirname(o.file), { recursive: true });
  const command = o.command ?? 'tcpdump';
  const limitSec = Math.max(1, Math.ceil(o.limitSec ?? 4 * 3600));
  // coreutils timeout bounds it even if this process dies without its exit hook (SIGKILL).
  const child = spawn('timeout', ['-s', 'INT', '-k', '5', String(limitSec), command, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = child.pid;
  let stderr = '';
  let spawnError: string | undefined;
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString('utf8');
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  const done = new Promise<CaptureExit>((resolve) => {
    child.once('error', (err) => {
      spawnError = err.message;
      // Not started at all: no 'close' follows.
      if (pid === undefined) resolve({ code: null, signal: null, stderr: err.message, droppedByKernel: undefined });
    });
    child.once('close', (code, signal) => {
      if (pid !== undefined) running.delete(pid);
      const dropped = /(\d+) packets? dropped by kernel/.exec(stderr);
      resolve({ code, signal, stderr, droppedByKernel: dropped ? Number(dropped[1]) : undefined });
    });
  });
  if (pid !== undefined) {
    running.add(pid);
    hookExit();
  }
  const signal = (sig: NodeJS.Signals): void => {
    if (pid === undefined) return;
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  let stopping: Promise<CaptureExit> | undefined;
  const stop = (): Promise<CaptureExit> => {
    stopping ??= (async () => {
      signal('SIGINT');
      const kill = setTimeout(() => signal('SIGKILL'), 5000);
      const exit = await done;
      clearTimeout(kill);
      return exit;
    })();
    return stopping;
  };
  const timeoutMs = o.startTimeoutMs ?? 10_000;
  const started = await new Promise<'listening' | 'exited' | 'timeout'>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), timeoutMs);
    const check = (): void => {
      if (/listening on /.test(stderr)) {
        clearTimeout(timer);
        resolve('listening');
      }
    };
    child.stderr.on('data', check);
    void done.then(() => {
      clearTimeout(timer);
      resolve(/listening on /.test(stderr) ? 'listening' : 'exited');
    });
  });
  if (started === 'listening') return { pid: pid ?? -1, file: o.file, stop };
  const exit = await stop();
  const said = (spawnError ?? exit.stderr).trim().slice(-800);
  const missing = exit.code === 127 || /No such file|not found|ENOENT/.test(said);
  throw new Error(
    started === 'timeout'
      ? `tcpdump did not start capturing on ${o.iface ?? 'lo'} within ${timeoutMs} ms: ${said || 'it printed nothing'}`
      : missing
        ? `tcpdump is not installed (or not on PATH): ${said}; ${INSTALL_HINT}`
        : `tcpdump could not capture on ${o.iface ?? 'lo'} (exit ${exit.code ?? exit.signal}): ${said || 'it printed nothing'} ` +
          '(it needs root or CAP_NET_RAW; if it is missing, ' + INSTALL_HINT + ')',
  );
}

// ------------------------------------------------------------------------------------- pcap

export interface UdpDatagram {
  /** Capture time in microseconds since the epoch (fractional in a nanosecond file). */
  readonly timeUs: number;
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
  readonly payload: Buffer;
}

/** A UDP datagram or a TCP segment (its payload only: no reassembly here). */
export interface IpPacket extends UdpDatagram {
  readonly protocol: 'udp' | 'tcp';
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;
const DLT_RAW = 12;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_LINUX_SLL2 = 276;
/** A record longer than this is taken as garbage (a damaged file), not allocated. */
const MAX_RECORD = 256 * 1024 * 1024;

/** Where the IPv4 header starts in a frame, or -1 when the frame does not carry IPv4. */
function ipv4Offset(linkType: number, frame: Buffer): number {
  switch (linkType) {
    case LINKTYPE_ETHERNET: {
      let off = 12;
      let type = frame.length >= off + 2 ? frame.readUInt16BE(off) : -1;
      // 802.1Q / 802.1ad tags, stacked.
      while ((type === 0x8100 || type === 0x88a8) && frame.length >= off + 6) {
        off += 4;
        type = frame.readUInt16BE(off);
      }
      return type === 0x0800 ? off + 2 : -1;
    }
    case LINKTYPE_LINUX_SLL:
      return frame.length >= 16 && frame.readUInt16BE(14) === 0x0800 ? 16 : -1;
    case LINKTYPE_LINUX_SLL2:
      return frame.length >= 20 && frame.readUInt16BE(0) === 0x0800 ? 20 : -1;
    case LINKTYPE_RAW:
    case DLT_RAW:
      return frame.length >= 1 && frame[0] !== undefined && frame[0] >> 4 === 4 ? 0 : -1;
    default:
      return -1;
  }
}

function ipv4Address(b: Buffer, at: number): string {
  return `${b[at] ?? 0}.${b[at + 1] ?? 0}.${b[at + 2] ?? 0}.${b[at + 3] ?? 0}`;
}

/** The UDP datagram or TCP segment in one frame, or undefined (not IPv4, another protocol, a fragment, cut short). */
function packetIn(linkType: number, frame: Buffer, timeUs: number): IpPacket | undefined {
  const ip = ipv4Offset(linkType, frame);
  if (ip < 0 || frame.length < ip + 20) return undefined;
  const vihl = frame[ip] ?? 0;
  const ihl = (vihl & 0x0f) * 4;
  if (vihl >> 4 !== 4 || ihl < 20 || frame.length < ip + ihl) return undefined;
  // More fragments, or not the first fragment: not a whole datagram.
  if ((frame.readUInt16BE(ip + 6) & 0x3fff) !== 0) return undefined;
  const proto = frame[ip + 9];
  // The IP total length bounds the packet (an Ethernet frame may carry padding after it).
  const ipEnd = Math.min(frame.length, ip + frame.readUInt16BE(ip + 2));
  const l4 = ip + ihl;
  let payloadStart: number;
  let payloadEnd = ipEnd;
  if (proto === 17) {
    if (ipEnd < l4 + 8) return undefined;
    const udpLength = frame.readUInt16BE(l4 + 4);
    if (udpLength < 8) return undefined;
    payloadStart = l4 + 8;
    payloadEnd = Math.min(ipEnd, l4 + udpLength);
  } else if (proto === 6) {
    if (ipEnd < l4 + 20) return undefined;
    const dataOffset = ((frame[l4 + 12] ?? 0) >> 4) * 4;
    if (dataOffset < 20 || ipEnd < l4 + dataOffset) return undefined;
    payloadStart = l4 + dataOffset;
  } else {
    return undefined;
  }
  return {
    protocol: proto === 17 ? 'udp' : 'tcp',
    timeUs,
    src: ipv4Address(frame, ip + 12),
    dst: ipv4Address(frame, ip + 16),
    srcPort: frame.readUInt16BE(l4),
    dstPort: frame.readUInt16BE(l4 + 2),
    payload: frame.subarray(payloadStart, payloadEnd),
  };
}

/**
 * The IPv4 UDP datagrams of a classic pcap file (either byte order, microsecond or nanosecond
 * timestamps; Ethernet, Linux cooked v1/v2 or raw IP links). Other packets are skipped; a record
 * cut short (the capture stopped while writing it) ends the file. Throws only when the buffer is
 * not a pcap file at all.
 */
export function* readPcap(buf: Buffer): Generator<UdpDatagram> {
  for (const p of readPcapPackets(buf)) if (p.protocol === 'udp') yield p;
}

/** As readPcap, with the TCP segments that carry data as well. */
export function* readPcapPackets(buf: Buffer): Generator<IpPacket> {
  if (buf.length < 24) throw new Error(`not a pcap file: ${buf.length} bytes, shorter than its header`);
  const magicLe = buf.readUInt32LE(0);
  const magicBe = buf.readUInt32BE(0);
  let little: boolean;
  let nano: boolean;
  if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) {
    little = true;
    nano = magicLe === 0xa1b23c4d;
  } else if (magicBe === 0xa1b2c3d4 || magicBe === 0xa1b23c4d) {
    little = false;
    nano = magicBe === 0xa1b23c4d;
  } else {
    throw new Error(`not a classic pcap file (magic 0x${magicBe.toString(16).padStart(8, '0')}; pcapng is not read)`);
  }
  const u32 = (at: number): number => (little ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  // The low 16 bits are the link type; the high bits may carry FCS information.
  const linkType = u32(20) & 0xffff;
  for (let off = 24; off + 16 <= buf.length; ) {
    const sec = u32(off);
    const frac = u32(off + 4);
    const caplen = u32(off + 8);
    if (caplen > MAX_RECORD || off + 16 + caplen > buf.length) return;
    const frame = buf.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    const timeUs = sec * 1e6 + (nano ? frac / 1000 : frac);
    const p = packetIn(linkType, frame, timeUs);
    if (p && (p.protocol === 'udp' || p.payload.length > 0)) yield p;
  }
}

// ------------------------------------------------------------------------------ SIP pairing

export interface SetupLatency {
  /** Milliseconds (to the microsecond) from the authenticated INVITE leaving the caller to its first 180 / 200 arriving. */
  readonly ringingMs: number[];
  readonly answeredMs: number[];
  /** Call-IDs with an INVITE sent from a caller port. */
  readonly calls: number;
  /** Of those, calls whose last INVITE has no 180 or no 200 in the capture. */
  readonly unmatched: number;
}

interface SipSummary {
  /** The request method, or undefined for a response. */
  readonly method: string | undefined;
  /** The status code of a response. */
  readonly status: number | undefined;
  readonly callId: string;
  readonly cseq: number;
  readonly cseqMethod: string;
}

/**
 * The start line, Call-ID and CSeq of a SIP message, or undefined when it is not one: read with
 * the engine's own parser (compact forms, folded lines and the rest of RFC 3261's syntax).
 */
export function scanSip(payload: Buffer): SipSummary | undefined {
  const parsed = parseMessage(payload);
  if (!parsed.ok) return undefined;
  const m = parsed.message;
  const cseq = parseCSeq(m.get('cseq') ?? '');
  if (!m.callId || !cseq) return undefined;
  return {
    method: m.type === 'request' ? m.method.toUpperCase() : undefined,
    status: m.type === 'response' ? m.status : undefined,
    callId: m.callId,
    cseq: cseq.seq,
    cseqMethod: cseq.method.toUpperCase(),
  };
}

interface CallTimes {
  /** The highest INVITE CSeq sent from a caller, and when it first left. */
  cseq: number;
  sentUs: number;
  /** First 180 and first 200 per INVITE CSeq, arriving at a caller. */
  readonly responses: Map<number, { ringingUs?: number; answeredUs?: number }>;
}

/**
 * Pairs each call's last INVITE (the authenticated one after the 407: the highest CSeq) sent from
 * one of `callerPorts` with the first 180 and the first 200 to that INVITE (same Call-ID, same
 * CSeq number, method INVITE) arriving at one of them. A retransmission (same CSeq) keeps the
 * first send's time. Anything that is not a SIP message with a Call-ID and a CSeq is ignored.
 */
export function setupLatency(datagrams: Iterable<UdpDatagram>, callerPorts: ReadonlySet<number>): SetupLatency {
  const calls = new Map<string, CallTimes>();
  for (const d of datagrams) {
    const fromCaller = callerPorts.has(d.srcPort);
    const toCaller = callerPorts.has(d.dstPort);
    if (!fromCaller && !toCaller) continue;
    const m = scanSip(d.payload);
    if (!m || m.cseqMethod !== 'INVITE') continue;
    const c = calls.get(m.callId);
    if (m.method === 'INVITE' && fromCaller) {
      if (!c) calls.set(m.callId, { cseq: m.cseq, sentUs: d.timeUs, responses: new Map() });
      else if (m.cseq > c.cseq || (m.cseq === c.cseq && d.timeUs < c.sentUs)) {
        c.cseq = m.cseq;
        c.sentUs = d.timeUs;
      }
    } else if (c && toCaller && (m.status === 180 || m.status === 200)) {
      // Kept per CSeq: the 180 and 200 of the INVITE that turns out to be the last one count.
      const r = c.responses.get(m.cseq) ?? {};
      if (m.status === 180 && (r.ringingUs === undefined || d.timeUs < r.ringingUs)) r.ringingUs = d.timeUs;
      if (m.status === 200 && (r.answeredUs === undefined || d.timeUs < r.answeredUs)) r.answeredUs = d.timeUs;
      c.responses.set(m.cseq, r);
    }
  }
  const ringingMs: number[] = [];
  const answeredMs: number[] = [];
  let unmatched = 0;
  const ms = (fromUs: number, toUs: number): number => Math.round(toUs - fromUs) / 1000;
  for (const c of calls.values()) {
    const r = c.responses.get(c.cseq);
    const ringing = r?.ringingUs !== undefined && r.ringingUs >= c.sentUs ? r.ringingUs : undefined;
    const answered = r?.answeredUs !== undefined && r.answeredUs >= c.sentUs ? r.answeredUs : undefined;
    if (ringing !== undefined) ringingMs.push(ms(c.sentUs, ringing));
    if (answered !== undefined) answeredMs.push(ms(c.sentUs, answered));
    if (ringing === undefined || answered === undefined) unmatched++;
  }
  return { ringingMs, answeredMs, calls: calls.size, unmatched };
}
