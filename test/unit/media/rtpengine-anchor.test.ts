// RtpEngineAnchor against fake NG servers (UDP, bencode) on 127.0.0.1: engine selection,
// stickiness, failover, timeouts, rejections, late replies and the tag rules.

import { pino } from 'pino';
import t from 'tap';
import { MediaError } from '../../../lib/media/media-anchor';
import { RtpEngineAnchor, type EngineSelection } from '../../../lib/media/rtpengine-anchor';
import type { TapTest } from '../../support/engine-harness';
import { FakeNgServer, testLogger, type NgDict } from '../../support/rtpengine';
import { sdp } from '../../support/sdp';
import { waitUntil } from '../../support/wait';

const TIMEOUT_MS = 400;

interface Setup {
  servers: FakeNgServer[];
  anchor: RtpEngineAnchor;
  name(i: number): string;
}

async function setup(tt: TapTest, options: { engines?: number; selection?: EngineSelection; timeoutMs?: number; retransmitMs?: number } = {}): Promise<Setup> {
  const servers: FakeNgServer[] = [];
  for (let i = 0; i < (options.engines ?? 1); i += 1) servers.push(await FakeNgServer.start());
  const anchor = new RtpEngineAnchor({
    engines: servers.map((s) => s.address),
    selection: options.selection ?? 'least-loaded',
    timeoutMs: options.timeoutMs ?? TIMEOUT_MS,
    ...(options.retransmitMs !== undefined ? { retransmitMs: options.retransmitMs } : {}),
    logger: testLogger(),
    localAddress: '127.0.0.1',
  });
  tt.teardown(async () => {
    await anchor.close();
    await Promise.all(servers.map((s) => s.close()));
  });
  return { servers, anchor, name: (i) => `127.0.0.1:${(servers[i] as FakeNgServer).port}` };
}

function server(s: Setup, i: number): FakeNgServer {
  const found = s.servers[i];
  if (!found) throw new Error(`no server ${i}`);
  return found;
}

async function call(anchor: RtpEngineAnchor, callId: string): Promise<void> {
  await anchor.offer({ callId, fromTag: `${callId}-a`, sdp: sdp({ port: 50000 }) });
  await anchor.answer({ callId, fromTag: `${callId}-a`, toTag: `${callId}-b`, sdp: sdp({ port: 50002 }) });
}

async function rejection(p: Promise<unknown>): Promise<MediaError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MediaError) return err;
    throw err;
  }
  throw new Error('expected a MediaError, the promise resolved');
}

t.test('offer, answer and delete: NG keys, rewritten SDP and the figures of the call', async (tt) => {
  const s = await setup(tt);
  const fake = server(s, 0);
  const offered = await s.anchor.offer({ callId: 'c1', fromTag: 'caller', sdp: sdp({ origin: 'a', port: 50000 }) });
  tt.match(offered, /^c=IN IP4 127\.0\.0\.9$/m, 'the offer comes back with the media server address');
  tt.equal(s.anchor.activeSessions, 1, 'one session after the offer');
  const offer = fake.seen('offer', 'c1')[0];
  tt.ok(offer, 'the fake saw the offer');
  tt.same(offer?.params, {
    command: 'offer',
    'call-id': 'c1',
    'from-tag': 'caller',
    sdp: sdp({ origin: 'a', port: 50000 }),
    replace: ['origin', 'session-connection'],
    ICE: 'remove',
    'record call': 'no',
  }, 'offer keys for plain RTP/AVP phones');

  const answered = await s.anchor.answer({ callId: 'c1', fromTag: 'caller', toTag: 'callee', sdp: sdp({ origin: 'b', port: 50002 }) });
  tt.match(answered, /^c=IN IP4 127\.0\.0\.9$/m);
  const answer = fake.seen('answer', 'c1')[0];
  tt.equal(answer?.params['from-tag'], 'caller', 'answer: from-tag is the offerer');
  tt.equal(answer?.params['to-tag'], 'callee', 'answer: to-tag is the answerer');
  tt.same(answer?.params.replace, ['origin', 'session-connection']);

  fake.stats.set('c1', {
    caller: { packets: 500, bytes: 86000, ssrc: 0xaaaa, lost: 3, mos10: 43, jitter: 2 },
    callee: { packets: 480, bytes: 82560, ssrc: 0xbbbb, lost: 0, mos10: 41, jitter: 5 },
  });
  const quality = await s.anchor.delete({ callId: 'c1' });
  const del = fake.seen('delete', 'c1')[0];
  tt.equal(del?.params['from-tag'], 'caller', 'delete names the caller\'s tag by default');
  tt.equal(del?.params['delete delay'], 0, 'delete asks for immediate deletion');
  tt.equal(s.anchor.activeSessions, 0, 'no session after delete');
  tt.equal(fake.calls.size, 0, 'the fake holds no call');
  // The caller's reports judge what it received (callee->caller), and the other way round.
  tt.match(quality, {
    engine: s.name(0),
    callerToCallee: { packets: 500, bytes: 86000, packetsLost: 0, mos: 4.1, jitterMs: 5 },
    calleeToCaller: { packets: 480, bytes: 82560, packetsLost: 3, mos: 4.3, jitterMs: 2 },
  });
  tt.type(quality?.durationSec, 'number');
});

