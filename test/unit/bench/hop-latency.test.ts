// The per-hop breakdown of INVITE->180 (bench/hop-latency.ts) on synthetic packets: one call
// through the whole chain (UDP SIP, the drachtio wire over TCP split across segments, NG), the
// B leg tied to its call through X-Call-ID and the B2BUA's session map, a chain without media,
// and calls with a hop missing left out. readPcapPackets is checked on a TCP frame.

import t from 'tap';
import { hopLatency, type HopPorts } from '../../../bench/hop-latency';
import { readPcapPackets, type IpPacket } from '../../../bench/pcap-latency';

const CALLER = 40000;
const CALLEE = 40002;
const PORTS: HopPorts = { kamailio: 5060, engineSip: 5080, wire: 9022, ng: [22222] };
const B2BUA_TCP = 45000;
const B2BUA_NG = 46000;

function udp(tUs: number, srcPort: number, dstPort: number, text: string): IpPacket {
  return { protocol: 'udp', timeUs: tUs, src: '127.0.0.1', srcPort, dst: '127.0.0.1', dstPort, payload: Buffer.from(text, 'latin1') };
}

function tcp(tUs: number, srcPort: number, dstPort: number, bytes: Buffer): IpPacket {
  return { protocol: 'tcp', timeUs: tUs, src: '127.0.0.1', srcPort, dst: '127.0.0.1', dstPort, payload: bytes };
}

function request(method: string, callId: string | undefined, cseq: number | undefined, extra = ''): string {
  return (
    `${method} sip:6002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK-${cseq ?? 0}\r\n` +
    'From: <sip:6001@127.0.0.1>;tag=a\r\nTo: <sip:6002@127.0.0.1>\r\n' +
    `${callId ? `Call-ID: ${callId}\r\n` : ''}${cseq ? `CSeq: ${cseq} ${method}\r\n` : ''}${extra}Content-Length: 0\r\n\r\n`
  );
}

function response(status: number, callId: string, cseq: number, method = 'INVITE', extra = ''): string {
  return (
    `SIP/2.0 ${status} X\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK-${cseq}\r\n` +
    `From: <sip:6001@127.0.0.1>;tag=a\r\nTo: <sip:6002@127.0.0.1>;tag=b\r\nCall-ID: ${callId}\r\nCSeq: ${cseq} ${method}\r\n${extra}Content-Length: 0\r\n\r\n`
  );
}

/** A drachtio wire frame carrying a SIP message. */
function wire(sip: string): Buffer {
  const payload = `msg-1|sip|network|\r\n${sip}`;
  return Buffer.from(`${Buffer.byteLength(payload)}#${payload}`, 'utf8');
}

function ng(cookie: string, dict: string): string {
  return `${cookie} d${dict}e`;
}

/**
 * One call, times in us from `t0`: each step takes `step` us more than the last (1, 2, 3 ... ms),
 * so every step's figure is known. `media` adds the offer to RTPEngine.
 */
function chainCall(a: string, b: string, session: string, t0: number, media = true): IpPacket[] {
  const out: IpPacket[] = [];
  let t = t0;
  let k = 0;
  const next = (): number => {
    k += 1;
    t += k * 1000;
    return t;
  };
  // The challenged INVITE, its 407 (not timed), then the authenticated one and its retransmission.
  out.push(udp(t0 - 5000, CALLER, PORTS.kamailio, request('INVITE', a, 1)));
  out.push(udp(t0 - 4000, PORTS.kamailio, CALLER, response(407, a, 1)));
  out.push(udp(t0, CALLER, PORTS.kamailio, request('INVITE', a, 2)));
  out.push(udp(t0 + 1, CALLER, PORTS.kamailio, request('INVITE', a, 2)));
  out.push(udp(next(), PORTS.kamailio, PORTS.engineSip, request('INVITE', a, 2)));
  // The wire frame in two segments: the frame is timed by the second.
  const frame = wire(request('INVITE', a, 2));
  out.push(tcp(t + 10, PORTS.wire, B2BUA_TCP, frame.subarray(0, 30)));
  out.push(tcp(next(), PORTS.wire, B2BUA_TCP, frame.subarray(30)));
  if (media) {
    out.push(udp(next(), B2BUA_NG, 22222, ng(`c-${a}`, `7:call-id${a.length}:${a}7:command5:offer`)));
    out.push(udp(next(), 22222, B2BUA_NG, ng(`c-${a}`, '6:result2:ok')));
  }
  // The B2BUA's B-leg request has no Call-ID and no CSeq yet.
  out.push(tcp(next(), B2BUA_TCP, PORTS.wire, wire(request('INVITE', undefined, undefined, `X-Call-ID: ${session}\r\n`))));
  out.push(udp(next(), PORTS.engineSip, PORTS.kamailio, request('INVITE', b, 7, `X-Call-ID: ${session}\r\n`)));
  out.push(udp(next(), PORTS.kamailio, CALLEE, request('INVITE', b, 7, `X-Call-ID: ${session}\r\n`)));
  out.push(udp(next(), CALLEE, PORTS.kamailio, response(180, b, 7)));
  out.push(udp(next(), PORTS.kamailio, PORTS.engineSip, response(180, b, 7)));
  out.push(tcp(next(), PORTS.wire, B2BUA_TCP, wire(response(180, b, 7))));
  // The A-leg 180 carries X-Call-ID too: it stays on the A leg.
  out.push(tcp(next(), B2BUA_TCP, PORTS.wire, wire(response(180, a, 2, 'INVITE', `X-Call-ID: ${session}\r\n`))));
  out.push(udp(next(), PORTS.engineSip, PORTS.kamailio, response(180, a, 2)));
  out.push(udp(next(), PORTS.kamailio, CALLER, response(180, a, 2)));
  // A 180 to something else than the INVITE is not the call's.
  out.push(udp(t + 1, PORTS.kamailio, CALLER, response(180, a, 3, 'BYE')));
  return out;
}

