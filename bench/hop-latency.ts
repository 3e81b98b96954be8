// Where a chain call's INVITE->180 goes, hop by hop, from one capture of the whole chain on lo
// (BENCH_HOPS=1): UDP at the callers, Kamailio, the engine's SIP port and RTPEngine's NG port,
// and TCP at the engine's wire port (the drachtio protocol between the engine and the B2BUA).
// Every message is timed by the kernel as it crossed lo, so the time between a message reaching a
// process and the next one leaving it is that process's: its work, its queue and its wait for a
// core. A B leg is tied to its call by the X-Call-ID header the B2BUA adds (its session id),
// and the session id to the caller's Call-ID by the B2BUA's `call received` log line.

import { parseCSeq, parseMessage } from '../lib/engine/message';
import { parseAppMessage } from '../lib/engine/wire/app-message';
import { WireFramer } from '../lib/engine/wire/wire-framer';
import type { IpPacket } from './pcap-latency';
import { percentiles, type Percentiles } from './stats';

/** The chain's ports on 127.0.0.x (the callees are any other UDP port Kamailio talks to). */
export interface HopPorts {
  readonly kamailio: number;
  readonly engineSip: number;
  /** The engine's end of the drachtio wire connection (TCP). */
  readonly wire: number;
  /** RTPEngine's NG control ports (none on a chain without media). */
  readonly ng: readonly number[];
}

type Role = 'caller' | 'kamailio' | 'engine' | 'b2bua' | 'rtpengine' | 'callee';

/** One message crossing lo between two processes. */
interface Crossing {
  readonly t: number;
  readonly from: Role;
  readonly to: Role;
  /** 'INVITE', '180', 'ng offer', 'ng reply' ... */
  readonly what: string;
  /** The A-leg Call-ID (after mapping a B leg through X-Call-ID) and which leg the message is on. */
  readonly callId: string;
  readonly leg: 'a' | 'b';
  /** The CSeq number (0 for NG). */
  readonly cseq: number;
}

/** A step of INVITE->180: the time between two crossings, spent in `in`. */
interface StepSpec {
  readonly name: string;
  readonly in: Role;
  readonly match: (c: Crossing) => boolean;
  /** Absent on a chain without media: the step is skipped when no call has it. */
  readonly optional?: boolean;
}

/** The longest drachtio wire frame read (a frame's length prefix above it stops that direction). */
const MAX_WIRE_FRAME = 16 * 1024 * 1024;

const is = (from: Role, to: Role, what: string, leg: 'a' | 'b') => (c: Crossing): boolean => c.from === from && c.to === to && c.what === what && c.leg === leg;

/** The milestones of INVITE->180 in order; each step's time is spent in `in` (the process the message left). */
const STEPS: readonly StepSpec[] = [
  { name: 'caller INVITE reaches Kamailio', in: 'caller', match: is('caller', 'kamailio', 'INVITE', 'a') },
  { name: 'Kamailio: A-leg INVITE to the engine', in: 'kamailio', match: is('kamailio', 'engine', 'INVITE', 'a') },
  { name: 'engine: INVITE to the B2BUA', in: 'engine', match: is('engine', 'b2bua', 'INVITE', 'a') },
  { name: 'B2BUA: offer to RTPEngine', in: 'b2bua', match: is('b2bua', 'rtpengine', 'ng offer', 'a'), optional: true },
  { name: 'RTPEngine: offer answered', in: 'rtpengine', match: is('rtpengine', 'b2bua', 'ng reply', 'a'), optional: true },
  { name: 'B2BUA: B-leg INVITE to the engine', in: 'b2bua', match: is('b2bua', 'engine', 'INVITE', 'b') },
  { name: 'engine: B-leg INVITE to Kamailio', in: 'engine', match: is('engine', 'kamailio', 'INVITE', 'b') },
  { name: 'Kamailio: B-leg INVITE to the callee', in: 'kamailio', match: is('kamailio', 'callee', 'INVITE', 'b') },
  { name: 'callee: 180', in: 'callee', match: is('callee', 'kamailio', '180', 'b') },
  { name: 'Kamailio: 180 to the engine', in: 'kamailio', match: is('kamailio', 'engine', '180', 'b') },
  { name: 'engine: 180 to the B2BUA', in: 'engine', match: is('engine', 'b2bua', '180', 'b') },
  { name: 'B2BUA: A-leg 180 to the engine', in: 'b2bua', match: is('b2bua', 'engine', '180', 'a') },
  { name: 'engine: 180 to Kamailio', in: 'engine', match: is('engine', 'kamailio', '180', 'a') },
  { name: 'Kamailio: 180 to the caller', in: 'kamailio', match: is('kamailio', 'caller', '180', 'a') },
];

