// The message model (RFC 3261 section 7): header look-ups, list splitting and editing.
import t from 'tap';
import {
  SipRequest, SipResponse, canonicalName, cloneMessage, compactRequest, detach, displayName, firstListComma, firstListElement,
  isListHeader, ownString, splitList,
} from '../../../../lib/engine/message/sip-message';
import { parseMessage } from '../../../../lib/engine/message/parser';

function sample(): SipRequest {
  const r = parseMessage(Buffer.from([
    'INVITE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2',
    'v: SIP/2.0/UDP c.example.com;branch=z9hG4bK3',
    'Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>',
    'f: "A, B" <sip:alice@example.com>;tag=1',
    'To: <sip:bob@example.com>',
    'i: abc@host',
    'CSeq: 1 INVITE',
    'Subject: lunch, maybe',
    'Content-Length: 0',
    '', ''].join('\r\n')));
  if (!r.ok || r.message.type !== 'request') throw new Error('sample does not parse');
  return r.message;
}

t.test('RFC 3261 section 7.3.3: canonicalName expands compact forms, any case', async (tt) => {
  tt.equal(canonicalName('v'), 'via');
  tt.equal(canonicalName('V'), 'via');
  tt.equal(canonicalName('i'), 'call-id');
  tt.equal(canonicalName('l'), 'content-length');
  tt.equal(canonicalName('m'), 'contact');
  tt.equal(canonicalName('CALL-ID'), 'call-id');
  tt.equal(canonicalName('X-Custom'), 'x-custom');
  tt.equal(canonicalName('q'), 'q', 'an unknown one-letter name stays itself');
});

t.test('RFC 3261 section 7.3.1: displayName gives conventional capitalisation', async (tt) => {
  tt.equal(displayName('call-id'), 'Call-ID');
  tt.equal(displayName('cseq'), 'CSeq');
  tt.equal(displayName('www-authenticate'), 'WWW-Authenticate');
  tt.equal(displayName('content-type'), 'Content-Type');
  tt.equal(displayName('x-foo-bar'), 'X-Foo-Bar');
  // RFC 4028 and RFC 3903 spell these with more than the first letters upper case
  tt.equal(displayName('min-se'), 'Min-SE');
  tt.equal(displayName('session-expires'), 'Session-Expires');
  tt.equal(displayName('sip-etag'), 'SIP-ETag');
});

t.test('RFC 3261 section 7.3.1: splitList splits at commas outside quotes and <>', async (tt) => {
  tt.same(splitList('a, b ,c'), ['a', 'b', 'c']);
  tt.same(splitList('"x, y" <sip:a@b>;q=1, <sip:c@d;p=1,2>'), ['"x, y" <sip:a@b>;q=1', '<sip:c@d;p=1,2>']);
  tt.same(splitList('"a \\", b" <sip:x@y>, <sip:z@w>'), ['"a \\", b" <sip:x@y>', '<sip:z@w>']);
  tt.same(splitList(' , ,'), [], 'empty elements dropped');
  tt.ok(isListHeader('via'));
  tt.notOk(isListHeader('subject'));
});

