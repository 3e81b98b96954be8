// Dialog state (RFC 3261 section 12) and the registry's matching by Call-ID and tags.
import t from 'tap';
import { Dialog, DialogRegistry, dialogId } from '../../../../lib/engine/dialog/dialog';

function uac(): Dialog {
  return new Dialog(dialogId('call-1@host', 'ours'), 'uac', 'call-1@host', 'ours', 'theirs', '"Me" <sip:me@a>', '<sip:you@b>', 'sip:you@10.0.0.2:5060', 5, 'app-1', 'udp', 'INVITE');
}

t.test('RFC 3261 12.2.2: requests find their dialog by Call-ID and tags, from either side', async (tt) => {
  const reg = new DialogRegistry();
  const d = uac();
  reg.add(d);
  tt.equal(d.id, 'call-1@host;from-tag=ours', "drachtio's id: Call-ID and the creating request's From tag");
  tt.equal(d.callId, 'call-1@host');
  tt.equal(reg.match('call-1@host', 'theirs', 'ours'), d, 'a request from the peer of a UAC dialog');
  tt.equal(reg.match('call-1@host', 'ours', 'theirs'), undefined, 'not with the tags swapped');
  const uas = new Dialog(dialogId('call-2@host', 'caller'), 'uas', 'call-2@host', 'callee', 'caller', '<sip:b>', '<sip:a>', 'sip:a@x', 1, 'app-1', 'udp', 'INVITE');
  reg.add(uas);
  tt.equal(reg.match('call-2@host', 'caller', 'callee'), uas, 'a request from the caller of a UAS dialog');
  reg.remove(uas);
  tt.equal(uas.state, 'terminated');
  tt.equal(reg.match('call-2@host', 'caller', 'callee'), undefined);
  tt.equal(reg.size, 1);
});

t.test('RFC 3261 13.2.2.4: the ACK of a 2xx is kept to be sent again, for its INVITE only', async (tt) => {
  const d = uac();
  tt.equal(d.lastAckSeq, undefined);
  const ack = Buffer.from('ACK sip:you@10.0.0.2:5060 SIP/2.0\r\nCSeq: 5 ACK\r\n\r\n');
  d.setAck(5, ack);
  tt.same(d.ackFor(5), ack, 'the same bytes for a 2xx of CSeq 5');
  tt.equal(d.ackFor(6), undefined, 'not for another INVITE');
  tt.equal(d.lastAckSeq, 5);
  d.forgetAck(4);
  tt.ok(d.ackFor(5), 'forgetting another CSeq changes nothing');
  d.forgetAck(5);
  tt.equal(d.ackFor(5), undefined, 'gone once its 2xx can no longer come');
});

t.test('route set and remote target are kept as given (and refreshed)', async (tt) => {
  const d = uac();
  const text = 'Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nContact: <sip:you@10.0.0.3>';
  d.routeSet = [text.slice(14, 25), text.slice(27, 38)];
  tt.same(d.routeSet, ['<sip:p1;lr>', '<sip:p2;lr>']);
  d.remoteTarget = 'sip:you@10.0.0.3';
  tt.equal(d.remoteTarget, 'sip:you@10.0.0.3');
});