t.test('delete of an unknown call resolves undefined and sends nothing; a second delete too', async (tt) => {
  const s = await setup(tt);
  tt.equal(await s.anchor.delete({ callId: 'nope' }), undefined);
  await call(s.anchor, 'c1');
  tt.ok(await s.anchor.delete({ callId: 'c1', fromTag: 'c1-a' }));
  tt.equal(await s.anchor.delete({ callId: 'c1' }), undefined, 'already deleted');
  tt.equal(server(s, 0).seen('delete').length, 1, 'only the known call was deleted at the media server');
});

t.test('delete of a call the media server forgot (restart) resolves undefined', async (tt) => {
  const s = await setup(tt);
  await call(s.anchor, 'c1');
  server(s, 0).calls.clear();
  tt.equal(await s.anchor.delete({ callId: 'c1' }), undefined, 'RTPEngine\'s "Call-ID not found" warning means no figures');
  tt.equal(s.anchor.activeSessions, 0);
});

t.test('round-robin spreads new calls in turn; each call sticks to its engine', async (tt) => {
  const s = await setup(tt, { engines: 2, selection: 'round-robin' });
  for (const id of ['c1', 'c2', 'c3', 'c4']) await call(s.anchor, id);
  tt.same(['c1', 'c2', 'c3', 'c4'].map((id) => s.anchor.engineOf(id)), [s.name(0), s.name(1), s.name(0), s.name(1)]);
  // Re-INVITE from the callee of c1, then the end of c1: all at c1's engine.
  await s.anchor.offer({ callId: 'c1', fromTag: 'c1-b', toTag: 'c1-a', sdp: sdp({ port: 50002, version: 2 }) });
  await s.anchor.answer({ callId: 'c1', fromTag: 'c1-b', toTag: 'c1-a', sdp: sdp({ port: 50000, version: 2 }) });
  await s.anchor.delete({ callId: 'c1' });
  const a = server(s, 0);
  const b = server(s, 1);
  tt.equal(a.seen('offer', 'c1').length, 2, 'both offers of c1 went to engine 0');
  tt.equal(a.seen('answer', 'c1').length, 2, 'both answers of c1 went to engine 0');
  tt.equal(a.seen('delete', 'c1').length, 1, 'the delete of c1 went to engine 0');
  tt.equal(b.requests.filter((r) => r.params['call-id'] === 'c1').length, 0, 'engine 1 never heard of c1');
  tt.same([a.calls.size, b.calls.size], [1, 2], 'c3 left on engine 0, c2 and c4 on engine 1');
  tt.same(s.anchor.engineLoad().map((e) => e.sessions), [1, 2]);
});

t.test('least-loaded picks the engine holding the fewest sessions of this process', async (tt) => {
  const s = await setup(tt, { engines: 2, selection: 'least-loaded' });
  await call(s.anchor, 'c1');
  await call(s.anchor, 'c2');
  await call(s.anchor, 'c3');
  tt.same(['c1', 'c2', 'c3'].map((id) => s.anchor.engineOf(id)), [s.name(0), s.name(1), s.name(0)], 'ties go to the first engine');
  await s.anchor.delete({ callId: 'c1' });
  await s.anchor.delete({ callId: 'c3' });
  await call(s.anchor, 'c4');
  tt.equal(s.anchor.engineOf('c4'), s.name(0), 'engine 0 emptied, so it takes the next call');
  await call(s.anchor, 'c5');
  tt.equal(s.anchor.engineOf('c5'), s.name(0), 'a tie (1 and 1) again goes to the first engine');
  await call(s.anchor, 'c6');
  tt.equal(s.anchor.engineOf('c6'), s.name(1), 'engine 1 holds fewer (1 vs 2)');
});

