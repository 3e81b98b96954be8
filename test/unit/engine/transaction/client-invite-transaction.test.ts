import t from 'tap';
import { ClientInviteTransaction } from '../../../../lib/engine/transaction/client-invite-transaction';
import type { SipRequest, SipResponse } from '../../../../lib/engine/message/sip-message';
import { context, request, response } from './helpers';

function setup(reliable = false) {
  const { clock, ctx, ended } = context(reliable);
  const sent: SipRequest[] = [];
  const got: SipResponse[] = [];
  let timeouts = 0;
  const req = request('INVITE');
  const tx = new ClientInviteTransaction('id', 'key', req, ctx, (m) => sent.push(m), {
    onResponse: (r) => got.push(r),
    onTimeout: () => timeouts++,
  });
  return { clock, tx, req, sent, got, ended, timeouts: () => timeouts };
}

t.test('RFC 3261 17.1.1.2: Timer A retransmits at T1, 2T1, 4T1... over UDP until Timer B (64*T1)', async (t) => {
  const s = setup();
  s.tx.start();
  t.equal(s.sent.length, 1);
  s.clock.tick(500);
  t.equal(s.sent.length, 2, 'first retransmission after T1');
  s.clock.tick(1000);
  t.equal(s.sent.length, 3, 'second after 2*T1 more');
  s.clock.tick(2000);
  t.equal(s.sent.length, 4, 'third after 4*T1 more');
  s.clock.tick(32000 - 3500 - 1);
  t.equal(s.timeouts(), 0, 'no timeout before Timer B');
  t.equal(s.sent.length, 7, 'retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s');
  s.clock.tick(1);
  t.equal(s.timeouts(), 1, 'Timer B fires at 64*T1 and the TU is told');
  t.equal(s.tx.state, 'terminated');
  t.equal(s.ended.length, 1);
});

t.test('RFC 3261 17.1.1.2: no retransmissions over a reliable transport', async (t) => {
  const s = setup(true);
  s.tx.start();
  s.clock.tick(31999);
  t.equal(s.sent.length, 1);
  s.clock.tick(1);
  t.equal(s.timeouts(), 1);
});

t.test('RFC 3261 17.1.1.2: a provisional stops Timer A and moves to proceeding', async (t) => {
  const s = setup();
  s.tx.start();
  s.tx.receiveResponse(response(s.req, 180));
  t.equal(s.tx.state, 'proceeding');
  t.ok(s.tx.provisionalSeen);
  s.clock.tick(10000);
  t.equal(s.sent.length, 1, 'no retransmission once proceeding');
  t.equal(s.got.length, 1);
});

t.test('RFC 3261 17.1.1.3: a non-2xx final is ACKed by the transaction, retransmissions re-ACKed, Timer D ends it', async (t) => {
  const s = setup();
  s.tx.start();
  const busy = response(s.req, 486, 'callee');
  s.tx.receiveResponse(busy);
  t.equal(s.tx.state, 'completed');
  const ack = s.sent[1]!;
  t.equal(ack.method, 'ACK');
  t.equal(ack.uri, s.req.uri, 'same Request-URI');
  t.equal(ack.get('cseq'), '7 ACK', 'CSeq number of the INVITE, method ACK');
  t.equal(ack.get('to'), '<sip:bob@127.0.0.1>;tag=callee', 'To tag from the response');
  t.same(ack.getAll('via'), s.req.getAll('via'), 'top Via of the INVITE');
  t.same(ack.getAll('route'), s.req.getAll('route'), 'Route headers of the INVITE');
  t.equal(s.got.length, 1, 'response passed up once');
  s.tx.receiveResponse(busy);
  t.equal(s.sent.length, 3, 'retransmitted final re-ACKed');
  t.equal(s.got.length, 1, 'and not passed up again');
  s.clock.tick(31999);
  t.equal(s.tx.state, 'completed');
  s.clock.tick(1);
  t.equal(s.tx.state, 'terminated', 'Timer D (32 s over UDP)');
});

t.test('RFC 6026 7.2: a 2xx moves to accepted; retransmitted 2xx reach the TU until Timer M', async (t) => {
  const s = setup();
  s.tx.start();
  const ok = response(s.req, 200);
  s.tx.receiveResponse(ok);
  t.equal(s.tx.state, 'accepted');
  t.equal(s.sent.length, 1, 'the transaction does not ACK a 2xx');
  s.tx.receiveResponse(ok);
  t.equal(s.got.length, 2, 'retransmitted 2xx goes to the TU, which ACKs it');
  s.clock.tick(32000);
  t.equal(s.tx.state, 'terminated');
});

t.test('RFC 3261 17.1.4: a transport error acts as a timeout', async (t) => {
  const s = setup();
  s.tx.start();
  s.tx.transportError();
  t.equal(s.timeouts(), 1);
  t.equal(s.tx.state, 'terminated');
});
