// Extension calls end to end over the real native stack: SIPp phone -> Kamailio (digest auth) ->
// engine -> B2BUA (+ RTPEngine) -> Kamailio (trusted X-Call-ID / X-From-App) -> SIPp phone.
// Each behaviour runs over UDP and over TCP; after each test nothing is held anywhere.

import t from 'tap';
import { received, sippHeader } from '../support/sipp';
import { call, expectSippOk, MEDIA_IP, PHONE_IP, stackSuite, startCallee } from '../support/stack';
import { TRANSPORTS } from '../support/engine-harness';

const stack = stackSuite(t, { b2buaEnv: { NO_ANSWER_TIMEOUT: '2' } });

const ok = expectSippOk;

function invitesIn(status: Record<string, unknown>): number {
  return Number((status.requestsIn as Record<string, number> | undefined)?.INVITE ?? 0);
}

for (const transport of TRANSPORTS) {
  t.test(`6001 calls 6002: answered, media through RTPEngine, caller hangs up [${transport}]`, async (tt) => {
    const s = stack();
    const before = invitesIn(await s.engineStatus());
    const callee = await startCallee(s, '6002', 'uas-ext-answer', { transport });
    const r = await call(s, '6001', '6002', 'uac-ext-audio', { transport, holdMs: 1500 });
    const c = await callee.finish();
    ok(tt, r, 'caller');
    ok(tt, c, 'callee');
    const invites = received(c, { method: 'INVITE' });
    tt.equal(invites.length, 1, 'the callee received exactly one INVITE');
    const inv = invites[0];
    const xCallId = inv ? sippHeader(inv, 'X-Call-ID') : undefined;
    tt.match(xCallId ?? '', /^[0-9a-f-]{36}$/, 'it carries the B2BUA\'s X-Call-ID');
    tt.equal(inv ? sippHeader(inv, 'X-From-App') : undefined, 'test-b2bua', 'and X-From-App');
    tt.match(inv?.body ?? '', new RegExp(`c=IN IP4 ${MEDIA_IP.replace(/\./g, '\\.')}`), 'the callee is given RTPEngine\'s media address');
    tt.notMatch(inv?.body ?? '', new RegExp(`c=IN IP4 ${PHONE_IP.replace(/\./g, '\\.')}`), 'not the caller\'s');
    const ok200 = received(r, { status: 200, cseqMethod: 'INVITE' })[0];
    tt.match(ok200?.body ?? '', new RegExp(`c=IN IP4 ${MEDIA_IP.replace(/\./g, '\\.')}`), 'the caller is given RTPEngine\'s address too');
    tt.equal(invitesIn(await s.engineStatus()) - before, 1, 'the engine saw exactly one INVITE (no second trip)');
    await s.settled();
    const ended = s.b2buaLog().find((l) => l.msg === 'call ended' && l.callId === xCallId);
    tt.ok(ended, 'the B2BUA logged the end of the call');
    tt.equal(ended?.hangupBy, 'caller');
    tt.equal(ended?.outcome, 'answered');
    const media = ended?.media as { callerToCallee?: { packets: number }; calleeToCaller?: { packets: number } } | undefined;
    tt.ok((media?.callerToCallee?.packets ?? 0) > 0, `RTPEngine relayed the caller's audio (${media?.callerToCallee?.packets} packets)`);
    tt.ok((media?.calleeToCaller?.packets ?? 0) > 0, `and the callee's echo (${media?.calleeToCaller?.packets} packets)`);
  });

  t.test(`the callee hangs up: both legs end [${transport}]`, async (tt) => {

    const s = stack();
    const callee = await startCallee(s, '6002', 'uas-ext-answer-bye', { transport, holdMs: 300 });
    const r = await call(s, '6001', '6002', 'uac-ext-expect-bye', { transport });
    const c = await callee.finish();
    ok(tt, r, 'caller');
    ok(tt, c, 'callee');
    tt.equal(received(r, { method: 'BYE' }).length, 1, 'the caller got the BYE');
  });
}
