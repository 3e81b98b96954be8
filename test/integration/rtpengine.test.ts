// The real RTPEngine (Debian's rtpengine-daemon, userspace) on free loopback ports, driven by
// RtpEngineAnchor: SDP rewriting, RTP relayed between two UDP "phones", delete figures, re-INVITE
// tag semantics, a stopped engine, and round-robin over two engines. Media is relayed on
// 127.0.0.3 (and 127.0.0.4 for the second engine) so it is told apart from the phones on 127.0.0.1.

import { existsSync, readFileSync } from 'node:fs';
import { Client } from 'rtpengine-client';
import t from 'tap';
import { MediaError } from '../../lib/media/media-anchor';
import { RtpEngineAnchor, type RtpEngineAnchorOptions } from '../../lib/media/rtpengine-anchor';
import { ngPing, rtpEngineArgs } from '../../lib/stack/rtpengine';
import type { TapTest } from '../support/engine-harness';
import {
  RtpPeer,
  rtcpReceiverReport,
  rtcpSenderReport,
  rtpPacket,
  sdpMedia,
  startTestRtpEngine,
  testLogger,
  type TestRtpEngine,
} from '../support/rtpengine';
import { sdp } from '../support/sdp';

let engine: TestRtpEngine | undefined;

t.before(async () => {
  engine = await startTestRtpEngine();
});

t.teardown(async () => {
  await engine?.stop();
});

function current(): TestRtpEngine {
  if (!engine) throw new Error('rtpengine not started (did t.before fail?)');
  return engine;
}

function anchorFor(tt: TapTest, engines: TestRtpEngine[], options: Partial<RtpEngineAnchorOptions> = {}): RtpEngineAnchor {
  const anchor = new RtpEngineAnchor({
    engines: engines.map((e) => e.ng),
    timeoutMs: 1000,
    logger: testLogger(),
    localAddress: '127.0.0.1',
    ...options,
  });
  tt.teardown(() => anchor.close());
  return anchor;
}

async function peers(tt: TapTest): Promise<[RtpPeer, RtpPeer]> {
  const a = await RtpPeer.open();
  const b = await RtpPeer.open();
  tt.teardown(async () => {
    await a.close();
    await b.close();
  });
  return [a, b];
}

/** A plain NG client for looking at RTPEngine from outside the anchor (list, query). */
async function inspector(tt: TapTest): Promise<Client> {
  const client = new Client({ localAddress: '127.0.0.1', timeout: 2000 });
  await new Promise<void>((resolve) => client.once('listening', () => resolve()));
  tt.teardown(() => client.close());
  return client;
}

async function listedCalls(client: Client, e: TestRtpEngine): Promise<string[]> {
  const reply = await client.list(e.ng, { limit: 1000 });
  return Array.isArray(reply.calls) ? reply.calls.filter((c): c is string => typeof c === 'string') : [];
}

function inRange(tt: TapTest, port: number, e: TestRtpEngine, what: string): void {
  tt.ok(port >= e.portMin && port <= e.portMax, `${what}: port ${port} within ${e.portMin}-${e.portMax}`);
}

/**
 * Packets ordered by RTP sequence number. RTPEngine relays with several threads, so packets sent
 * back to back can (rarely) arrive swapped; what matters is that each arrives unchanged.
 */
function bySeq(packets: Buffer[]): Buffer[] {
  return [...packets].sort((x, y) => x.readUInt16BE(2) - y.readUInt16BE(2));
}

/** Sends `count` RTP packets from `peer` to `to`, one after the other. */
async function sendRtp(peer: RtpPeer, to: { address: string; port: number }, count: number, ssrc: number, firstSeq = 0): Promise<Buffer[]> {
  const sent: Buffer[] = [];
  for (let i = 0; i < count; i += 1) {
    const packet = rtpPacket(firstSeq + i, ssrc);
    sent.push(packet);
    await peer.send(packet, to.port, to.address);
  }
  return sent;
}

t.test('startRtpEngine: command line, pid file, NG ping', async (tt) => {
  const e = current();
  tt.ok(e.proc.running, 'running');
  tt.equal(readFileSync(e.pidFile, 'utf8').trim(), String(e.proc.pid), 'the pid file names the process');
  tt.equal(await ngPing(e.ng.host, e.ng.port), true, 'answers an NG ping');
  tt.same(
    rtpEngineArgs({
      interface: { address: '10.0.0.5', advertise: '203.0.113.7' },
      ng: { address: '127.0.0.1', port: 2223 },
      portMin: 30000,
      portMax: 40000,
      pidFile: '/run/x.pid',
      logger: testLogger(),
      logLevel: 5,
    }),
    [
      '--config-file=none',
      '--table=-1',
      '--foreground',
      '--log-stderr',
      '--interface=10.0.0.5!203.0.113.7',
      '--listen-ng=127.0.0.1:2223',
      '--port-min=30000',
      '--port-max=40000',
      '--pidfile=/run/x.pid',
      '--log-level=5',
    ],
  );
});