t.test('least-loaded counts first offers still in flight', async (tt) => {
  const s = await setup(tt, { engines: 2, selection: 'least-loaded' });
  for (const fake of s.servers) fake.behaviour = (_req, emulate) => ({ reply: emulate(), delayMs: 30 });
  await Promise.all(['c1', 'c2', 'c3', 'c4'].map((id) => s.anchor.offer({ callId: id, fromTag: 'a', sdp: sdp() })));
  tt.same([server(s, 0).calls.size, server(s, 1).calls.size], [2, 2], 'four simultaneous calls spread two and two');
});

t.test('failover: a first offer that times out is tried once on the next engine', async (tt) => {
  const s = await setup(tt, { engines: 2, selection: 'round-robin' });
  const dead = server(s, 0);
  dead.behaviour = () => 'drop';
  const offered = await s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  tt.match(offered, /^m=audio 40000 /m, 'the second engine answered');
  tt.equal(s.anchor.engineOf('c1'), s.name(1), 'the call lives on the second engine');
  tt.equal(dead.seen('offer', 'c1').length, 1, 'the first engine got the offer once');
  await dead.waitFor((r) => r.command === 'delete' && r.params['call-id'] === 'c1', 2000, 'the cleanup delete at the timed-out engine');
  tt.pass('a best-effort delete went to the engine that timed out');
  tt.same(s.anchor.engineLoad().map((e) => [e.sessions, e.up]), [[0, false], [1, true]], 'the dead engine is marked down');

  // Round-robin takes engine 1 for c2 and would take engine 0 for c3, but engine 0 is down: it
  // goes to the end of the order, so c3 lands on engine 1 without waiting for a timeout.
  const before = dead.seen('offer').length;
  await s.anchor.offer({ callId: 'c2', fromTag: 'a', sdp: sdp() });
  await s.anchor.offer({ callId: 'c3', fromTag: 'a', sdp: sdp() });
  tt.same([s.anchor.engineOf('c2'), s.anchor.engineOf('c3')], [s.name(1), s.name(1)]);
  tt.equal(dead.seen('offer').length, before, 'an engine marked down is not tried first');

  // Re-offers never move: with engine 1 gone silent, a re-offer of c1 just times out.
  server(s, 1).behaviour = () => 'drop';
  const err = await rejection(s.anchor.offer({ callId: 'c1', fromTag: 'b', toTag: 'a', sdp: sdp({ version: 2 }) }));
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  tt.equal(err.engine, s.name(1));
  tt.equal(dead.seen('offer', 'c1').length, 1, 'no failover for an established call');
  tt.equal(s.anchor.engineOf('c1'), s.name(1), 'the call stays where it is');
});

t.test('MEDIA_TIMEOUT when every engine times out; nothing is held afterwards', async (tt) => {
  const s = await setup(tt, { engines: 2 });
  for (const fake of s.servers) fake.behaviour = () => 'drop';
  const err = await rejection(s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() }));
  tt.equal(err.name, 'MediaError');
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  tt.match(err.message, new RegExp(`${s.name(0)}.*${s.name(1)}`), 'the message names both engines');
  tt.equal(server(s, 0).seen('offer').length + server(s, 1).seen('offer').length, 2, 'one try per engine');
  tt.equal(s.anchor.activeSessions, 0);
  tt.same(s.anchor.engineLoad().map((e) => e.sessions), [0, 0]);
  tt.equal(await s.anchor.delete({ callId: 'c1' }), undefined, 'delete after a failed offer resolves undefined');
  const answerErr = await rejection(s.anchor.answer({ callId: 'c1', fromTag: 'a', toTag: 'b', sdp: sdp() }));
  tt.equal(answerErr.code, 'MEDIA_REJECTED', 'an answer without an anchored offer is refused');
});

t.test('a single engine that times out gives MEDIA_TIMEOUT after one try', async (tt) => {
  const s = await setup(tt);
  server(s, 0).behaviour = () => 'drop';
  const err = await rejection(s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() }));
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  tt.equal(err.engine, s.name(0));
  tt.equal(server(s, 0).seen('offer').length, 1);
});

