// Admission and lifecycle over the real native stack: concurrent call limits (503 with
// Retry-After), RTPEngine down (503, nothing left hanging), graceful shutdown on SIGTERM.

import t from 'tap';
import { received, sippHeader, type SippResult } from '../support/sipp';
import { call, expectSippOk, startCallee, startTestStack, type TestStack } from '../support/stack';
import { waitUntil } from '../support/wait';

const ok = expectSippOk;

function finalResponse(r: SippResult): ReturnType<typeof received>[number] | undefined {
  return received(r, { cseqMethod: 'INVITE' }).filter((m) => (m.status ?? 0) >= 300).pop();
}

async function liveCalls(s: TestStack): Promise<Array<{ state: string }>> {
  const res = await s.api('/api/calls/live');
  return (res.body as { calls: Array<{ state: string }> }).calls;
}

function answeredCalls(s: TestStack, n: number): Promise<unknown> {
  return waitUntil(() => liveCalls(s), (calls) => calls.filter((c) => c.state === 'answered').length === n, { description: `${n} answered calls` });
}

t.test('limits: per extension and global, 503 with Retry-After', async (tt) => {
  const s = await startTestStack({
    extensions: ['6001', '6002', '6003', '6004', '6005', '6006'],
    b2buaEnv: { MAX_CALLS: '2', MAX_CALLS_PER_EXTENSION: '1', RETRY_AFTER: '7' },
  });
  tt.teardown(() => s.stop());
  const b1 = await startCallee(s, '6002', 'uas-ext-answer');
  const first = call(s, '6001', '6002', 'uac-ext-call', { holdMs: 3000 });
  await answeredCalls(s, 1);
  const perExt = await call(s, '6003', '6002', 'uac-ext-fail');
  ok(tt, perExt, 'a second call to 6002');
  const r1 = finalResponse(perExt);
  tt.equal(r1?.status, 503, 'a second call to a busy extension is refused with 503');
  tt.equal(r1 ? sippHeader(r1, 'Retry-After') : undefined, '7', 'with Retry-After');
  tt.equal(r1 ? sippHeader(r1, 'Warning') : undefined, '399 b2bua "call limit reached for 6002"', 'and a Warning naming the limit');
  const b2 = await startCallee(s, '6004', 'uas-ext-answer');
  const second = call(s, '6003', '6004', 'uac-ext-call', { holdMs: 2000 });
  await answeredCalls(s, 2);
  const global = await call(s, '6005', '6006', 'uac-ext-fail');
  ok(tt, global, 'a third call');
  const r2 = finalResponse(global);
  tt.equal(r2?.status, 503, 'beyond MAX_CALLS: 503');
  tt.equal(r2 ? sippHeader(r2, 'Retry-After') : undefined, '7');
  ok(tt, await first, 'first call');
  ok(tt, await second, 'second call');
  ok(tt, await b1.finish(), 'callee 6002');
  ok(tt, await b2.finish(), 'callee 6004');
  await s.settled();
});

t.test('RTPEngine down: the caller gets 503 and nothing is left hanging', async (tt) => {
  const s = await startTestStack({ b2buaEnv: { RTPENGINE_TIMEOUT_MS: '300' } });
  tt.teardown(() => s.stop());
  await s.stack.process('rtpengine')?.stop();
  const r = await call(s, '6001', '6002', 'uac-ext-fail');
  ok(tt, r, 'caller');
  tt.equal(finalResponse(r)?.status, 503, finalResponse(r)?.firstLine ?? "no final response");
  const ready = await s.api('/ready', { token: null });
  tt.equal(ready.status, 503, '/ready says not ready');
  tt.match(JSON.stringify(ready.body), /media/, 'and names the media check');
  const status = await s.engineStatus();
  tt.equal(status.dialogs, 0, 'the engine holds no dialog');
  tt.equal((await s.api('/api/status')).body && ((await s.api('/api/status')).body as { sessions: number }).sessions, 0, 'the B2BUA holds no session');
});

t.test('SIGTERM: calls in progress finish, new calls get 503, then the B2BUA exits 0', async (tt) => {
  const s = await startTestStack({ b2buaEnv: { SHUTDOWN_TIMEOUT: '20' } });
  tt.teardown(() => s.stop());
  const callee = await startCallee(s, '6002', 'uas-ext-answer');
  const inProgress = call(s, '6001', '6002', 'uac-ext-call', { holdMs: 2500 });
  await answeredCalls(s, 1);
  const b2bua = s.stack.process('b2bua');
  b2bua?.signal('SIGTERM');
  await waitUntil(() => s.api('/ready', { token: null }), (r) => r.status === 503, { description: 'not ready while draining' });
  const refused = await call(s, '6003', '6004', 'uac-ext-fail');
  ok(tt, refused, 'a new call during the drain');
  const f = finalResponse(refused);
  tt.equal(f?.status, 503, 'is refused with 503');
  tt.ok(f && sippHeader(f, 'Retry-After'), 'with Retry-After');
  ok(tt, await inProgress, 'the call in progress ended normally');
  ok(tt, await callee.finish(), 'callee');
  const exit = await b2bua?.exited;
  tt.same(exit, { code: 0, signal: null }, 'the B2BUA exited 0 once the call ended');
});