t.test('a call: SDP rewritten to RTPEngine, RTP relayed both ways, figures per direction, nothing left', async (tt) => {
  const e = current();
  const anchor = anchorFor(tt, [e]);
  const [caller, callee] = await peers(tt);
  const client = await inspector(tt);
  const callId = `call-${process.pid}-1`;

  const toCallee = await anchor.offer({ callId, fromTag: 'caller-tag', sdp: sdp({ origin: 'caller', port: caller.port }) });
  const calleeSends = sdpMedia(toCallee);
  tt.equal(calleeSends.address, '127.0.0.3', 'offer: c= is RTPEngine\'s media address');
  tt.match(toCallee, /^o=caller \S+ \S+ IN IP4 127\.0\.0\.3$/m, 'offer: o= address replaced too');
  tt.notMatch(toCallee, /a=candidate|a=ice-/, 'no ICE attributes');
  inRange(tt, calleeSends.port, e, 'offer');
  tt.equal(anchor.activeSessions, 1);

  const toCaller = await anchor.answer({ callId, fromTag: 'caller-tag', toTag: 'callee-tag', sdp: sdp({ origin: 'callee', port: callee.port }) });
  const callerSends = sdpMedia(toCaller);
  tt.equal(callerSends.address, '127.0.0.3', 'answer: c= is RTPEngine\'s media address');
  inRange(tt, callerSends.port, e, 'answer');
  tt.not(callerSends.port, calleeSends.port, 'each side gets its own port');

  const fromCaller = await sendRtp(caller, callerSends, 10, 0xa1a1a1a1);
  const fromCallee = await sendRtp(callee, calleeSends, 4, 0xb2b2b2b2);
  const atCallee = await callee.waitForPackets(10);
  const atCaller = await caller.waitForPackets(4);
  tt.ok(atCallee.every((r) => r.from.address === '127.0.0.3' && r.from.port === calleeSends.port), 'the callee got RTP from RTPEngine\'s port it was given');
  tt.ok(atCaller.every((r) => r.from.address === '127.0.0.3' && r.from.port === callerSends.port), 'the caller got RTP from RTPEngine\'s port it was given');
  tt.same(bySeq(atCallee.map((r) => r.data)), fromCaller, 'the caller\'s packets arrived unchanged');
  tt.same(bySeq(atCaller.map((r) => r.data)), fromCallee, 'the callee\'s packets arrived unchanged');
  tt.same(await listedCalls(client, e), [callId], 'RTPEngine lists the call');

  const quality = await anchor.delete({ callId });
  tt.ok(quality, 'delete returns figures');
  tt.match(quality, {
    engine: `${e.ng.host}:${e.ng.port}`,
    callerToCallee: { packets: 10, bytes: 10 * 172 },
    calleeToCaller: { packets: 4, bytes: 4 * 172 },
  });
  tt.ok((quality?.durationSec ?? -1) >= 0, 'a duration');
  tt.equal(anchor.activeSessions, 0);
  tt.same(await listedCalls(client, e), [], 'list: no call after delete');
  // RTPEngine names the call in every line about it; an option it does not know is a WARNING.
  const complaints = e.proc.output().filter((l) => l.includes(callId) && /\b(WARNING|ERR|CRIT)\b/.test(l));
  tt.same(complaints, [], 'RTPEngine took every key and flag of the offer, answer and delete without a warning (before the query below, which it rightly warns about)');
  const query = await client.query(e.ng, { 'call-id': callId });
  tt.equal(query.result, 'error', 'query: the call is gone');
  tt.equal(await anchor.delete({ callId }), undefined, 'a second delete resolves undefined');
});