t.test('MEDIA_REJECTED carries RTPEngine\'s error-reason; no failover for a refused SDP', async (tt) => {
  const s = await setup(tt, { engines: 2 });
  server(s, 0).behaviour = (req, emulate) => (req.command === 'offer' ? { reply: { result: 'error', 'error-reason': 'Failed to parse SDP' } } : { reply: emulate() });
  const err = await rejection(s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: 'garbage' }));
  tt.equal(err.code, 'MEDIA_REJECTED');
  tt.match(err.message, /Failed to parse SDP/);
  tt.equal(err.engine, s.name(0));
  tt.equal(server(s, 1).requests.length, 0, 'the other engine was not asked');
  tt.equal(s.anchor.activeSessions, 0);
  await server(s, 0).waitFor((r) => r.command === 'delete' && r.params['call-id'] === 'c1', 2000, 'a cleanup delete');
  tt.pass('a best-effort delete followed the refused first offer');
});

t.test('an engine at its session limit hands the call to the next engine', async (tt) => {
  const s = await setup(tt, { engines: 2 });
  server(s, 0).behaviour = (req, emulate) =>
    req.command === 'offer' ? { reply: { result: 'error', 'error-reason': 'Parallel session limit reached' } } : { reply: emulate() };
  await s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  tt.equal(s.anchor.engineOf('c1'), s.name(1));
});

t.test('an answer RTPEngine refuses rejects with MEDIA_REJECTED; the session stays until delete', async (tt) => {
  const s = await setup(tt);
  await s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  server(s, 0).behaviour = (req, emulate) => (req.command === 'answer' ? { reply: { result: 'error', 'error-reason': 'Unknown call-id' } } : { reply: emulate() });
  const err = await rejection(s.anchor.answer({ callId: 'c1', fromTag: 'a', toTag: 'b', sdp: sdp() }));
  tt.equal(err.code, 'MEDIA_REJECTED');
  tt.match(err.message, /Unknown call-id/);
  tt.equal(s.anchor.activeSessions, 1);
  tt.ok(await s.anchor.delete({ callId: 'c1' }));
});

t.test('tag rules: an answer carries the offer\'s fromTag/toTag; swapped tags are refused unsent', async (tt) => {
  const s = await setup(tt);
  const fake = server(s, 0);
  await call(s.anchor, 'c1');
  // Re-INVITE from the callee: offer and answer both name the callee first.
  await s.anchor.offer({ callId: 'c1', fromTag: 'c1-b', toTag: 'c1-a', sdp: sdp({ version: 2 }) });
  const wrong = await rejection(s.anchor.answer({ callId: 'c1', fromTag: 'c1-a', toTag: 'c1-b', sdp: sdp({ version: 2 }) }));
  tt.equal(wrong.code, 'MEDIA_REJECTED');
  tt.match(wrong.message, /fromTag "c1-a" is not the tag of the party that made the latest offer \("c1-b"\)/);
  tt.equal(fake.seen('answer', 'c1').length, 1, 'the wrong answer was not sent');
  await s.anchor.answer({ callId: 'c1', fromTag: 'c1-b', toTag: 'c1-a', sdp: sdp({ version: 2 }) });
  const reAnswer = fake.seen('answer', 'c1')[1];
  tt.same([reAnswer?.params['from-tag'], reAnswer?.params['to-tag']], ['c1-b', 'c1-a']);
  const reOffer = fake.seen('offer', 'c1')[1];
  tt.same([reOffer?.params['from-tag'], reOffer?.params['to-tag']], ['c1-b', 'c1-a']);
  // The caller is still the first offer's fromTag, whoever re-offered last.
  fake.stats.set('c1', { 'c1-a': { packets: 7, bytes: 700 }, 'c1-b': { packets: 9, bytes: 900 } });
  const q = await s.anchor.delete({ callId: 'c1' });
  tt.equal(fake.seen('delete', 'c1')[0]?.params['from-tag'], 'c1-a');
  tt.match(q, { callerToCallee: { packets: 7 }, calleeToCaller: { packets: 9 } });
  const empty = await rejection(s.anchor.offer({ callId: '', fromTag: 'a', sdp: sdp() }));
  tt.equal(empty.code, 'MEDIA_REJECTED', 'an empty call id is refused');
});