t.test('one call through the whole chain: every step, per process, and the total', async (tt) => {
  const sessions = new Map([['s-1', 'a-1']]);
  const r = hopLatency(chainCall('a-1', 'b-1', 's-1', 1_000_000), new Set([CALLER]), PORTS, sessions);
  tt.equal(r.calls, 1);
  tt.equal(r.incomplete, 0);
  tt.same(r.steps.map((s) => [s.in, s.p50]), [
    ['kamailio', 1], ['engine', 2], ['b2bua', 3], ['rtpengine', 4], ['b2bua', 5], ['engine', 6], ['kamailio', 7],
    ['callee', 8], ['kamailio', 9], ['engine', 10], ['b2bua', 11], ['engine', 12], ['kamailio', 13],
  ], 'each step as long as it was made (ms), from the first copy of the authenticated INVITE');
  tt.equal(r.total.p50, 91, 'INVITE->180: the sum of the steps');
  tt.same(Object.fromEntries(r.perProcess.map((p) => [p.process, p.p50])), { kamailio: 30, engine: 30, b2bua: 19, rtpengine: 4, callee: 8 });
});

t.test('a B leg whose session the map does not know leaves its call out; a chain without media has no RTPEngine step', async (tt) => {
  const packets = [...chainCall('a-1', 'b-1', 's-1', 1_000_000, false), ...chainCall('a-2', 'b-2', 's-2', 2_000_000, false)];
  const r = hopLatency(packets, new Set([CALLER]), { ...PORTS, ng: [] }, new Map([['s-1', 'a-1']]));
  tt.equal(r.calls, 1);
  tt.equal(r.incomplete, 1, 'the call whose B leg cannot be tied to it');
  tt.notOk(r.steps.some((s) => s.in === 'rtpengine'), 'no RTPEngine step');
  tt.equal(r.steps.length, 11);
  tt.equal(r.total.p50, 66);
});

t.test('percentiles over many calls', async (tt) => {
  const packets: IpPacket[] = [];
  const sessions = new Map<string, string>();
  for (let i = 0; i < 100; i++) {
    sessions.set(`s-${i}`, `a-${i}`);
    packets.push(...chainCall(`a-${i}`, `b-${i}`, `s-${i}`, 1_000_000 + i * 200_000));
  }
  packets.sort((x, y) => x.timeUs - y.timeUs);
  const r = hopLatency(packets, new Set([CALLER]), PORTS, sessions);
  tt.equal(r.calls, 100);
  tt.same([r.total.samples, r.total.p50, r.total.p95, r.total.p99, r.total.max], [100, 91, 91, 91, 91]);
});

t.test('readPcapPackets reads a TCP segment\'s payload beside UDP', async (tt) => {
  const payload = Buffer.from('12#abc|sip|x|\r\n', 'latin1');
  const tcpHeader = Buffer.alloc(20);
  tcpHeader.writeUInt16BE(9022, 0);
  tcpHeader.writeUInt16BE(45000, 2);
  tcpHeader[12] = 5 << 4;
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 20 + payload.length, 2);
  ip[9] = 6;
  Buffer.from([127, 0, 0, 1]).copy(ip, 12);
  Buffer.from([127, 0, 0, 2]).copy(ip, 16);
  const eth = Buffer.alloc(14);
  eth.writeUInt16BE(0x0800, 12);
  const frameBytes = Buffer.concat([eth, ip, tcpHeader, payload]);
  // A bare ACK (no payload) is skipped.
  const ack = Buffer.concat([eth, Buffer.from(ip), tcpHeader]);
  ack.writeUInt16BE(40, 14 + 2);
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(262144, 16);
  head.writeUInt32LE(1, 20);
  const rec = (sec: number, f: Buffer): Buffer => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(sec, 0);
    r.writeUInt32LE(5, 4);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return Buffer.concat([r, f]);
  };
  const packets = [...readPcapPackets(Buffer.concat([head, rec(7, ack), rec(8, frameBytes)]))];
  tt.equal(packets.length, 1);
  tt.match(packets[0], { protocol: 'tcp', timeUs: 8_000_005, src: '127.0.0.1', srcPort: 9022, dst: '127.0.0.2', dstPort: 45000 });
  tt.equal(packets[0]?.payload.toString('latin1'), payload.toString('latin1'));
});