t.test('re-INVITE from the callee with the documented tags keeps media flowing; swapped tags are refused', async (tt) => {
  const e = current();
  const anchor = anchorFor(tt, [e]);
  const [caller, callee] = await peers(tt);
  const client = await inspector(tt);
  const callId = `call-${process.pid}-2`;
  const toCallee = await anchor.offer({ callId, fromTag: 'A', sdp: sdp({ origin: 'caller', port: caller.port }) });
  const toCaller = await anchor.answer({ callId, fromTag: 'A', toTag: 'B', sdp: sdp({ origin: 'callee', port: callee.port }) });
  await sendRtp(caller, sdpMedia(toCaller), 3, 0xa1, 0);
  await sendRtp(callee, sdpMedia(toCallee), 3, 0xb2, 0);
  await callee.waitForPackets(3);
  await caller.waitForPackets(3);

  // The callee re-offers (e.g. a session refresh with new SDP); the caller answers.
  const reOfferToCaller = await anchor.offer({ callId, fromTag: 'B', toTag: 'A', sdp: sdp({ origin: 'callee', port: callee.port, version: 2 }) });
  const swapped = await anchor.answer({ callId, fromTag: 'A', toTag: 'B', sdp: sdp({ origin: 'caller', port: caller.port, version: 2 }) }).then(
    () => undefined,
    (err: unknown) => err,
  );
  tt.ok(swapped instanceof MediaError && swapped.code === 'MEDIA_REJECTED', 'an answer with the initial call\'s tags is refused');
  const reAnswerToCallee = await anchor.answer({ callId, fromTag: 'B', toTag: 'A', sdp: sdp({ origin: 'caller', port: caller.port, version: 2 }) });
  const callerSends = sdpMedia(reOfferToCaller);
  const calleeSends = sdpMedia(reAnswerToCallee);
  tt.equal(callerSends.address, '127.0.0.3');
  tt.equal(calleeSends.address, '127.0.0.3');

  const fromCaller = await sendRtp(caller, callerSends, 5, 0xa1, 100);
  const fromCallee = await sendRtp(callee, calleeSends, 5, 0xb2, 100);
  const atCallee = bySeq((await callee.waitForPackets(8)).map((r) => r.data)).slice(3);
  const atCaller = bySeq((await caller.waitForPackets(8)).map((r) => r.data)).slice(3);
  tt.same(atCallee, fromCaller, 'after the re-INVITE the callee still gets the caller\'s RTP');
  tt.same(atCaller, fromCallee, 'after the re-INVITE the caller still gets the callee\'s RTP (not its own)');
  tt.ok(caller.received.every((r) => r.from.address === '127.0.0.3'), 'relayed by RTPEngine');

  const quality = await anchor.delete({ callId });
  tt.match(quality, { callerToCallee: { packets: 8 }, calleeToCaller: { packets: 8 } }, 'the caller stays the first offer\'s fromTag');
  tt.same(await listedCalls(client, e), [], 'nothing left');
});

t.test('RTCP reports from the phones: loss, jitter and MOS land in the direction they judge', async (tt) => {
  const e = current();
  const anchor = anchorFor(tt, [e]);
  const caller = await RtpPeer.openPair();
  const callee = await RtpPeer.openPair();
  tt.teardown(async () => {
    for (const p of [caller.rtp, caller.rtcp, callee.rtp, callee.rtcp]) await p.close();
  });
  const callId = `call-${process.pid}-rtcp`;
  const callerSsrc = 0x0a0a0a0a;
  const calleeSsrc = 0x0b0b0b0b;
  const toCallee = await anchor.offer({ callId, fromTag: 'A', sdp: sdp({ origin: 'caller', port: caller.rtp.port }) });
  const toCaller = await anchor.answer({ callId, fromTag: 'A', toTag: 'B', sdp: sdp({ origin: 'callee', port: callee.rtp.port }) });
  const callerSends = sdpMedia(toCaller);
  const calleeSends = sdpMedia(toCallee);
  // RTCP goes to the port after RTP (no a=rtcp in these SDPs, none needed in RTPEngine's).
  const callerRtcp = { address: callerSends.address, port: callerSends.port + 1 };
  const calleeRtcp = { address: calleeSends.address, port: calleeSends.port + 1 };

  await sendRtp(caller.rtp, callerSends, 20, callerSsrc);
  await sendRtp(callee.rtp, calleeSends, 20, calleeSsrc);
  await callee.rtp.waitForPackets(20);
  await caller.rtp.waitForPackets(20);
  // Sender reports both ways, each awaited at the far end before the receiver reports about it.
  const callerSr = rtcpSenderReport(callerSsrc, 20, 20 * 160);
  await caller.rtcp.send(callerSr.packet, callerRtcp.port, callerRtcp.address);
  await callee.rtcp.waitForPackets(1);
  const calleeSr = rtcpSenderReport(calleeSsrc, 20, 20 * 160);
  await callee.rtcp.send(calleeSr.packet, calleeRtcp.port, calleeRtcp.address);
  await caller.rtcp.waitForPackets(1);
  // The callee judges the caller's stream harshly (50 ms jitter, 5 lost), the caller the callee's
  // mildly (20 ms, 1 lost): whichever direction gets figures shows whose report it was. DLSR must
  // not be 0 (RTPEngine then computes no round-trip time, hence no MOS) and not exceed the real
  // delay since the SR: one unit (1/65536 s) is always below it.
  const calleeReport = { from: calleeSsrc, about: callerSsrc, cumulativeLost: 5, highestSeq: 24, jitter: 400, lsr: callerSr.lsr, dlsr: 1 };
  await callee.rtcp.send(rtcpReceiverReport(calleeReport), calleeRtcp.port, calleeRtcp.address);
  await caller.rtcp.waitForPackets(2);
  const callerReport = { from: callerSsrc, about: calleeSsrc, cumulativeLost: 1, highestSeq: 20, jitter: 160, lsr: calleeSr.lsr, dlsr: 1 };
  await caller.rtcp.send(rtcpReceiverReport(callerReport), callerRtcp.port, callerRtcp.address);
  await callee.rtcp.waitForPackets(2);

  const quality = await anchor.delete({ callId });
  tt.match(quality, { callerToCallee: { packets: 20 }, calleeToCaller: { packets: 20 } }, 'RTCP is not counted as RTP');
  const judged = [quality?.callerToCallee, quality?.calleeToCaller].filter((d) => d?.mos !== undefined);
  tt.ok(judged.length >= 1, `RTPEngine computed a MOS (${JSON.stringify(quality)})`);
  if (quality?.callerToCallee.mos !== undefined) {
    tt.match(quality.callerToCallee, { jitterMs: 50, packetsLost: 5 }, 'caller->callee is judged by the callee\'s report');
  }
  if (quality?.calleeToCaller.mos !== undefined) {
    tt.match(quality.calleeToCaller, { jitterMs: 20, packetsLost: 1 }, 'callee->caller is judged by the caller\'s report');
  }
  for (const d of judged) tt.ok((d?.mos ?? 0) >= 1 && (d?.mos ?? 0) <= 5, `MOS ${d?.mos} on the 1-5 scale`);
});