t.test('a lost request is sent again with the same cookie until answered; the reply is taken once', async (tt) => {
  const s = await setup(tt, { timeoutMs: 2000, retransmitMs: 100 });
  const fake = server(s, 0);
  // The first two copies of each request are lost; the third is carried out and answered.
  const copies = new Map<string, number>();
  fake.behaviour = (req, emulate) => {
    const n = (copies.get(req.cookie) ?? 0) + 1;
    copies.set(req.cookie, n);
    return n < 3 ? 'drop' : { reply: emulate() };
  };
  const offered = await s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  tt.match(offered, /^m=audio 40000 /m, 'the offer was answered');
  const offers = fake.seen('offer', 'c1');
  tt.equal(offers.length, 3, 'the offer went three times');
  tt.equal(new Set(offers.map((r) => r.cookie)).size, 1, 'every copy carries the same cookie');
  tt.equal(s.anchor.activeSessions, 1);
  // Answered at once: no further copies.
  fake.behaviour = (_req, emulate) => ({ reply: emulate() });
  await s.anchor.answer({ callId: 'c1', fromTag: 'a', toTag: 'b', sdp: sdp({ port: 50002 }) });
  await s.anchor.delete({ callId: 'c1' });
  const settled = fake.seen('answer').length + fake.seen('delete').length;
  // Nothing to wait for but time: three retransmission intervals without a copy.
  await new Promise((resolve) => setTimeout(resolve, 350));
  tt.equal(fake.seen('answer').length + fake.seen('delete').length, settled, 'an answered request is not sent again');
  tt.equal(settled, 2, 'answer and delete went once each');
});

t.test('backlog: the requests waiting for a reply and the age of the oldest', async (tt) => {
  const s = await setup(tt, { timeoutMs: 2000, retransmitMs: 100 });
  const fake = server(s, 0);
  tt.same(s.anchor.backlog(), { requests: 0, oldestWaitMs: 0, rankWaitMs: 0 }, 'nothing sent: no backlog');
  fake.behaviour = () => 'drop';
  const first = s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  // The first offer's copy proves it has waited one retransmission interval (100 ms).
  await fake.waitFor((r) => r.params['call-id'] === 'c1' && fake.seen('offer', 'c1').length === 2, 2000, 'the copy of the first offer');
  const second = s.anchor.offer({ callId: 'c2', fromTag: 'a', sdp: sdp() });
  await fake.waitFor((r) => r.params['call-id'] === 'c2', 2000, 'the second offer');
  const waiting = s.anchor.backlog(2);
  tt.equal(waiting.requests, 2, 'two requests wait');
  tt.ok(waiting.oldestWaitMs >= 100, `the oldest is the first offer, sent before its copy: ${waiting.oldestWaitMs} ms`);
  tt.ok(waiting.rankWaitMs < waiting.oldestWaitMs, `the second oldest is the second offer, sent after that copy: ${waiting.rankWaitMs} ms`);
  tt.equal(s.anchor.backlog(3).rankWaitMs, 0, 'there is no third');
  fake.behaviour = (_req, emulate) => ({ reply: emulate() });
  await Promise.all([first, second]);
  tt.same(s.anchor.backlog(), { requests: 0, oldestWaitMs: 0, rankWaitMs: 0 }, 'both answered (their next copies): no backlog');
  fake.behaviour = () => 'drop';
  const lost = rejection(s.anchor.answer({ callId: 'c1', fromTag: 'a', toTag: 'b', sdp: sdp({ port: 50002 }) }));
  await fake.waitFor((r) => r.command === 'answer', 2000, 'the answer');
  tt.equal(s.anchor.backlog().requests, 1);
  tt.equal((await lost).code, 'MEDIA_TIMEOUT');
  tt.equal(s.anchor.backlog().requests, 0, 'a request given up on is no longer waiting');
});

