// What happens inside an answered call, over the real native stack: hold and resume by re-INVITE
// (through RTPEngine), DTMF by SIP INFO, and a blind transfer by REFER to a third phone.

import t from 'tap';
import { TRANSPORTS } from '../support/engine-harness';
import { received, sippHeader } from '../support/sipp';
import { call, expectSippOk, MEDIA_IP, stackSuite, startCallee } from '../support/stack';

const stack = stackSuite(t);

const ok = expectSippOk;

for (const transport of TRANSPORTS) {
  t.test(`hold, resume and an INFO DTMF are relayed to the callee [${transport}]`, async (tt) => {
    const s = stack();
    const callee = await startCallee(s, '6002', 'uas-ext-midcall', { transport });
    const r = await call(s, '6001', '6002', 'uac-ext-midcall', { transport });
    const c = await callee.finish();
    ok(tt, r, 'caller');
    ok(tt, c, 'callee');
    const invites = received(c, { method: 'INVITE' });
    tt.equal(invites.length, 3, 'the callee got the INVITE and two re-INVITEs');
    tt.match(invites[1]?.body ?? '', /a=sendonly/, 'the hold re-INVITE asks sendonly');
    tt.match(invites[1]?.body ?? '', new RegExp(`c=IN IP4 ${MEDIA_IP.replace(/\./g, '\\.')}`), 'through RTPEngine\'s address');
    tt.match(invites[2]?.body ?? '', /a=sendrecv/, 'the resume re-INVITE asks sendrecv');
    const answers = received(r, { status: 200, cseqMethod: 'INVITE' });
    tt.match(answers[1]?.body ?? '', /a=recvonly/, 'the caller got the callee\'s recvonly answer to its hold');
    const info = received(c, { method: 'INFO' })[0];
    tt.match(info?.body ?? '', /Signal=5/, 'the callee got the DTMF digit');
    tt.equal(info ? sippHeader(info, 'Content-Type') : undefined, 'application/dtmf-relay');
  });

  t.test(`blind transfer: the caller REFERs the callee to a third phone [${transport}]`, async (tt) => {

    const s = stack();
    const transferee = await startCallee(s, '6002', 'uas-ext-transferee', { transport, holdMs: 300 });
    const target = await startCallee(s, '6003', 'uas-ext-answer', { transport });
    const r = await call(s, '6001', '6002', 'uac-ext-refer', { transport, keys: { refer_to: '6003' } });
    const b = await transferee.finish(15_000);
    const c = await target.finish(15_000);
    ok(tt, r, 'transferor (6001)');
    ok(tt, b, 'transferee (6002)');
    ok(tt, c, 'transfer target (6003)');
    const notifies = received(r, { method: 'NOTIFY' });
    tt.match(notifies[0]?.body ?? '', /SIP\/2.0 100/, 'first NOTIFY: 100 Trying');
    tt.match(notifies[1]?.body ?? '', /SIP\/2.0 200/, 'last NOTIFY: 200 OK');
    const inv = received(c, { method: 'INVITE' })[0];
    tt.ok(inv && sippHeader(inv, 'X-From-App'), 'the new B leg went through Kamailio with X-From-App');
    tt.match(inv ? sippHeader(inv, 'From') ?? '' : '', /6002/, 'the target sees the transferee as the caller');
    tt.equal(received(c, { method: 'BYE' }).length, 1, 'the target got the BYE when the transferee hung up');
    await s.settled();
    const ended = s.b2buaLog().filter((l) => l.msg === 'call ended').pop();
    tt.equal(ended?.outcome, 'answered');
  });
}