t.test('a second SIGTERM exits at once', async (tt) => {
  const s = await startTestStack({ b2buaEnv: { SHUTDOWN_TIMEOUT: '60' } });
  tt.teardown(() => s.stop());
  const callee = await startCallee(s, '6002', 'uas-ext-answer');
  const inProgress = call(s, '6001', '6002', 'uac-ext-call', { holdMs: 5000 });
  await answeredCalls(s, 1);
  const b2bua = s.stack.process('b2bua');
  b2bua?.signal('SIGTERM');
  await waitUntil(() => s.api('/ready', { token: null }), (r) => r.status === 503, { description: 'draining' });
  b2bua?.signal('SIGTERM');
  const exit = await b2bua?.exited;
  tt.equal(exit?.code, 1, 'exited without waiting for the call');
  await inProgress;
  await callee.stop();
});

t.test('the drachtio connection drops mid-call: the B2BUA releases the call and its media, and says not ready', async (tt) => {
  const s = await startTestStack();
  tt.teardown(() => s.stop());
  const callee = await startCallee(s, '6002', 'uas-ext-answer');
  const caller = call(s, '6001', '6002', 'uac-ext-call', { holdMs: 3000 });
  await answeredCalls(s, 1);
  tt.equal((await s.rtpengineCalls()).length, 1, 'RTPEngine holds the call');
  await s.stack.process('engine')?.stop();
  await waitUntil(() => s.api('/api/status'), (r) => (r.body as { sessions: number }).sessions === 0, { description: 'no session left' });
  tt.pass('the B2BUA released the session');
  tt.same(await s.rtpengineCalls(), [], 'and deleted the media session');
  const ready = await s.api('/ready', { token: null });
  tt.equal(ready.status, 503, '/ready: not ready');
  tt.match(JSON.stringify(ready.body), /drachtio/, 'naming the drachtio check');
  const ended = s.b2buaLog().filter((l) => l.msg === 'call ended').pop();
  tt.equal(ended?.outcome, 'interrupted');
  await caller;
  await callee.stop();
});

/** One sample of the B2BUA's Prometheus metrics, by name with its labels (`name{labels}`). */
async function metric(s: TestStack, name: string): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${s.operatorPort}/metrics`, { headers: { authorization: `Bearer ${s.readToken}` } });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

t.test('overload: while RTPEngine\'s replies queue, new calls get 503 at once; the calls taken complete', async (tt) => {
  const s = await startTestStack({
    extensions: ['6001', '6002', '6003', '6004', '6005', '6006'],
    b2buaEnv: { RTPENGINE_TIMEOUT_MS: '20000', OVERLOAD_MEDIA_REQUESTS: '2', OVERLOAD_MEDIA_WAIT_MS: '300', RETRY_AFTER: '9' },
  });
  const rtpengine = s.stack.process('rtpengine');
  tt.teardown(async () => {
    rtpengine?.signal('SIGCONT');
    await s.stop();
  });
  const b1 = await startCallee(s, '6002', 'uas-ext-answer');
  const b2 = await startCallee(s, '6004', 'uas-ext-answer');
  // A frozen RTPEngine keeps every request in its socket unanswered, as a busy one would.
  rtpengine?.signal('SIGSTOP');
  const first = call(s, '6001', '6002', 'uac-ext-call', { holdMs: 500 });
  const second = call(s, '6003', '6004', 'uac-ext-call', { holdMs: 500 });
  // Both offers sent: the second is at most as old as the first was then. Once the first has
  // waited 300 ms more, both have waited at least 300 ms.
  const both = await waitUntil(
    async () => ({ waiting: await metric(s, 'b2bua_media_requests_waiting'), oldest: await metric(s, 'b2bua_media_oldest_wait_seconds') }),
    (m) => (m.waiting ?? 0) >= 2,
    { description: 'two offers waiting' },
  );
  await waitUntil(() => metric(s, 'b2bua_media_oldest_wait_seconds'), (oldest) => (oldest ?? 0) >= (both.oldest ?? 0) + 0.3, { description: 'both offers waiting 300 ms' });
  const refused = await call(s, '6005', '6006', 'uac-ext-fail');
  ok(tt, refused, 'a third call');
  const f = finalResponse(refused);
  tt.equal(f?.status, 503, 'is refused with 503');
  tt.equal(f ? sippHeader(f, 'Retry-After') : undefined, '9', 'with Retry-After');
  tt.equal(f ? sippHeader(f, 'Warning') : undefined, '399 b2bua "overloaded"', 'and a Warning saying why');
  tt.equal(await metric(s, 'b2bua_overloaded'), 1, 'b2bua_overloaded is 1');
  tt.equal(await metric(s, 'b2bua_calls_refused_total{reason="overload"}'), 1, 'the refusal is counted');
  const began = await waitUntil(() => s.b2buaLog().find((l) => l.component === 'overload'), (l) => l !== undefined, { description: 'the start of the overload logged' });
  tt.match(began, { level: 40, waiting: 2 }, 'one warning when it began');

  rtpengine?.signal('SIGCONT');
  ok(tt, await first, 'the first call, taken before the overload, completed');
  ok(tt, await second, 'so did the second');
  ok(tt, await b1.finish(), 'callee 6002');
  ok(tt, await b2.finish(), 'callee 6004');
  // The B2BUA writes its log lines in batches (every 10 ms): the line may follow the metric.
  const over = await waitUntil(() => s.b2buaLog().find((l) => /^overload over/.test(String(l.msg))), (l) => l !== undefined, { description: 'the end of the overload logged' });
  tt.match(over, { refused: 1 }, 'its end is logged');
  tt.equal(await metric(s, 'b2bua_overloaded'), 0, 'b2bua_overloaded is 0 again');
  const b3 = await startCallee(s, '6006', 'uas-ext-answer');
  ok(tt, await call(s, '6005', '6006', 'uac-ext-call'), 'a new call is taken again');
  ok(tt, await b3.finish(), 'callee 6006');
  await s.settled();
});
