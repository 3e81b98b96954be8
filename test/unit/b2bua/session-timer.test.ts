// RFC 4028 session timers: the negotiation on each leg (pure functions of the headers) and the
// per-leg clock, on a controlled scheduler.

import t from 'tap';
import {
  LegSessionTimer,
  expiryDelayMs,
  negotiateAsUas,
  parseMinSE,
  parseSessionExpires,
  planFromRefresh,
  planFromUacAnswer,
  refreshAnswerHeaders,
  refreshDelayMs,
  refreshHeaders,
  retryIntervalAfter422,
  supportsTimer,
  uacRequestHeaders,
  type TimerScheduler,
} from '../../../lib/b2bua/session-timer';

const cfg = { expires: 1800, minSE: 90 };
const none = { sessionExpires: undefined, minSE: undefined, supported: undefined };

t.test('RFC 4028 section 4: Session-Expires and Min-SE values', async (tt) => {
  tt.same(parseSessionExpires('1800'), { interval: 1800, refresher: undefined });
  tt.same(parseSessionExpires('90 ; refresher=UAC'), { interval: 90, refresher: 'uac' });
  tt.same(parseSessionExpires('600;foo=bar;refresher=uas'), { interval: 600, refresher: 'uas' });
  tt.equal(parseSessionExpires('soon'), undefined);
  tt.equal(parseSessionExpires('90;refresher=proxy'), undefined, 'only uac and uas can refresh');
  tt.equal(parseSessionExpires('-5'), undefined);
  tt.equal(parseMinSE('90;ext=1'), 90);
  tt.equal(parseMinSE('x'), undefined);
  tt.ok(supportsTimer('100rel, Timer'));
  tt.notOk(supportsTimer('100rel, timers'));
  tt.notOk(supportsTimer(undefined));
});

t.test('the caller\'s leg (we are UAS, section 9)', async (tt) => {
  const off = negotiateAsUas({ ...none, sessionExpires: '90' }, { expires: 0, minSE: 90 });
  tt.same(off, { ok: true, plan: undefined, responseHeaders: {}, peerHasTimer: false }, 'timers off: nothing added, nothing refused');

  const small = negotiateAsUas({ ...none, sessionExpires: '60', supported: 'timer' }, cfg);
  tt.same(small, { ok: false, status: 422, reason: 'Session Interval Too Small', headers: { 'Min-SE': '90' } }, 'below our Min-SE: 422 naming it');
  const smallNoTimer = negotiateAsUas({ ...none, sessionExpires: '60' }, cfg);
  tt.same(smallNoTimer.ok && smallNoTimer.plan, { interval: 90, refresher: 'us' }, 'from a caller without timers (a proxy added it): raised to our Min-SE, not 422');

  const bad = negotiateAsUas({ ...none, sessionExpires: 'soon' }, cfg);
  tt.equal(bad.ok ? 0 : bad.status, 400, 'a malformed Session-Expires is a bad request');
  const badMin = negotiateAsUas({ ...none, minSE: 'low' }, cfg);
  tt.equal(badMin.ok ? 0 : badMin.status, 400, 'so is a malformed Min-SE');

  const theirs = negotiateAsUas({ ...none, sessionExpires: '600;refresher=uac', supported: 'timer' }, cfg);
  tt.same(theirs, {
    ok: true,
    plan: { interval: 600, refresher: 'peer' },
    responseHeaders: { 'Session-Expires': '600;refresher=uac', Supported: 'timer', Require: 'timer' },
    peerHasTimer: true,
  }, 'a shorter interval asked for is kept, and a caller that offers to refresh does');

  const longer = negotiateAsUas({ ...none, sessionExpires: '7200', supported: 'timer' }, cfg);
  tt.same(longer.ok && longer.plan, { interval: 1800, refresher: 'peer' }, 'a longer one is reduced to ours; the caller refreshes by default');

  const theyAskUs = negotiateAsUas({ ...none, sessionExpires: '900;refresher=uas', supported: 'timer' }, cfg);
  tt.same(theyAskUs.ok && theyAskUs.plan, { interval: 900, refresher: 'us' }, 'refresher=uas in the request: we refresh');

  const legacy = negotiateAsUas(none, cfg);
  tt.same(legacy, {
    ok: true,
    plan: { interval: 1800, refresher: 'us' },
    responseHeaders: { 'Session-Expires': '1800;refresher=uas', Supported: 'timer' },
    peerHasTimer: false,
  }, 'a caller without timer support: we refresh it, and no Require: timer');

  const theirMin = negotiateAsUas({ ...none, minSE: '3600', supported: 'timer' }, cfg);
  tt.same(theirMin.ok && theirMin.plan, { interval: 3600, refresher: 'peer' }, 'never below the caller\'s own Min-SE');

  const required = negotiateAsUas({ ...none, sessionExpires: '120', require: 'timer' }, cfg);
  tt.same(required.ok && required.responseHeaders.Require, 'timer', 'Require: timer counts as support');
});

