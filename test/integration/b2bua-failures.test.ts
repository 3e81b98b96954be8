// Calls that do not end in a conversation, over the real native stack: busy, no answer, not
// registered, unknown extension, outside the dial plan, CANCEL while ringing, a forged loop header.
// Each checks what the phones saw and that nothing is left held afterwards.

import t from 'tap';
import { TRANSPORTS } from '../support/engine-harness';
import { received, runSipp, sippHeader, type SippResult } from '../support/sipp';
import { call, ENGINE_IP, expectSippOk, stackSuite, startCallee, type TestStack } from '../support/stack';

const stack = stackSuite(t, { b2buaEnv: { NO_ANSWER_TIMEOUT: '2', DIAL_PLAN: '6XXX' } });

const ok = expectSippOk;

/** The final status the caller got for its authenticated INVITE (the last one; the first is Kamailio's 407). */
function finalStatus(r: SippResult): number | undefined {
  return received(r, { cseqMethod: 'INVITE' }).map((m) => m.status ?? 0).filter((st) => st >= 300).pop();
}

function lastCallEnd(s: TestStack): Record<string, unknown> | undefined {
  return s.b2buaLog().filter((l) => l.msg === 'call ended').pop();
}

for (const transport of TRANSPORTS) {
  t.test(`busy: the callee's 486 reaches the caller [${transport}]`, async (tt) => {
    const s = stack();
    const callee = await startCallee(s, '6002', 'uas-ext-busy', { transport });
    const r = await call(s, '6001', '6002', 'uac-ext-fail', { transport });
    ok(tt, await callee.finish(), 'callee');
    ok(tt, r, 'caller');
    tt.equal(finalStatus(r), 486);
    tt.ok(received(r, { status: 180 }).length >= 1, 'the caller heard the ringing first');
    await s.settled();
    tt.equal(lastCallEnd(s)?.outcome, 'busy');
  });

  t.test(`no answer: the B2BUA cancels the callee and tells the caller 480 [${transport}]`, async (tt) => {

    const s = stack();
    const callee = await startCallee(s, '6002', 'uas-ext-ring', { transport });
    const r = await call(s, '6001', '6002', 'uac-ext-fail', { transport });
    const c = await callee.finish();
    ok(tt, c, 'callee');
    ok(tt, r, 'caller');
    tt.equal(received(c, { method: 'CANCEL' }).length, 1, 'the callee got a CANCEL');
    tt.equal(finalStatus(r), 480, 'the caller got 480');
    await s.settled();
    tt.equal(lastCallEnd(s)?.outcome, 'no-answer');
  });

  t.test(`CANCEL while ringing: the caller gets 487 and the callee a CANCEL [${transport}]`, async (tt) => {

    const s = stack();
    const callee = await startCallee(s, '6002', 'uas-ext-ring', { transport });
    const r = await call(s, '6001', '6002', 'uac-ext-cancel', { transport });
    const c = await callee.finish();
    ok(tt, r, 'caller');
    ok(tt, c, 'callee');
    tt.equal(received(c, { method: 'CANCEL' }).length, 1, 'the callee got the CANCEL');
    await s.settled();
    tt.equal(lastCallEnd(s)?.outcome, 'cancelled');
    tt.equal(lastCallEnd(s)?.hangupBy, 'caller');
  });
}

t.test('an extension that exists but is not registered: 480', async (tt) => {

  const s = stack();
  const r = await call(s, '6001', '6003', 'uac-ext-fail');
  ok(tt, r, 'caller');
  tt.equal(finalStatus(r), 480);
});

t.test('an extension in the dial plan that does not exist: 404', async (tt) => {

  const s = stack();
  const r = await call(s, '6001', '6999', 'uac-ext-fail');
  ok(tt, r, 'caller');
  tt.equal(finalStatus(r), 404);
});

t.test('outside the dial plan: 404; the beginning of an extension: 484', async (tt) => {

  const s = stack();
  const r404 = await call(s, '6001', '5001', 'uac-ext-fail');
  ok(tt, r404, 'caller');
  tt.equal(finalStatus(r404), 404);
  const r484 = await call(s, '6001', '60', 'uac-ext-fail');
  ok(tt, r484, 'caller');
  tt.equal(finalStatus(r484), 484);
});

t.test('a phone forging X-From-App still goes through the B2BUA exactly once', async (tt) => {

  const s = stack();
  const callee = await startCallee(s, '6002', 'uas-ext-answer');
  const r = await call(s, '6001', '6002', 'uac-ext-spoof');
  const c = await callee.finish();
  ok(tt, r, 'caller');
  ok(tt, c, 'callee');
  const invites = received(c, { method: 'INVITE' });
  tt.equal(invites.length, 1, 'one INVITE at the callee');
  const inv = invites[0];
  tt.equal(inv ? sippHeader(inv, 'X-From-App') : undefined, 'test-b2bua', 'X-From-App is the B2BUA\'s, not the forged one');
  tt.not(inv ? sippHeader(inv, 'X-Call-ID') : undefined, 'forged-by-phone', 'X-Call-ID is the B2BUA\'s');
  tt.match(inv ? sippHeader(inv, 'X-Call-ID') ?? '' : '', /^[0-9a-f-]{36}$/);
});

t.test('an INVITE with X-From-App sent straight to the engine gets 482', async (tt) => {

  const s = stack();
  const r = await runSipp({
    scenario: 'uac-ext-direct',
    remote: `${ENGINE_IP}:${s.config.engine.sipPort}`,
    service: '6002',
    keys: { caller: '6001' },
  });
  ok(tt, r, 'direct INVITE');
  tt.equal(received(r, { status: 482 }).length, 1, '482 Loop Detected');
});
