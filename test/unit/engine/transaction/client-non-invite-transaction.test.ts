import t from 'tap';
import { ClientNonInviteTransaction } from '../../../../lib/engine/transaction/client-non-invite-transaction';
import type { SipRequest, SipResponse } from '../../../../lib/engine/message/sip-message';
import { context, request, response } from './helpers';

function setup(reliable = false) {
  const { clock, ctx, ended } = context(reliable);
  const sent: SipRequest[] = [];
  const got: SipResponse[] = [];
  let timeouts = 0;
  const req = request('BYE');
  const tx = new ClientNonInviteTransaction('id', 'key', req, ctx, (m) => sent.push(m), {
    onResponse: (r) => got.push(r),
    onTimeout: () => timeouts++,
  });
  return { clock, tx, req, sent, got, ended, timeouts: () => timeouts };
}

t.test('RFC 3261 17.1.2.2: Timer E doubles up to T2 while trying, then Timer F at 64*T1', async (t) => {
  const s = setup();
  s.tx.start();
  const at: number[] = [];
  const orig = s.sent.length;
  t.equal(orig, 1);
  for (let ms = 0; ms < 32000; ms += 100) {
    const before = s.sent.length;
    s.clock.tick(100);
    if (s.sent.length > before) at.push(s.clock.now());
  }
  t.same(at.slice(0, 6), [500, 1500, 3500, 7500, 11500, 15500], 'E: 0.5, 1, 2, 4 then capped at T2=4 s');
  t.equal(s.timeouts(), 1, 'Timer F fired');
  t.equal(s.tx.state, 'terminated');
});

t.test('RFC 3261 17.1.2.2: once proceeding, Timer E retransmits every T2', async (t) => {
  const s = setup();
  s.tx.start();
  s.tx.receiveResponse(response(s.req, 180));
  t.equal(s.tx.state, 'proceeding');
  s.clock.tick(500);
  t.equal(s.sent.length, 2, 'the pending Timer E still fires');
  s.clock.tick(4000);
  t.equal(s.sent.length, 3, 'then every T2');
});

t.test('RFC 3261 17.1.2.2: a final response completes it; Timer K (T4) ends it; retransmissions absorbed', async (t) => {
  const s = setup();
  s.tx.start();
  const ok = response(s.req, 200);
  s.tx.receiveResponse(ok);
  s.tx.receiveResponse(ok);
  t.equal(s.got.length, 1);
  t.equal(s.tx.state, 'completed');
  s.clock.tick(4999);
  t.equal(s.tx.state, 'completed');
  s.clock.tick(1);
  t.equal(s.tx.state, 'terminated');
  t.equal(s.sent.length, 1, 'no retransmission after the final response');
});

t.test('RFC 3261 17.1.2.2: over TCP, no retransmission and Timer K is zero', async (t) => {
  const s = setup(true);
  s.tx.start();
  s.clock.tick(10000);
  t.equal(s.sent.length, 1);
  s.tx.receiveResponse(response(s.req, 200));
  s.clock.tick(0);
  t.equal(s.tx.state, 'terminated');
});