t.test('a slow reply answers every copy: the first settles the request, the others are dropped quietly', async (tt) => {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const fake = await FakeNgServer.start();
  const anchor = new RtpEngineAnchor({ engines: [fake.address], timeoutMs: 2000, retransmitMs: 100, logger, localAddress: '127.0.0.1' });
  tt.teardown(async () => {
    await anchor.close();
    await fake.close();
  });
  // Every copy is answered, 250 ms after it came (as RTPEngine's cookie cache would).
  const answers = new Map<string, NgDict>();
  fake.behaviour = (req, emulate) => {
    const reply = answers.get(req.cookie) ?? emulate();
    answers.set(req.cookie, reply);
    return { reply, delayMs: 250 };
  };
  await anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  const copies = fake.seen('offer', 'c1').length;
  tt.ok(copies >= 2, `the offer went more than once (${copies})`);
  await waitUntil(() => fake.replies, (n) => n >= copies, { timeoutMs: 2000, description: 'every copy answered' });
  // A ping answered at once comes back after those replies (one socket pair, in order).
  fake.behaviour = (_req, emulate) => ({ reply: emulate() });
  await anchor.ping();
  tt.equal(anchor.activeSessions, 1);
  tt.same(lines.filter((l) => /no request waiting|not an NG reply/.test(l)), [], 'no reply reported as unexpected');
});

t.test('retransmission stops at the timeout; retransmitMs 0 sends once', async (tt) => {
  const s = await setup(tt, { timeoutMs: 450, retransmitMs: 100 });
  server(s, 0).behaviour = () => 'drop';
  const err = await rejection(s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() }));
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  const sent = server(s, 0).seen('offer', 'c1').length;
  tt.ok(sent >= 3 && sent <= 5, `copies at 0, 100, 200, 300, 400 ms at most (got ${sent})`);
  // Nothing to wait for but time: three intervals without a copy.
  await new Promise((resolve) => setTimeout(resolve, 300));
  tt.equal(server(s, 0).seen('offer', 'c1').length, sent, 'none after the timeout');

  const once = await setup(tt, { timeoutMs: 300, retransmitMs: 0 });
  server(once, 0).behaviour = () => 'drop';
  tt.equal((await rejection(once.anchor.offer({ callId: 'c2', fromTag: 'a', sdp: sdp() }))).code, 'MEDIA_TIMEOUT');
  tt.equal(server(once, 0).seen('offer', 'c2').length, 1, 'sent once');
});

t.test('a late reply to a timed-out offer does not leak a session', async (tt) => {
  const s = await setup(tt);
  const fake = server(s, 0);
  let deletes = 0;
  fake.behaviour = (req, emulate) => {
    // The offer is carried out at once but answered late; the first delete is lost.
    if (req.command === 'offer') return { reply: emulate(), delayMs: TIMEOUT_MS * 3 };
    if (req.command === 'delete' && deletes++ === 0) return 'drop';
    return { reply: emulate() };
  };
  const err = await rejection(s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() }));
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  tt.equal(s.anchor.activeSessions, 0);
  tt.equal(fake.calls.size, 1, 'the media server did create the session');
  await waitUntil(() => fake.calls.size, (n) => n === 0, { timeoutMs: 3000, description: 'the late-created session to be deleted' });
  tt.equal(fake.seen('delete', 'c1').length, 2, 'a delete at the timeout (lost) and one on the late reply');
  tt.equal(s.anchor.activeSessions, 0);
});

t.test('after failover, a late reply from the slow engine deletes there and leaves the call alone', async (tt) => {
  const s = await setup(tt, { engines: 2, selection: 'round-robin' });
  const slow = server(s, 0);
  slow.behaviour = (req, emulate) => (req.command === 'offer' ? { reply: emulate(), delayMs: TIMEOUT_MS * 2 } : 'drop');
  await s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  tt.equal(s.anchor.engineOf('c1'), s.name(1));
  slow.behaviour = (_req, emulate) => ({ reply: emulate() });
  await waitUntil(() => slow.calls.size, (n) => n === 0, { timeoutMs: 3000, description: 'the slow engine to hold no call' });
  tt.equal(slow.seen('delete', 'c1').length, 2, 'a delete at the timeout (lost) and one on the late reply');
  tt.equal(server(s, 1).calls.size, 1, 'the live call on engine 1 is untouched');
  tt.equal(s.anchor.engineOf('c1'), s.name(1));
  tt.equal(s.anchor.activeSessions, 1);
});