t.test('the callee\'s leg (we are UAC, sections 7.1, 7.2 and 7.4)', async (tt) => {
  tt.same(uacRequestHeaders(cfg), { Supported: 'timer', 'Session-Expires': '1800', 'Min-SE': '90' });
  tt.same(uacRequestHeaders({ expires: 0, minSE: 90 }), {}, 'timers off: the INVITE says nothing');
  tt.same(uacRequestHeaders(cfg, 3600), { Supported: 'timer', 'Session-Expires': '3600', 'Min-SE': '3600' }, 'after a 422: its Min-SE as interval and as our Min-SE (7.4)');

  tt.equal(retryIntervalAfter422('3600', 1800), 3600, 'a 422 with a larger Min-SE: ask again with it');
  tt.equal(retryIntervalAfter422('900', 1800), undefined, 'a Min-SE we already met: no retry');
  tt.equal(retryIntervalAfter422(undefined, 1800), undefined, 'a 422 without Min-SE: no retry');
  tt.equal(retryIntervalAfter422('999999', 1800), undefined, 'an absurd Min-SE: no retry');

  tt.same(planFromUacAnswer('900;refresher=uac', 1800), { interval: 900, refresher: 'us' }, 'refresher=uac in the 2xx is us');
  tt.same(planFromUacAnswer('900;refresher=uas', 1800), { interval: 900, refresher: 'peer' }, 'refresher=uas: the callee refreshes');
  tt.same(planFromUacAnswer(undefined, 1800), { interval: 1800, refresher: 'us' }, 'no timers at the callee: we refresh it ourselves');
  tt.same(planFromUacAnswer('garbage', 1800), { interval: 1800, refresher: 'us' });
});

t.test('a refresh from the party may shorten the interval and move the refresher (section 9)', async (tt) => {
  const plan = { interval: 1800, refresher: 'peer' as const };
  tt.equal(planFromRefresh(plan, undefined, 90, true), plan, 'no Session-Expires: unchanged');
  tt.equal(planFromRefresh(plan, 'bad', 90, true), plan, 'malformed: unchanged');
  tt.same(planFromRefresh(plan, '600;refresher=uac', 90, true), { interval: 600, refresher: 'peer' }, 'a shorter interval is taken');
  tt.equal(planFromRefresh(plan, '3600;refresher=uac', 90, true), plan, 'a longer one is not (we answer with ours)');
  tt.same(planFromRefresh(plan, '30', 90, true), { interval: 90, refresher: 'peer' }, 'never below our Min-SE');
  tt.same(planFromRefresh(plan, '1800;refresher=uas', 90, true), { interval: 1800, refresher: 'us' }, 'refresher=uas hands the role to us');
  tt.same(planFromRefresh({ interval: 1800, refresher: 'us' }, '1800;refresher=uac', 90, false), { interval: 1800, refresher: 'us' }, 'a party without timers cannot take it');
});

t.test('refresh headers and the section 10 clock', async (tt) => {
  tt.same(refreshHeaders({ interval: 90, refresher: 'us' }), { Supported: 'timer', 'Session-Expires': '90;refresher=uac' });
  tt.same(refreshHeaders({ interval: 90, refresher: 'peer' }), { Supported: 'timer', 'Session-Expires': '90;refresher=uas' });
  tt.same(refreshAnswerHeaders({ interval: 90, refresher: 'peer' }, true), { 'Session-Expires': '90;refresher=uac', Require: 'timer' });
  tt.same(refreshAnswerHeaders({ interval: 90, refresher: 'us' }, false), { 'Session-Expires': '90;refresher=uas' });
  tt.equal(refreshDelayMs({ interval: 1800, refresher: 'us' }), 900_000, 'the refresher refreshes at half the interval');
  tt.equal(expiryDelayMs({ interval: 1800, refresher: 'peer' }), 1_768_000, 'the other side gives up 32 s early');
  tt.equal(expiryDelayMs({ interval: 90, refresher: 'peer' }), 60_000, 'or a third early, when that is less');
});

/** A scheduler whose time moves only when told. */
function fakeScheduler(): TimerScheduler & { advance(ms: number): void; pending(): number } {
  let now = 0;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    set(ms, fn) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clear(handle) {
      timers.delete(handle as number);
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, x]) => x.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = until;
    },
    pending: () => timers.size,
  };
}

t.test('LegSessionTimer: we refresh every half interval; each refresh restarts it', async (tt) => {
  const clock = fakeScheduler();
  const events: string[] = [];
  const timer = new LegSessionTimer({ interval: 90, refresher: 'us' }, () => events.push(`refresh@${clock.now()}`), () => events.push('expired'), clock);
  clock.advance(44_999);
  tt.same(events, [], 'nothing before half the interval');
  clock.advance(1);
  tt.same(events, ['refresh@45000']);
  tt.equal(timer.msLeft, 45_000, 'half the interval left until it would expire');
  timer.refreshed();
  clock.advance(45_000);
  tt.same(events, ['refresh@45000', 'refresh@90000']);
  timer.retryIn(5000);
  clock.advance(5000);
  tt.same(events.at(-1), 'refresh@95000', 'a failed refresh is tried again when asked');
  timer.stop();
  clock.advance(1_000_000);
  tt.equal(events.length, 3, 'stopped: silent');
  tt.equal(clock.pending(), 0, 'and nothing left scheduled');
});

t.test('LegSessionTimer: the peer refreshes; without a refresh the leg expires', async (tt) => {
  const clock = fakeScheduler();
  const events: string[] = [];
  const timer = new LegSessionTimer({ interval: 90, refresher: 'peer' }, () => events.push('refresh'), () => events.push(`expired@${clock.now()}`), clock);
  clock.advance(50_000);
  timer.refreshed();
  clock.advance(59_999);
  tt.same(events, [], 'a refresh from the peer restarts the wait');
  clock.advance(1);
  tt.same(events, ['expired@110000'], 'no refresh for 60 s of a 90 s interval: expired');
  timer.refreshed({ interval: 300, refresher: 'us' });
  tt.same(timer.plan, { interval: 300, refresher: 'us' }, 'a refresh may bring a new plan');
  clock.advance(150_000);
  tt.same(events, ['expired@110000', 'refresh']);
  timer.stop();
});