t.test('get / has / getAll use canonical keys and split list headers (RFC 3261 section 7.3.1)', async (tt) => {
  const m = sample();
  tt.equal(m.get('Call-ID'), 'abc@host');
  tt.equal(m.get('i'), 'abc@host');
  tt.equal(m.callId, 'abc@host');
  tt.ok(m.has('F'));
  tt.notOk(m.has('contact'));
  tt.equal(m.get('via'), 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2', 'get gives the first line whole');
  tt.same(m.getAll('v'), [
    'SIP/2.0/UDP a.example.com;branch=z9hG4bK1',
    'SIP/2.0/UDP b.example.com;branch=z9hG4bK2',
    'SIP/2.0/UDP c.example.com;branch=z9hG4bK3',
  ], 'across lines and commas, in order');
  tt.same(m.getAll('subject'), ['lunch, maybe'], 'a non-list header is not split');
  tt.same(m.getAll('from'), ['"A, B" <sip:alice@example.com>;tag=1']);
  tt.same(m.getAll('contact'), []);
});

t.test('RFC 3261 section 7.3.1: set replaces every line of a header with one, keeping the first position and spelling', async (tt) => {
  const m = sample();
  m.set('VIA', 'SIP/2.0/TCP z.example.com;branch=z9hG4bKz');
  const vias = m.headers.filter((h) => h.key === 'via');
  tt.equal(vias.length, 1);
  tt.equal(vias[0]!.name, 'Via', 'the original name is kept');
  tt.equal(m.headers.indexOf(vias[0]!), 0, 'at the place of the first Via');
  m.set('l', '12');
  tt.equal(m.get('content-length'), '12');
  m.set('x', '90');
  tt.same(m.headers.at(-1), { key: 'session-expires', name: 'Session-Expires', value: '90' }, 'an absent compact name is added in its long form');
  m.set('q', 'new');
  tt.equal(m.headers.at(-1)!.name, 'Q', 'a one-letter name that is no compact form stays itself');
  m.set('Expires', '60');
  tt.same(m.headers.at(-1), { key: 'expires', name: 'Expires', value: '60' });
});

t.test('append adds after existing lines; prepend before them (top Via, RFC 3261 section 16.6)', async (tt) => {
  const m = sample();
  m.append('Record-Route', '<sip:p1;lr>');
  m.append('record-route', '<sip:p2;lr>');
  tt.same(m.getAll('record-route'), ['<sip:p1;lr>', '<sip:p2;lr>']);
  m.prepend('Via', 'SIP/2.0/UDP top.example.com;branch=z9hG4bKtop');
  tt.equal(m.getAll('via')[0], 'SIP/2.0/UDP top.example.com;branch=z9hG4bKtop');
  tt.equal(m.headers.findIndex((h) => h.key === 'via'), 0);
  m.prepend('Contact', '<sip:me@here>');
  tt.equal(m.headers.at(-1)!.key, 'contact', 'prepend of an absent header appends it');
});

t.test('shift removes the first list element (Route / Via processing, RFC 3261 section 16.4)', async (tt) => {
  const m = sample();
  tt.equal(m.shift('route'), '<sip:p1.example.com;lr>');
  tt.same(m.getAll('route'), ['<sip:p2.example.com;lr>']);
  tt.equal(m.shift('route'), '<sip:p2.example.com;lr>');
  tt.notOk(m.has('route'), 'the emptied line is removed');
  tt.equal(m.shift('route'), undefined);
  tt.equal(m.shift('via'), 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1');
  tt.same(m.getAll('via').length, 2);
});

t.test('RFC 3261 section 7.3.1: remove drops every line of a header', async (tt) => {
  const m = sample();
  m.remove('V');
  tt.notOk(m.has('via'));
  m.remove('f');
  tt.equal(m.get('from'), undefined);
  tt.equal(m.get('to'), '<sip:bob@example.com>', 'others untouched');
});

t.test('RFC 3261 section 7: cloneMessage copies headers deeply and shares the body', async (tt) => {
  const m = sample();
  m.body = Buffer.from('x');
  const c = cloneMessage(m);
  tt.equal(c.method, 'INVITE');
  tt.equal(c.uri, m.uri);
  tt.same(c.headers, m.headers);
  c.headers[0]!.value = 'changed';
  tt.not(m.headers[0]!.value, 'changed');
  tt.equal(c.body, m.body);
  const res = new SipResponse(180, 'Ringing');
  res.append('To', '<sip:a@b>');
  const rc = cloneMessage(res);
  tt.equal(rc.type, 'response');
  tt.equal(rc.status, 180);
  tt.equal(rc.reason, 'Ringing');
});

t.test('first(): the first list element of a header', async (tt) => {
  const r = sample();
  tt.equal(r.first('via'), 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1');
  tt.equal(r.first('route'), '<sip:p1.example.com;lr>');
  tt.equal(r.first('from'), '"A, B" <sip:alice@example.com>;tag=1', 'a comma inside quotes does not split');
  tt.equal(r.first('contact'), undefined);
  tt.equal(firstListComma('<sip:a,b>, <sip:c>'), 9);
  tt.equal(firstListElement('no comma at all'), 'no comma at all');
});

t.test('compactRequest keeps what answering and matching need, in strings of their own', async (tt) => {
  const r = sample();
  r.body = Buffer.from('v=0');
  compactRequest(r);
  tt.same(r.headers.map((h) => h.key), ['via', 'via', 'route', 'from', 'to', 'call-id', 'cseq']);
  tt.equal(r.get('call-id'), 'abc@host');
  tt.equal(r.first('via'), 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1');
  tt.equal(r.get('subject'), undefined, 'other headers go');
  tt.equal(r.body.length, 0, 'the body goes');
  tt.equal(r.uri, 'sip:bob@example.com');
});

t.test('detach and ownString copy a string', async (tt) => {
  const big = 'x'.repeat(100) + 'the value we keep' + 'y'.repeat(100);
  const slice = big.slice(100, 117);
  tt.equal(detach(slice), 'the value we keep');
  tt.equal(ownString(slice), 'the value we keep');
  tt.equal(ownString('Jürgen <sip:j@b>, ok'), 'Jürgen <sip:j@b>, ok', 'UTF-8 text survives');
  tt.equal(detach('short'), 'short');
});
