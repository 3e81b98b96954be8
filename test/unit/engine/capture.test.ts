// The per-call SIP capture: messages kept as bytes, deflated once a call is quiet, read back as
// they were, bounded in calls and bytes per call.
import t from 'tap';
import { CallCapture } from '../../../lib/engine/capture';
import { FakeClock } from '../../support/fake-clock';

const INVITE =
  'INVITE sip:6002@127.0.0.2:5080 SIP/2.0\r\n' +
  'Record-Route: <sip:127.0.0.1:5060;lr>\r\n' +
  'Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa1b2c3.0\r\n' +
  'Via: SIP/2.0/UDP 127.0.0.1:6001;received=127.0.0.1;rport=6001;branch=z9hG4bK-4432-1-0\r\n' +
  'From: "Jürgen" <sip:6001@127.0.0.1>;tag=4432SIPpTag001\r\n' +
  'To: <sip:6002@127.0.0.1>\r\n' +
  'Call-ID: 1-4432@127.0.0.1\r\n' +
  'CSeq: 1 INVITE\r\n' +
  'Contact: <sip:6001@127.0.0.1:6001>\r\n' +
  'Max-Forwards: 69\r\n' +
  'Content-Type: application/sdp\r\n' +
  'Content-Length: 129\r\n\r\n' +
  'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n';
const OK = INVITE.replace(/^INVITE [^\r]*/, 'SIP/2.0 200 OK').replace('To: <sip:6002@127.0.0.1>', 'To: <sip:6002@127.0.0.1>;tag=abc');
const ACK = 'ACK sip:127.0.0.2:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa1b2c4.0\r\nCall-ID: 1-4432@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n';

function call(cap: CallCapture, clock: FakeClock, callId = '1-4432@127.0.0.1'): void {
  cap.record(callId, clock.now(), 'in', 'udp', '127.0.0.1', 5060, '127.0.0.2:5080', Buffer.from(INVITE, 'utf8'));
  cap.record(callId, clock.now() + 1, 'out', 'udp', '127.0.0.1', 5060, '127.0.0.2:5080', Buffer.from(OK, 'utf8'));
  cap.record(callId, clock.now() + 2, 'in', 'tcp', '127.0.0.9', 5070, '127.0.0.2:5080', Buffer.from(ACK, 'utf8'));
}

t.test('messages read back as recorded: time, direction, transport, peer, local address, text', async (tt) => {
  const clock = new FakeClock();
  const cap = new CallCapture(10, 256 * 1024, clock);
  call(cap, clock);
  const got = cap.get('1-4432@127.0.0.1');
  tt.ok(got, 'found by Call-ID');
  tt.same(
    got!.messages.map((m) => [m.t, m.dir, m.transport, m.peer, m.local]),
    [
      [0, 'in', 'udp', '127.0.0.1:5060', '127.0.0.2:5080'],
      [1, 'out', 'udp', '127.0.0.1:5060', '127.0.0.2:5080'],
      [2, 'in', 'tcp', '127.0.0.9:5070', '127.0.0.2:5080'],
    ],
  );
  tt.same(got!.messages.map((m) => m.text), [INVITE, OK, ACK], 'the text, UTF-8 display name included');
  tt.equal(got!.truncated, false);
  tt.equal(cap.get('other'), undefined, 'an unknown Call-ID has no capture');
  cap.close();
});

t.test('a quiet call is deflated: a fraction of the bytes, read back the same, later messages appended', async (tt) => {
  const clock = new FakeClock();
  const cap = new CallCapture(10, 256 * 1024, clock);
  call(cap, clock);
  const raw = Buffer.byteLength(INVITE + OK + ACK);
  tt.equal(cap.storedBytes, raw, 'pending messages are kept as they are');
  clock.tick(3000);
  tt.ok(cap.storedBytes < raw / 2, `deflated: ${cap.storedBytes} bytes kept for ${raw}`);
  const after = cap.get('1-4432@127.0.0.1')!;
  tt.same(after.messages.map((m) => m.text), [INVITE, OK, ACK], 'the same text after deflating');
  tt.same(after.messages.map((m) => m.peer), ['127.0.0.1:5060', '127.0.0.1:5060', '127.0.0.9:5070']);
  tt.same(after.messages.map((m) => m.transport), ['udp', 'udp', 'tcp']);

  const bye = 'BYE sip:6001@127.0.0.1:6001 SIP/2.0\r\nCall-ID: 1-4432@127.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n';
  cap.record('1-4432@127.0.0.1', 90_000, 'out', 'udp', '::1', 5060, '[::1]:5080', Buffer.from(bye));
  const mixed = cap.get('1-4432@127.0.0.1')!;
  tt.same(mixed.messages.map((m) => m.text), [INVITE, OK, ACK, bye], 'deflated and pending messages, in order');
  tt.equal(mixed.messages[3]!.peer, '::1:5060');
  clock.tick(3000);
  tt.same(cap.get('1-4432@127.0.0.1')!.messages.map((m) => m.t), [0, 1, 2, 90_000], 'two deflated batches');
  cap.close();
});

t.test('bounded: the oldest call goes past maxCalls, messages past maxBytesPerCall are dropped', async (tt) => {
  const clock = new FakeClock();
  const cap = new CallCapture(2, 1000, clock);
  cap.record('a', 0, 'in', 'udp', '127.0.0.1', 1, 'x:1', Buffer.from('A'.repeat(600)));
  cap.record('a', 0, 'in', 'udp', '127.0.0.1', 1, 'x:1', Buffer.from('B'.repeat(600)));
  const a = cap.get('a')!;
  tt.equal(a.messages.length, 1, 'the message that would pass the byte bound is dropped');
  tt.equal(a.truncated, true, 'and the capture says so');
  cap.record('b', 0, 'in', 'udp', '127.0.0.1', 1, 'x:1', Buffer.from('b'));
  cap.record('c', 0, 'in', 'udp', '127.0.0.1', 1, 'x:1', Buffer.from('c'));
  tt.equal(cap.size, 2);
  tt.equal(cap.get('a'), undefined, 'the oldest call was evicted');
  tt.equal(cap.storedBytes, 2, 'its bytes are no longer counted');
  clock.tick(3000);
  tt.same(cap.get('c')!.messages.map((m) => m.text), ['c']);
  cap.close();
});

t.test('take: the capture is handed over and forgotten, pending or deflated; a later message starts afresh', async (tt) => {
  const clock = new FakeClock();
  const cap = new CallCapture(10, 256 * 1024, clock);
  call(cap, clock);
  call(cap, clock, 'other');
  const pending = cap.take('1-4432@127.0.0.1')!;
  tt.same(pending.messages.map((m) => m.text), [INVITE, OK, ACK], 'pending messages handed over');
  tt.equal(cap.get('1-4432@127.0.0.1'), undefined, 'no longer kept');
  tt.equal(cap.take('1-4432@127.0.0.1'), undefined, 'a second take finds nothing');
  tt.equal(cap.storedBytes, Buffer.byteLength(INVITE + OK + ACK), 'only the other call is counted');
  clock.tick(3000);
  const deflated = cap.take('other')!;
  tt.same(deflated.messages.map((m) => m.text), [INVITE, OK, ACK], 'deflated messages handed over');
  tt.equal(cap.storedBytes, 0, 'nothing left');
  tt.equal(cap.size, 0);
  cap.record('other', 5000, 'in', 'udp', '127.0.0.1', 5060, '127.0.0.2:5080', Buffer.from(ACK));
  tt.same(cap.take('other')!.messages.map((m) => m.t), [5000], 'a late retransmission is a new capture');
  cap.close();
});