t.test('requests during a first offer in flight wait for it and go to the same engine', async (tt) => {
  const s = await setup(tt, { engines: 2, selection: 'round-robin' });
  for (const fake of s.servers) fake.behaviour = (_req, emulate) => ({ reply: emulate(), delayMs: 50 });
  const offer = s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() });
  const reOffer = s.anchor.offer({ callId: 'c1', fromTag: 'a', toTag: 'b', sdp: sdp({ version: 2 }) });
  const del = s.anchor.delete({ callId: 'c1' });
  tt.equal(s.anchor.activeSessions, 1, 'the call counts from its first offer');
  await offer;
  await reOffer;
  tt.ok(await del, 'the delete waited for the offer and returned figures');
  tt.equal(server(s, 0).seen('offer', 'c1').length, 2);
  tt.equal(server(s, 1).requests.length, 0, 'nothing went to the other engine');
  tt.equal(s.anchor.activeSessions, 0);
});

t.test('a call with more than two parties (transfer) is also swept by call id', async (tt) => {
  const s = await setup(tt);
  const fake = server(s, 0);
  await call(s.anchor, 'c1');
  // Blind transfer: the callee re-offers towards a new party c1-c.
  await s.anchor.offer({ callId: 'c1', fromTag: 'c1-b', sdp: sdp({ version: 2 }) });
  await s.anchor.answer({ callId: 'c1', fromTag: 'c1-b', toTag: 'c1-c', sdp: sdp({ port: 50004 }) });
  fake.stats.set('c1', { 'c1-a': { packets: 5, bytes: 500 }, 'c1-b': { packets: 6, bytes: 600 }, 'c1-c': { packets: 7, bytes: 700 } });
  const q = await s.anchor.delete({ callId: 'c1' });
  tt.match(q, { callerToCallee: { packets: 5 }, calleeToCaller: { packets: 13 } }, 'every other party adds to calleeToCaller');
  const sweep = await fake.waitFor((r) => r.command === 'delete' && r.params['from-tag'] === undefined, 2000, 'the sweep delete');
  tt.equal(sweep.params['call-id'], 'c1');
});

t.test('ping resolves when one engine answers and rejects when none does', async (tt) => {
  const s = await setup(tt, { engines: 2 });
  server(s, 0).behaviour = () => 'drop';
  await s.anchor.ping();
  tt.pass('one pong is enough');
  server(s, 1).behaviour = () => 'drop';
  const err = await rejection(s.anchor.ping());
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  tt.match(err.message, /no RTPEngine answered a ping/);
  server(s, 1).behaviour = (): { reply: NgDict } => ({ reply: { result: 'error', 'error-reason': 'nope' } });
  const refused = await rejection(s.anchor.ping());
  tt.match(refused.message, /answered ping with error/);
});

t.test('close rejects waiting requests, refuses new ones, is idempotent and leaves no timers', async (tt) => {
  const s = await setup(tt);
  server(s, 0).behaviour = () => 'drop';
  const waiting = rejection(s.anchor.offer({ callId: 'c1', fromTag: 'a', sdp: sdp() }));
  await server(s, 0).waitFor((r) => r.command === 'offer');
  await s.anchor.close();
  await s.anchor.close();
  const err = await waiting;
  tt.equal(err.code, 'MEDIA_UNREACHABLE');
  const after = await rejection(s.anchor.offer({ callId: 'c2', fromTag: 'a', sdp: sdp() }));
  tt.equal(after.code, 'MEDIA_UNREACHABLE');
  tt.equal(await s.anchor.delete({ callId: 'c1' }), undefined);
  tt.equal(s.anchor.activeSessions, 0);
});

t.test('options are checked', async (tt) => {
  const logger = testLogger();
  tt.throws(() => new RtpEngineAnchor({ engines: [], logger }), /at least one/);
  tt.throws(() => new RtpEngineAnchor({ engines: [{ host: '127.0.0.1', port: 0 }], logger }), /port must be 1-65535/);
  tt.throws(() => new RtpEngineAnchor({ engines: [{ host: '127.0.0.1', port: 2223 }], logger, timeoutMs: 0 }), /timeoutMs/);
  tt.throws(() => new RtpEngineAnchor({ engines: [{ host: '127.0.0.1', port: 2223 }], logger, retransmitMs: -1 }), /retransmitMs/);
  tt.throws(
    () => new RtpEngineAnchor({ engines: [{ host: '127.0.0.1', port: 2223 }], logger, selection: 'random' as EngineSelection }),
    /least-loaded or round-robin/,
  );
});