t.test('a stopped RTPEngine: offer rejects with MEDIA_TIMEOUT within timeoutMs; its pid file is gone', async (tt) => {
  const stopped = await startTestRtpEngine({ mediaAddress: '127.0.0.4', ports: 4 });
  tt.teardown(() => stopped.stop());
  const anchor = anchorFor(tt, [stopped], { timeoutMs: 500 });
  await anchor.ping();
  await stopped.stop();
  tt.notOk(stopped.proc.running, 'stopped');
  tt.notOk(existsSync(stopped.pidFile), 'the pid file was removed after the exit');
  const started = Date.now();
  const err = await anchor.offer({ callId: `call-${process.pid}-3`, fromTag: 'A', sdp: sdp() }).then(
    () => undefined,
    (e: unknown) => e,
  );
  const elapsed = Date.now() - started;
  tt.ok(err instanceof MediaError, 'a MediaError');
  tt.equal((err as MediaError).code, 'MEDIA_TIMEOUT');
  tt.equal((err as MediaError).engine, `${stopped.ng.host}:${stopped.ng.port}`);
  // Not a timing measurement: it only checks that the rejection came from the anchor's timeout
  // and not from some much later one (the client's own late-reply window is 30 s).
  tt.ok(elapsed < 500 + 2000, `rejected after ${elapsed} ms (timeoutMs 500)`);
  tt.equal(anchor.activeSessions, 0);
  const pingErr = await anchor.ping().then(
    () => undefined,
    (e: unknown) => e,
  );
  tt.equal((pingErr as MediaError | undefined)?.code, 'MEDIA_TIMEOUT', 'ping fails too');
});

t.test('two RTPEngines with round-robin: calls spread, each deleted where it lives', async (tt) => {
  const first = current();
  const second = await startTestRtpEngine({ mediaAddress: '127.0.0.4' });
  tt.teardown(() => second.stop());
  const anchor = anchorFor(tt, [first, second], { selection: 'round-robin' });
  const client = await inspector(tt);
  const [caller, callee] = await peers(tt);
  const ids = [1, 2, 3, 4].map((n) => `rr-${process.pid}-${n}`);
  const addresses: string[] = [];
  for (const callId of ids) {
    const offered = await anchor.offer({ callId, fromTag: 'A', sdp: sdp({ port: caller.port }) });
    await anchor.answer({ callId, fromTag: 'A', toTag: 'B', sdp: sdp({ port: callee.port }) });
    addresses.push(sdpMedia(offered).address);
  }
  tt.same(addresses, ['127.0.0.3', '127.0.0.4', '127.0.0.3', '127.0.0.4'], 'offers alternate between the engines');
  tt.same((await listedCalls(client, first)).sort(), [ids[0], ids[2]].sort(), 'first engine holds calls 1 and 3');
  tt.same((await listedCalls(client, second)).sort(), [ids[1], ids[3]].sort(), 'second engine holds calls 2 and 4');
  tt.same(anchor.engineLoad().map((l) => l.sessions), [2, 2]);
  for (const callId of ids) tt.ok(await anchor.delete({ callId }), `figures for ${callId}`);
  tt.same(await listedCalls(client, first), [], 'first engine empty');
  tt.same(await listedCalls(client, second), [], 'second engine empty');
  tt.equal(anchor.activeSessions, 0);
});
