import t from 'tap';
import { ServerInviteTransaction } from '../../../../lib/engine/transaction/server-invite-transaction';
import { ServerNonInviteTransaction } from '../../../../lib/engine/transaction/server-non-invite-transaction';
import type { SipResponse } from '../../../../lib/engine/message/sip-message';
import { context, request, response } from './helpers';

function ist(reliable = false) {
  const { clock, ctx, ended } = context(reliable);
  const sent: SipResponse[] = [];
  let ackTimeouts = 0;
  const req = request('INVITE');
  const tx = new ServerInviteTransaction('id', 'key', req, ctx, (m) => sent.push(m), { onAckTimeout: () => ackTimeouts++ });
  return { clock, tx, req, sent, ended, ackTimeouts: () => ackTimeouts };
}

t.test('RFC 3261 17.2.1: a retransmitted INVITE gets the last provisional again', async (t) => {
  const s = ist();
  s.tx.respond(response(s.req, 100));
  s.tx.receiveInvite();
  t.equal(s.sent.length, 2);
  t.equal(s.sent[1]!.status, 100);
  s.tx.respond(response(s.req, 180));
  s.tx.receiveInvite();
  t.equal(s.sent[3]!.status, 180);
});

t.test('RFC 3261 17.2.1: a non-2xx final is retransmitted on Timer G until the ACK; Timer I ends it', async (t) => {
  const s = ist();
  s.tx.respond(response(s.req, 486));
  t.equal(s.tx.state, 'completed');
  s.clock.tick(500);
  t.equal(s.sent.length, 2, 'G at T1');
  s.clock.tick(1000);
  t.equal(s.sent.length, 3, 'G at 2*T1');
  s.tx.receiveInvite();
  t.equal(s.sent.length, 4, 'a retransmitted INVITE gets the final again');
  s.tx.receiveAck();
  t.equal(s.tx.state, 'confirmed');
  s.clock.tick(10000);
  t.equal(s.sent.length, 4, 'no retransmission after the ACK');
  t.equal(s.tx.state, 'terminated', 'Timer I (T4) ended it');
});

t.test('RFC 3261 17.2.1: Timer H (64*T1) ends it without an ACK and tells the TU', async (t) => {
  const s = ist();
  s.tx.respond(response(s.req, 603));
  s.clock.tick(31999);
  t.equal(s.tx.state, 'completed');
  s.clock.tick(1);
  t.equal(s.tx.state, 'terminated');
  t.equal(s.ackTimeouts(), 1);
  t.ok(s.sent.length >= 7, 'G capped at T2 retransmitted it meanwhile');
});

t.test('RFC 6026 7.1: a 2xx moves to accepted; the transaction absorbs INVITE retransmissions until Timer L', async (t) => {
  const s = ist();
  s.tx.respond(response(s.req, 200));
  t.equal(s.tx.state, 'accepted');
  s.tx.receiveInvite();
  t.equal(s.sent.length, 1, 'absorbed: the core retransmits the 2xx itself');
  t.ok(s.tx.respond(response(s.req, 200)), 'further 2xx pass through');
  t.notOk(s.tx.respond(response(s.req, 486)), 'a non-2xx after a 2xx is refused');
  s.clock.tick(32000);
  t.equal(s.tx.state, 'terminated');
});

t.test('RFC 3261 17.2.1: over TCP, no Timer G and Timer I is zero', async (t) => {
  const s = ist(true);
  s.tx.respond(response(s.req, 486));
  s.clock.tick(5000);
  t.equal(s.sent.length, 1);
  s.tx.receiveAck();
  s.clock.tick(0);
  t.equal(s.tx.state, 'terminated');
});

t.test('RFC 3261 17.2.2: non-INVITE server: absorb while trying, resend the last response after, Timer J', async (t) => {
  const { clock, ctx } = context(false);
  const sent: SipResponse[] = [];
  const req = request('OPTIONS');
  const tx = new ServerNonInviteTransaction('id', 'key', req, ctx, (m) => sent.push(m));
  tx.receiveRequest();
  t.equal(sent.length, 0, 'absorbed in trying');
  tx.respond(response(req, 200));
  t.equal(tx.state, 'completed');
  tx.receiveRequest();
  t.equal(sent.length, 2, 'final response resent');
  t.notOk(tx.respond(response(req, 500)), 'a second final is refused');
  clock.tick(31999);
  t.equal(tx.state, 'completed');
  clock.tick(1);
  t.equal(tx.state, 'terminated', 'Timer J = 64*T1 over UDP');
});