export interface HopStep extends Percentiles {
  readonly name: string;
  /** The process the time was spent in. */
  readonly in: Role;
}

export interface HopBreakdown {
  /** Calls whose every milestone was captured, and those skipped (a milestone missing). */
  readonly calls: number;
  readonly incomplete: number;
  /** Milliseconds per step (the first, the caller's INVITE, is the origin and not listed). */
  readonly steps: readonly HopStep[];
  /** Per process, the sum of its steps per call, in milliseconds. */
  readonly perProcess: ReadonlyArray<Percentiles & { readonly process: Role }>;
  /** INVITE leaving the caller to 180 reaching it (the capture's INVITE->180). */
  readonly total: Percentiles;
}

interface SipFacts {
  readonly what: string;
  readonly callId: string | undefined;
  readonly xCallId: string | undefined;
  readonly cseqMethod: string | undefined;
  readonly cseq: number;
}

function facts(get: (name: string) => string | undefined, request: string | undefined, status: number | undefined): SipFacts {
  const cseq = parseCSeq(get('cseq') ?? '');
  // An application's request to the engine has no CSeq yet: its method stands in.
  return { what: request ?? String(status), callId: get('call-id'), xCallId: get('x-call-id'), cseqMethod: cseq?.method.toUpperCase() ?? request, cseq: cseq?.seq ?? 0 };
}

function sipOnUdp(payload: Buffer): SipFacts | undefined {
  const parsed = parseMessage(payload);
  if (!parsed.ok) return undefined;
  const m = parsed.message;
  return facts((n) => m.get(n), m.type === 'request' ? m.method.toUpperCase() : undefined, m.type === 'response' ? m.status : undefined);
}

/** A drachtio wire payload `<msgId>|<command>|...` with CRLF and a SIP message after it (the others are skipped). */
function sipOnWire(payload: string): SipFacts | undefined {
  const eol = payload.indexOf('\r\n');
  if (eol < 0) return undefined;
  const m = parseAppMessage(payload.slice(eol + 2));
  if (typeof m === 'string') return undefined;
  const get = (n: string): string | undefined => m.headers.find((h) => h.key === n)?.value;
  return facts(get, m.type === 'request' ? m.method : undefined, m.type === 'response' ? m.status : undefined);
}

/** The cookie, command and call-id of an NG message (a bencoded dictionary after the cookie), or undefined. */
function ngFields(text: string): { cookie: string; command: string | undefined; callId: string | undefined } | undefined {
  const space = text.indexOf(' ');
  if (space <= 0 || text[space + 1] !== 'd') return undefined;
  const str = (key: string): string | undefined => {
    const token = `${key.length}:${key}`;
    const at = text.indexOf(token, space);
    if (at < 0) return undefined;
    const after = at + token.length;
    const m = /^(\d{1,6}):/.exec(text.slice(after, after + 8));
    if (!m) return undefined;
    const from = after + m[0].length;
    return text.slice(from, from + Number(m[1]));
  };
  return { cookie: text.slice(0, space), command: str('command'), callId: str('call-id') };
}

/** Percentiles of microsecond intervals, in milliseconds to the microsecond. */
function figures(us: readonly number[]): Percentiles {
  return percentiles(us.map((v) => Math.round(v) / 1000));
}

/**
 * The per-hop breakdown of INVITE->180 for the calls in a capture of the chain. `callerPorts` are
 * the callers' SIP ports; `sessions` maps the B2BUA's session ids (X-Call-ID) to the callers'
 * Call-IDs. A call counts from its last INVITE leaving a caller (the authenticated one, its first
 * copy) to the first 180 reaching it.
 */
