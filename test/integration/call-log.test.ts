// The call log over the real native stack: every kind of call leaves one record with the right
// outcome, statuses, hang-up side, media figures and both legs' SIP messages, visible through the
// operator API (list, one call, live events, statistics, metrics). Bad API input gets 4xx, never
// 5xx. A B2BUA killed with SIGKILL mid-call leaves that call's record `interrupted` after the
// supervisor restarts it, and loses or duplicates nothing. The same runs on PostgreSQL.

import t from 'tap';
import { startTestPostgres, type TestPostgres } from '../support/postgres';
import { sippHeader, type SippResult } from '../support/sipp';
import {
  call,
  expectSippOk,
  finalCall,
  ladderOf,
  startCallee,
  startTestStack,
  type CallView,
  type TestStack,
  type TestStackOptions,
} from '../support/stack';
import { waitUntil } from '../support/wait';
import type { TapTest } from '../support/engine-harness';

type Json = Record<string, unknown>;

/** The call id the B2BUA gave a SIPp caller's call, looked up by the caller's own Call-ID. */
async function lastCallId(s: TestStack, caller: SippResult): Promise<string> {
  const invite = caller.trace.find((m) => m.direction === 'sent' && m.method === 'INVITE');
  const aCallId = invite ? sippHeader(invite, 'Call-ID') ?? '' : '';
  const v = await finalCall(s, aCallId, { messages: false });
  return v.call.id;
}

function contains(tt: TapTest, ladder: string[], wanted: string[], label: string): void {
  for (const w of wanted) tt.ok(ladder.includes(w), `${label} has ${w}${ladder.includes(w) ? '' : ` (got ${ladder.join(', ')})`}`);
}

/** Reads /api/events until `until` says the collected events are enough. */
async function collectEvents(
  s: TestStack,
  until: (events: Array<{ event: string; data: Json }>) => boolean,
  start: () => Promise<unknown>,
): Promise<Array<{ event: string; data: Json }>> {
  const ac = new AbortController();
  const res = await fetch(`http://127.0.0.1:${s.operatorPort}/api/events`, { headers: { authorization: `Bearer ${s.readToken}` }, signal: ac.signal });
  if (res.status !== 200 || !res.body) throw new Error(`/api/events answered ${res.status}`);
  const events: Array<{ event: string; data: Json }> = [];
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const started = start();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the event stream closed early');
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) events.push({ event, data: JSON.parse(data) as Json });
      }
      if (until(events)) break;
    }
  } finally {
    ac.abort();
    await started;
  }
  return events;
}

