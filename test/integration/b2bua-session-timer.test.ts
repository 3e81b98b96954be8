// Session timers (RFC 4028) over the real native stack, with SESSION_EXPIRES=90 (the RFC's
// minimum): an interval below SESSION_MIN_SE is refused 422 with Min-SE; on an answered call the
// B2BUA refreshes the callee's leg at half the interval (the callee left that to it) and hangs up
// both legs, with a Reason, when the caller, who took the refresher role, never refreshes.
// The second test runs about a minute: that is the protocol's own clock.

import t from 'tap';
import { received, sippHeader } from '../support/sipp';
import { call, expectSippOk, stackSuite, startCallee } from '../support/stack';

const stack = stackSuite(t, { b2buaEnv: { SESSION_EXPIRES: '90', SESSION_MIN_SE: '90' } });

t.test('an interval below SESSION_MIN_SE is refused 422 with Min-SE', async (tt) => {
  const s = stack();
  const r = await call(s, '6001', '6002', 'uac-ext-session-too-small');
  expectSippOk(tt, r, 'caller');
  const refusal = received(r, { status: 422 })[0];
  tt.equal(refusal ? sippHeader(refusal, 'Min-SE') : undefined, '90', 'the 422 names our minimum');
  await s.settled();
  const refused = s.b2buaLog().find((l) => l.msg === 'session timer refused');
  tt.equal(refused?.status, 422, 'the B2BUA logged why');
});

t.test('the B2BUA refreshes the callee and ends the call when the caller stops refreshing', async (tt) => {
  const s = stack();
  const callee = await startCallee(s, '6002', 'uas-ext-session-timer', { timeoutSec: 120 });
  const startedAt = Date.now();
  const r = await call(s, '6001', '6002', 'uac-ext-session-timer', { timeoutSec: 120 });
  const c = await callee.finish(30_000);
  const tookMs = Date.now() - startedAt;
  expectSippOk(tt, r, 'caller');
  expectSippOk(tt, c, 'callee');
  const invites = received(c, { method: 'INVITE' });
  tt.equal(invites.length, 2, 'the callee got the INVITE and one refresh re-INVITE');
  tt.equal(invites[0] ? sippHeader(invites[0], 'Min-SE') : undefined, '90', 'the B leg offered our Min-SE');
  const bye = received(c, { method: 'BYE' })[0];
  tt.match(bye ? sippHeader(bye, 'Reason') ?? '' : '', /cause=408;text="Session timer expired"/, 'the callee\'s BYE says why');
  // 90 s interval, caller refreshes: we give up a third of it early (RFC 4028 section 10), at 60 s
  tt.ok(tookMs >= 58_000, `the call was ended at the interval's end, not before (${tookMs} ms)`);
  await s.settled();
  const log = s.b2buaLog();
  const expired = log.find((l) => l.msg === 'session timer expired: ending the call');
  tt.equal(expired?.side, 'caller', 'the caller\'s leg expired');
  const ended = log.filter((l) => l.msg === 'call ended').pop();
  tt.equal(ended?.outcome, 'answered');
  tt.equal(ended?.hangupBy, 'system', 'recorded as ended by the system');
});