export function hopLatency(packets: Iterable<IpPacket>, callerPorts: ReadonlySet<number>, ports: HopPorts, sessions: ReadonlyMap<string, string>): HopBreakdown {
  const ngPorts = new Set(ports.ng);
  const roleOfUdp = (port: number, peer: number): Role | undefined => {
    if (callerPorts.has(port)) return 'caller';
    if (port === ports.kamailio) return 'kamailio';
    if (port === ports.engineSip) return 'engine';
    if (ngPorts.has(port)) return 'rtpengine';
    if (ngPorts.has(peer)) return 'b2bua';
    if (peer === ports.kamailio) return 'callee';
    return undefined;
  };
  const bToA = new Map<string, string>();
  const ngCalls = new Map<string, string>();
  const crossings: Crossing[] = [];
  const framers = new Map<string, WireFramer>();
  // The time of the TCP segment being framed: a frame is timed by the segment that completes it
  // (the framer calls back inside push()).
  let segmentUs = 0;
  const aLegOf = (f: SipFacts): { callId: string; leg: 'a' | 'b' } | undefined => {
    // A B-leg message names its session (the B2BUA's request to the engine has no Call-ID yet).
    // (The B2BUA's responses on the A leg carry it too: the session's own Call-ID is the A leg.)
    const session = f.xCallId === undefined ? undefined : sessions.get(f.xCallId);
    if (session !== undefined && f.callId !== undefined && f.callId !== session) bToA.set(f.callId, session);
    if (f.callId === undefined) return session === undefined ? undefined : { callId: session, leg: 'b' };
    const a = bToA.get(f.callId);
    return a === undefined ? { callId: f.callId, leg: 'a' } : { callId: a, leg: 'b' };
  };
  const add = (t: number, from: Role, to: Role, f: SipFacts): void => {
    // Only the INVITE transaction matters here: a 180 or 200 to a BYE is not the call's.
    if (f.cseqMethod !== 'INVITE' || (f.what !== 'INVITE' && f.what !== '180')) return;
    const leg = aLegOf(f);
    if (leg) crossings.push({ t, from, to, what: f.what, cseq: f.cseq, ...leg });
  };
  for (const p of packets) {
    if (p.protocol === 'tcp') {
      const toEngine = p.dstPort === ports.wire;
      if (!toEngine && p.srcPort !== ports.wire) continue;
      const flow = `${p.src}:${p.srcPort}>${p.dst}:${p.dstPort}`;
      let framer = framers.get(flow);
      if (!framer) {
        framer = new WireFramer(
          MAX_WIRE_FRAME,
          (payload) => {
            const f = sipOnWire(payload);
            if (f) add(segmentUs, toEngine ? 'b2bua' : 'engine', toEngine ? 'engine' : 'b2bua', f);
          },
          // A capture that starts mid-frame cannot be framed: that direction is left out.
          () => undefined,
        );
        framers.set(flow, framer);
      }
      segmentUs = p.timeUs;
      framer.push(p.payload);
      continue;
    }
    const from = roleOfUdp(p.srcPort, p.dstPort);
    const to = roleOfUdp(p.dstPort, p.srcPort);
    if (!from || !to) continue;
    if (from === 'b2bua' || to === 'b2bua') {
      const ng = ngFields(p.payload.toString('latin1'));
      if (!ng) continue;
      if (from === 'b2bua' && ng.command === 'offer' && ng.callId !== undefined) {
        ngCalls.set(ng.cookie, ng.callId);
        crossings.push({ t: p.timeUs, from, to, what: 'ng offer', callId: bToA.get(ng.callId) ?? ng.callId, leg: 'a', cseq: 0 });
      } else if (to === 'b2bua') {
        const callId = ngCalls.get(ng.cookie);
        if (callId !== undefined) {
          ngCalls.delete(ng.cookie);
          crossings.push({ t: p.timeUs, from, to, what: 'ng reply', callId: bToA.get(callId) ?? callId, leg: 'a', cseq: 0 });
        }
      }
      continue;
    }
    const f = sipOnUdp(p.payload);
    if (f) add(p.timeUs, from, to, f);
  }
  return breakdown(crossings);
}

function breakdown(crossings: readonly Crossing[]): HopBreakdown {
  const perCall = new Map<string, Crossing[]>();
  for (const c of crossings) {
    const list = perCall.get(c.callId);
    if (list) list.push(c);
    else perCall.set(c.callId, [c]);
  }
  const present = STEPS.map((s) => !s.optional || crossings.some(s.match));
  const specs = STEPS.filter((_, i) => present[i]);
  const rows: number[][] = [];
  let incomplete = 0;
  for (const list of perCall.values()) {
    // A call starts at its last INVITE from the caller (the first is challenged), the first copy
    // of it (a retransmission keeps the first send's time).
    let start = -1;
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!;
      if (specs[0]!.match(c) && (start < 0 || c.cseq > list[start]!.cseq)) start = i;
    }
    if (start < 0) continue;
    const times: number[] = [list[start]!.t];
    let from = start;
    for (const spec of specs.slice(1)) {
      const at = list.findIndex((c, i) => i > from && spec.match(c));
      if (at < 0) break;
      times.push(list[at]!.t);
      from = at;
    }
    if (times.length === specs.length) rows.push(times);
    else incomplete++;
  }
  const steps: HopStep[] = specs.slice(1).map((spec, k) => ({ name: spec.name, in: spec.in, ...figures(rows.map((r) => r[k + 1]! - r[k]!)) }));
  const roles = [...new Set(specs.slice(1).map((s) => s.in))];
  const perProcess = roles.map((role) => ({
    process: role,
    ...figures(rows.map((r) => specs.slice(1).reduce((sum, spec, k) => (spec.in === role ? sum + r[k + 1]! - r[k]! : sum), 0))),
  }));
  return { calls: rows.length, incomplete, steps, perProcess, total: figures(rows.map((r) => r[r.length - 1]! - r[0]!)) };
}