function suite(name: string, options: () => Promise<TestStackOptions & { teardown?: () => Promise<void> }>): void {
  t.test(name, async (t2) => {
    const opts = await options();
    const s = await startTestStack(opts);
    t2.teardown(async () => {
      await s.stop();
      await opts.teardown?.();
    });

    await t2.test('answered: statuses, caller hangs up, media figures, both ladders', async (tt) => {
      const callee = await startCallee(s, '6002', 'uas-ext-answer');
      const r = await call(s, '6001', '6002', 'uac-ext-audio', { holdMs: 1500 });
      expectSippOk(tt, r, 'caller');
      expectSippOk(tt, await callee.finish(), 'callee');
      const v = await finalCall(s, await lastCallId(s, r));
      const c = v.call;
      tt.equal(c.outcome, 'answered');
      tt.equal(c.hangupBy, 'caller');
      tt.equal(c.aStatus, 200);
      tt.equal(c.bStatus, 200);
      tt.equal(c.callerUser, '6001');
      tt.equal(c.callee, '6002');
      tt.equal(c.callerAddress, '127.0.0.1');
      tt.equal(c.instance, 'test-b2bua');
      tt.ok(c.bCallId && c.bCallId !== c.aCallId, 'the B leg has its own Call-ID');
      tt.ok(c.ringingAt && c.answeredAt && c.endedAt, 'ringing, answer and end times');
      tt.ok((c.postDialDelayMs ?? -1) >= 0, `post-dial delay ${c.postDialDelayMs} ms`);
      tt.ok((c.billableSec ?? 0) >= 1, `billable ${c.billableSec} s`);
      tt.ok((c.durationSec ?? 0) >= 1.5, `duration ${c.durationSec} s`);
      tt.ok((c.media?.callerToCallee.packets ?? 0) > 0, `caller -> callee ${c.media?.callerToCallee.packets} packets`);
      tt.ok((c.media?.calleeToCaller.packets ?? 0) > 0, `callee -> caller ${c.media?.calleeToCaller.packets} packets`);
      tt.ok((c.media?.callerToCallee.bytes ?? 0) > 0, 'and bytes');
      contains(tt, ladderOf(v, 'a'), ['INVITE', '180 INVITE', '200 INVITE', 'ACK', 'BYE', '200 BYE'], 'the A leg');
      contains(tt, ladderOf(v, 'b'), ['INVITE', '180 INVITE', '200 INVITE', 'ACK', 'BYE', '200 BYE'], 'the B leg');
      tt.ok(v.messages.every((m, i) => i === 0 || m.at >= (v.messages[i - 1] as { at: string }).at), 'messages in time order');
      tt.match(v.messages.find((m) => m.leg === 'b' && m.text.startsWith('INVITE'))?.text ?? '', new RegExp(`X-Call-ID: ${c.id}`), 'the B leg INVITE carries the X-Call-ID');
      const byB = await s.api(`/api/calls/${encodeURIComponent(c.bCallId ?? '')}`, { token: s.readToken });
      tt.equal((byB.body as CallView).call.id, c.id, 'found by its B-leg Call-ID too');
    });

    await t2.test('the callee hangs up', async (tt) => {
      const callee = await startCallee(s, '6002', 'uas-ext-answer-bye', { holdMs: 300 });
      const r = await call(s, '6001', '6002', 'uac-ext-expect-bye');
      expectSippOk(tt, r, 'caller');
      expectSippOk(tt, await callee.finish(), 'callee');
      const c = (await finalCall(s, await lastCallId(s, r))).call;
      tt.equal(c.outcome, 'answered');
      tt.equal(c.hangupBy, 'callee');
    });

    await t2.test('busy, no answer, cancelled, not registered', async (tt) => {
      const busy = await startCallee(s, '6002', 'uas-ext-busy');
      const rb = await call(s, '6001', '6002', 'uac-ext-fail');
      expectSippOk(tt, await busy.finish(), 'busy callee');
      const b = (await finalCall(s, await lastCallId(s, rb))).call;
      tt.match(b, { outcome: 'busy', aStatus: 486, bStatus: 486, hangupBy: 'callee', answeredAt: null, billableSec: 0 }, 'busy');

      const ring = await startCallee(s, '6002', 'uas-ext-ring');
      const rn = await call(s, '6001', '6002', 'uac-ext-fail');
      expectSippOk(tt, await ring.finish(), 'ringing callee');
      const n = (await finalCall(s, await lastCallId(s, rn))).call;
      tt.match(n, { outcome: 'no-answer', aStatus: 480, hangupBy: 'system' }, 'no answer');
      tt.ok(n.ringingAt, 'it rang');

      const ring2 = await startCallee(s, '6002', 'uas-ext-ring');
      const rc = await call(s, '6001', '6002', 'uac-ext-cancel');
      expectSippOk(tt, rc, 'cancelling caller');
      expectSippOk(tt, await ring2.finish(), 'callee');
      const cc = (await finalCall(s, await lastCallId(s, rc))).call;
      tt.match(cc, { outcome: 'cancelled', aStatus: 487, hangupBy: 'caller' }, 'cancelled');

      const rr = await call(s, '6001', '6003', 'uac-ext-fail');
      const nr = (await finalCall(s, await lastCallId(s, rr))).call;
      tt.match(nr, { outcome: 'no-answer', bStatus: 480, aStatus: 480, hangupBy: 'callee' }, 'not registered: Kamailio\'s 480 passed back');
    });

    await t2.test('live events: every state change, then the final record once its messages are stored', async (tt) => {
      const callee = await startCallee(s, '6002', 'uas-ext-answer');
      let id = '';
      const events = await collectEvents(
        s,
        (ev) => {
          id ||= String(ev.find((e) => e.event === 'call')?.data.id ?? '');
          return ev.some((e) => e.event === 'end' && e.data.id === id);
        },
        async () => {
          expectSippOk(tt, await call(s, '6001', '6002', 'uac-ext-call', { holdMs: 300 }), 'caller');
          expectSippOk(tt, await callee.finish(), 'callee');
        },
      );
      const mine = events.filter((e) => e.data.id === id);
      const states = mine.filter((e) => e.event === 'call').map((e) => e.data.state);
      tt.same(states.slice(0, 1), ['received'], 'first event: received');
      tt.ok(states.includes('answered') && states.includes('ended'), `states ${states.join(' -> ')}`);
      const notLive = mine.filter((e) => e.event === 'call' && e.data.state !== 'ended' && e.data.live !== true);
      tt.same(notLive, [], 'live while in progress');
      const end = mine.find((e) => e.event === 'end');
      tt.match(end?.data, { outcome: 'answered', live: false });
      const stored = await s.api(`/api/calls/${id}`, { token: s.readToken });
      tt.ok((stored.body as CallView).messages.length >= 10, 'its messages are in the store when `end` arrives');
    });

    await t2.test('list filters, pagination, statistics, metrics, OpenAPI', async (tt) => {
      const all = (await s.api('/api/calls?limit=500', { token: s.readToken })).body as { calls: Json[]; nextCursor: string | null };
      tt.ok(all.calls.length >= 7, `${all.calls.length} calls in the log`);
      tt.equal(new Set(all.calls.map((c) => c.id)).size, all.calls.length, 'no duplicates');
      const busy = (await s.api('/api/calls?outcome=busy', { token: s.readToken })).body as { calls: Json[] };
      tt.ok(busy.calls.length >= 1 && busy.calls.every((c) => c.outcome === 'busy'), 'outcome filter');
      const to6003 = (await s.api('/api/calls?callee=6003', { token: s.readToken })).body as { calls: Json[] };
      tt.ok(to6003.calls.length >= 1 && to6003.calls.every((c) => c.callee === '6003'), 'callee filter');
      const text = (await s.api(`/api/calls?q=${encodeURIComponent(String(all.calls[0]?.aCallId).slice(0, 12))}`, { token: s.readToken })).body as { calls: Json[] };
      tt.ok(text.calls.some((c) => c.id === all.calls[0]?.id), 'free text finds a call by part of its Call-ID');
      const pages: Json[] = [];
      let cursor: string | null = null;
      do {
        const q: string = cursor ? `&cursor=${cursor}` : '';
        const p = (await s.api(`/api/calls?limit=2${q}`, { token: s.readToken })).body as { calls: Json[]; nextCursor: string | null };
        pages.push(...p.calls);
        cursor = p.nextCursor;
      } while (cursor && pages.length < 1000);
      tt.same(pages.map((c) => c.id), all.calls.map((c) => c.id), 'pages of 2 walk the same calls in the same order');
      const future = (await s.api(`/api/calls?from=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`, { token: s.readToken })).body as { calls: Json[] };
      tt.same(future.calls, [], 'time range');

      const stats = (await s.api('/api/stats', { token: s.readToken })).body as Json & { concurrency: Json };
      tt.ok(Number(stats.calls) >= 7, `stats: ${stats.calls} calls`);
      tt.ok(Number(stats.asr) > 0 && Number(stats.asr) < 1, `ASR ${stats.asr}`);
      tt.ok(Number(stats.acdSec) >= 1, `ACD ${stats.acdSec} s`);
      tt.match(stats.concurrency, { current: 0, limit: 12_000, capacityLeft: 12_000 });
      tt.ok(Number(stats.concurrency.peak) >= 1, 'peak concurrency');

      const metrics = await fetch(`http://127.0.0.1:${s.operatorPort}/metrics`, { headers: { authorization: `Bearer ${s.readToken}` } });
      const m = await metrics.text();
      tt.equal(metrics.status, 200);
      tt.match(m, /^b2bua_calls_total\{outcome="answered"\} [1-9]/m, 'calls by outcome');
      tt.match(m, /^b2bua_calls_total\{outcome="busy"\} [1-9]/m);
      tt.match(m, /^b2bua_active_calls 0$/m, 'active calls');
      tt.match(m, /^b2bua_call_setup_seconds_count [1-9]/m, 'setup latency histogram');
      // Each call counted once: as many as the call log holds (this B2BUA wrote all of them).
      const counted = [...m.matchAll(/^b2bua_calls_total\{outcome="[a-z-]+"\} (\d+)$/gm)].reduce((sum, x) => sum + Number(x[1]), 0);
      tt.equal(counted, Number(stats.calls), 'b2bua_calls_total sums to the calls in the log');
      tt.equal(Number(/^b2bua_call_setup_seconds_count (\d+)$/m.exec(m)?.[1]), Number(stats.calls), 'one setup time per call');
      tt.match(m, /^# TYPE b2bua_rtpengine_errors_total counter$/m, 'RTPEngine errors');
      tt.equal((await fetch(`http://127.0.0.1:${s.operatorPort}/metrics`)).status, 401, '/metrics needs a token');

      const openapi = (await s.api('/openapi.json', { token: null })).body as { openapi: string; paths: Record<string, unknown> };
      tt.match(openapi.openapi, /^3\./);
      for (const p of ['/api/calls', '/api/calls/live', '/api/calls/{key}', '/api/calls/{id}/hangup', '/api/stats', '/api/events', '/metrics']) {
        tt.ok(openapi.paths[p], `OpenAPI documents ${p}`);
      }
    });

    await t2.test('bad API input gets 4xx with a reason, never 5xx, and the log is intact', async (tt) => {
      const before = ((await s.api('/api/calls?limit=500', { token: s.readToken })).body as { calls: unknown[] }).calls.length;
      const long = 'x'.repeat(5000);
      const cases: Array<[string, number, 'GET' | 'POST', string | null]> = [
        ['/api/calls?limit=abc', 400, 'GET', s.readToken],
        ['/api/calls?limit=0', 400, 'GET', s.readToken],
        ['/api/calls?limit=1000000000', 400, 'GET', s.readToken],
        ['/api/calls?limit=-5', 400, 'GET', s.readToken],
        ['/api/calls?outcome=bogus', 400, 'GET', s.readToken],
        ["/api/calls?outcome=busy'%20OR%201=1--", 400, 'GET', s.readToken],
        ['/api/calls?from=yesterday', 400, 'GET', s.readToken],
        ['/api/calls?to=2026-13-45T99:00:00Z', 400, 'GET', s.readToken],
        ['/api/calls?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'GET', s.readToken],
        [`/api/calls?caller=${long}`, 400, 'GET', s.readToken],
        [`/api/calls?q=${long}`, 400, 'GET', s.readToken],
        ['/api/calls?cursor=!!!', 400, 'GET', s.readToken],
        ['/api/calls?cursor=AAAAAAAA', 400, 'GET', s.readToken],
        ['/api/calls?callee=6002&calee=6003', 400, 'GET', s.readToken],
        ['/api/calls?q=%27%20OR%20%271%27%3D%271', 200, 'GET', s.readToken],
        ['/api/calls?q=%25%27%3B%20DROP%20TABLE%20calls%3B%20--', 200, 'GET', s.readToken],
        ['/api/calls?caller=%27%20OR%201%3D1%20--', 200, 'GET', s.readToken],
        ['/api/calls?q=%5C%25_', 200, 'GET', s.readToken],
        [`/api/calls/${'y'.repeat(300)}`, 400, 'GET', s.readToken],
        ['/api/calls/no-such-call', 404, 'GET', s.readToken],
        ['/api/calls/%27%20OR%20%271%27%3D%271', 404, 'GET', s.readToken],
        ['/api/stats?from=soon', 400, 'GET', s.readToken],
        ['/api/stats?window=1', 400, 'GET', s.readToken],
        ['/api/calls/not-a-uuid/hangup', 400, 'POST', s.adminToken],
        ['/api/calls/00000000-0000-0000-0000-000000000000/hangup', 404, 'POST', s.adminToken],
        ['/api/calls/00000000-0000-0000-0000-000000000000/hangup', 403, 'POST', s.readToken],
        ['/api/calls', 401, 'GET', null],
        ['/api/calls', 401, 'GET', 'not-a-valid-token-at-all'],
        ['/api/nothing-here', 404, 'GET', s.readToken],
      ];
      for (const [path, status, method, token] of cases) {
        const r = await s.api(path, { method, token });
        const reason = (r.body as { reason?: unknown }).reason;
        tt.equal(r.status, status, `${method} ${path.slice(0, 80)} -> ${status}`);
        if (status >= 400) tt.ok(typeof reason === 'string' && reason.length > 0, `with a reason (${String(reason).slice(0, 100)})`);
        else tt.same((r.body as { calls: unknown[] }).calls, [], 'an injection string is only text: nothing matches');
      }
      const after = ((await s.api('/api/calls?limit=500', { token: s.readToken })).body as { calls: unknown[] }).calls.length;
      tt.equal(after, before, 'the log is intact');
    });
  });
}

suite('call log on SQLite', async () => ({ b2buaEnv: { NO_ANSWER_TIMEOUT: '2', CAPTURE_GRACE_MS: '200' } }));

suite('call log on PostgreSQL', async () => {
  const pg: TestPostgres = await startTestPostgres();
  return { b2buaEnv: { NO_ANSWER_TIMEOUT: '2', CAPTURE_GRACE_MS: '200', DATABASE_URL: pg.url }, teardown: () => pg.stop() };
});

t.test('SIGKILL mid-call: after the restart the call reads interrupted; nothing lost or duplicated', async (tt) => {
  const s = await startTestStack({ supervise: true, b2buaEnv: { CAPTURE_GRACE_MS: '200' } });
  tt.teardown(() => s.stop());

  const callee1 = await startCallee(s, '6002', 'uas-ext-answer');
  const r1 = await call(s, '6001', '6002', 'uac-ext-call', { holdMs: 200 });
  expectSippOk(tt, r1, 'first call');
  expectSippOk(tt, await callee1.finish(), 'first callee');
  const first = (await finalCall(s, await lastCallId(s, r1))).call;

  const callee2 = await startCallee(s, '6002', 'uas-ext-answer');
  const inProgress = call(s, '6001', '6002', 'uac-ext-call', { holdMs: 4000 });
  const live = await waitUntil(
    () => s.api('/api/calls/live', { token: s.readToken }),
    (r) => (r.body as { calls?: Json[] }).calls?.[0]?.state === 'answered',
    { description: 'the second call answered' },
  );
  const id = String((live.body as { calls: Json[] }).calls[0]?.id);
  const old = s.stack.process('b2bua');
  const oldPid = old?.pid;
  old?.signal('SIGKILL');
  await old?.exited;
  const restarted = await waitUntil(
    async () => (await s.api('/ready', { token: null }).catch(() => ({ status: 0, body: {} }))),
    (r) => r.status === 200 && s.stack.process('b2bua')?.pid !== oldPid,
    { timeoutMs: 20_000, description: 'the supervisor restarted the B2BUA' },
  );
  tt.equal(restarted.status, 200, `restarted (pid ${oldPid} -> ${s.stack.process('b2bua')?.pid})`);
  const v = await finalCall(s, id, { messages: false });
  tt.equal(v.call.outcome, 'interrupted', 'the killed call reads interrupted');
  tt.equal(v.call.answeredAt !== null, true, 'it keeps its answer time');
  tt.ok(v.call.endedAt, 'and is closed');
  tt.ok(v.messages.length > 0, 'the SIP messages the engine held were stored');
  await inProgress; // the caller's BYE finds no B2BUA behind the engine: its result does not matter here
  await callee2.stop();

  const callee3 = await startCallee(s, '6002', 'uas-ext-answer');
  const r3 = await call(s, '6001', '6002', 'uac-ext-call', { holdMs: 200 });
  expectSippOk(tt, r3, 'a call after the restart');
  expectSippOk(tt, await callee3.finish(), 'its callee');
  const third = (await finalCall(s, await lastCallId(s, r3))).call;

  const all = ((await s.api('/api/calls?limit=500', { token: s.readToken })).body as { calls: Json[] }).calls;
  tt.same(all.map((c) => c.id).sort(), [first.id, id, third.id].sort(), 'exactly the three calls, once each');
  tt.same(all.map((c) => c.outcome).sort(), ['answered', 'answered', 'interrupted']);
});
