// StreamFramer: SIP over TCP framing (RFC 3261 section 18.3) and keep-alives (RFC 5626 section 4.4.1).
import t from 'tap';
import { StreamFramer, headerContentLength } from '../../../../lib/engine/message/stream-framer';
import { parseMessage } from '../../../../lib/engine/message/parser';
import { TORTURE } from '../../../fixtures/rfc4475/messages';

function sipMsg(cseq: number, body = '', compact = false): Buffer {
  return Buffer.from([
    'MESSAGE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/TCP h.example.com;branch=z9hG4bK' + cseq,
    'From: <sip:alice@example.com>;tag=1',
    'To: <sip:bob@example.com>',
    'Call-ID: framer-test',
    `CSeq: ${cseq} MESSAGE`,
    (compact ? 'l: ' : 'Content-Length: ') + Buffer.byteLength(body),
    '', body].join('\r\n'));
}

interface Run {
  framer: StreamFramer;
  messages: Buffer[];
  errors: string[];
  pings: number;
}

function framer(maxSize = 4096): Run {
  const run: Run = { framer: undefined as unknown as StreamFramer, messages: [], errors: [], pings: 0 };
  run.framer = new StreamFramer({
    maxSize,
    onMessage: (b) => run.messages.push(b),
    onError: (r) => run.errors.push(r),
    onKeepAlive: () => run.pings++,
  });
  return run;
}

const PING = Buffer.from('\r\n\r\n');
const A = sipMsg(1, 'hello');
const B = sipMsg(2, '', true);
const C = sipMsg(3, 'body with \r\n\r\n inside and \u00fcnicode');

t.test('RFC 3261 section 18.3: one message per chunk, then several in one chunk', async (tt) => {
  const r = framer();
  r.framer.push(A);
  tt.equal(r.messages.length, 1);
  tt.ok(r.messages[0]!.equals(A));
  r.framer.push(Buffer.concat([B, C, A]));
  tt.same(r.messages.map((m) => m.toString()), [A, B, C, A].map((m) => m.toString()));
  tt.same(r.errors, []);
  tt.equal(r.framer.buffered, 0);
});

t.test('RFC 3261 section 18.3: a stream split at every byte position', async (tt) => {
  const stream = Buffer.concat([A, PING, B, Buffer.from('\r\n'), C, PING, PING, A]);
  const expected = [A, B, C, A].map((m) => m.toString());
  for (let k = 0; k <= stream.length; k++) {
    const r = framer();
    r.framer.push(Buffer.from(stream.subarray(0, k)));
    r.framer.push(Buffer.from(stream.subarray(k)));
    if (r.messages.length !== 4 || r.pings !== 3 || r.errors.length !== 0) {
      tt.fail(`split at ${k}: ${r.messages.length} messages, ${r.pings} pings, errors ${r.errors.join()}`);
      continue;
    }
    tt.same(r.messages.map((m) => m.toString()), expected, `split at ${k}`);
  }
  // and one byte at a time
  const r = framer();
  for (let i = 0; i < stream.length; i++) r.framer.push(Buffer.from([stream[i]!]));
  tt.same(r.messages.map((m) => m.toString()), expected, 'byte by byte');
  tt.equal(r.pings, 3);
  tt.equal(r.framer.buffered, 0);
});

t.test('RFC 3261 section 18.3: split at every pair of positions into three chunks', async (tt) => {
  const stream = Buffer.concat([B, C]);
  let bad = 0;
  for (let i = 0; i <= stream.length; i++) {
    for (let j = i; j <= stream.length; j++) {
      const r = framer();
      r.framer.push(Buffer.from(stream.subarray(0, i)));
      r.framer.push(Buffer.from(stream.subarray(i, j)));
      r.framer.push(Buffer.from(stream.subarray(j)));
      if (r.messages.length !== 2 || !r.messages[0]!.equals(B) || !r.messages[1]!.equals(C)) bad++;
    }
  }
  tt.equal(bad, 0);
});

t.test('RFC 5626 section 4.4.1: CRLFCRLF pings are reported, single CRLFs skipped', async (tt) => {
  const r = framer();
  r.framer.push(PING);
  tt.equal(r.pings, 1);
  r.framer.push(Buffer.from('\r\n'));
  tt.equal(r.pings, 1, 'a lone CRLF is not yet a ping');
  tt.equal(r.framer.buffered, 0, 'and is not a partial message');
  r.framer.push(Buffer.from('\r\n'));
  tt.equal(r.pings, 2, 'its second half arrives');
  r.framer.push(Buffer.concat([Buffer.from('\r\n'), A]));
  tt.equal(r.pings, 2, 'CRLF before a message is skipped (RFC 3261 section 7.5)');
  tt.equal(r.messages.length, 1);
  r.framer.push(Buffer.from('\n\r\n\r\n'));
  tt.equal(r.pings, 3, 'stray LF skipped, then a ping');
  tt.same(r.errors, []);

  const quiet = new StreamFramer({ maxSize: 100, onMessage: () => undefined, onError: () => undefined });
  quiet.push(PING);
  tt.equal(quiet.buffered, 0, 'onKeepAlive is optional');
});

t.test('RFC 3261 section 18.3: Content-Length missing on a stream is fatal, once', async (tt) => {
  const r = framer();
  const noCl = Buffer.from('OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nCall-ID: x\r\n\r\n');
  r.framer.push(Buffer.concat([A, noCl, A]));
  tt.equal(r.messages.length, 1, 'messages before the error are delivered');
  tt.same(r.errors, ['Content-Length missing on a stream transport']);
  r.framer.push(A);
  tt.equal(r.messages.length, 1, 'nothing after the error');
  tt.equal(r.errors.length, 1, 'reported once');
  tt.ok(r.framer.closed);
});

t.test('RFC 3261 section 20.14: malformed or conflicting Content-Length is fatal', async (tt) => {
  for (const v of ['abc', '-5', '12345678901', '', '5 5']) {
    const r = framer();
    r.framer.push(Buffer.from(`OPTIONS sip:b@e SIP/2.0\r\nContent-Length: ${v}\r\n\r\n`));
    tt.same(r.errors, ['Malformed Content-Length'], JSON.stringify(v));
  }
  const r = framer();
  r.framer.push(Buffer.from('OPTIONS sip:b@e SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nxx'));
  tt.same(r.errors, ['Malformed Content-Length'], 'two different values');
  const same = framer();
  same.framer.push(Buffer.from('OPTIONS sip:b@e SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nxx'));
  tt.equal(same.messages.length, 1, 'two equal values are fine');
});

t.test('RFC 3261 sections 7.3.1 and 7.3.3: Content-Length found whatever its spelling or folding', async (tt) => {
  const h = (s: string): number => headerContentLength(Buffer.from(s));
  tt.equal(h('X y\r\nContent-Length: 12'), 12);
  tt.equal(h('X y\r\nCONTENT-LENGTH   :   007'), 7);
  tt.equal(h('X y\r\nl:3'), 3);
  tt.equal(h('X y\r\nL : 4'), 4);
  tt.equal(h('X y\r\nContent-Length:\r\n  15'), 15, 'folded value');
  tt.equal(h('X y\r\nContent-Type: text/plain\r\nLength: 9'), -1, 'absent');
  tt.equal(h('X y\r\nContent-Length: x'), -2);
});

t.test('RFC 3261 section 18.3: a header block over maxSize without CRLFCRLF is fatal', async (tt) => {
  const r = framer(200);
  r.framer.push(Buffer.from('INVITE sip:b@e SIP/2.0\r\n'));
  for (let i = 0; i < 20 && r.errors.length === 0; i++) r.framer.push(Buffer.from('X-Pad: 0123456789\r\n'));
  tt.equal(r.errors.length, 1);
  tt.match(r.errors[0]!, /header block exceeds 200/);
  tt.equal(r.framer.buffered, 0, 'nothing kept after the error');
  const big = framer(200);
  big.framer.push(Buffer.from('INVITE sip:b@e SIP/2.0\r\nX: ' + 'y'.repeat(300) + '\r\n\r\n'));
  tt.equal(big.errors.length, 1, 'complete but too long');
});

t.test('RFC 3261 section 18.3: a body beyond maxSize is fatal before it arrives', async (tt) => {
  const r = framer(300);
  r.framer.push(Buffer.from('MESSAGE sip:b@e SIP/2.0\r\nContent-Length: 5000\r\n\r\nabc'));
  tt.equal(r.errors.length, 1);
  tt.match(r.errors[0]!, /exceeds 300/);
  const exact = framer(A.length);
  exact.framer.push(A);
  tt.equal(exact.messages.length, 1, 'a message of exactly maxSize passes');
});

t.test('RFC 3261 section 18.3: garbage never yields a message', async (tt) => {
  const r = framer(512);
  let seed = 7;
  for (let i = 0; i < 64 && r.errors.length === 0; i++) {
    const chunk = Buffer.alloc(64);
    for (let j = 0; j < chunk.length; j++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      chunk[j] = 0x20 + (seed % 90); // printable, no CR/LF: never a header end
    }
    r.framer.push(chunk);
  }
  tt.equal(r.messages.length, 0);
  tt.equal(r.errors.length, 1);
  const g = framer();
  g.framer.push(Buffer.from('\x00\x01\x02garbage\r\n\r\nmore'));
  tt.same(g.errors, ['Content-Length missing on a stream transport']);
});

t.test('RFC 3261 section 18.3: buffered counts a partial message; delivered buffers are stable copies', async (tt) => {
  const r = framer();
  tt.equal(r.framer.buffered, 0);
  r.framer.push(A.subarray(0, 10));
  tt.equal(r.framer.buffered, 10);
  r.framer.push(Buffer.concat([A.subarray(10), B.subarray(0, 20)]));
  tt.equal(r.messages.length, 1);
  const first = Buffer.from(r.messages[0]!);
  tt.equal(r.framer.buffered, 20);
  r.framer.push(Buffer.concat([B.subarray(20), C]));
  tt.ok(r.messages[0]!.equals(first), 'the first message was not overwritten');
  tt.same(r.messages.map((m) => m.toString()), [A, B, C].map((m) => m.toString()));
  tt.equal(r.framer.buffered, 0);
});

t.test('RFC 4475 messages framed on a stream then parsed with stream: true', async (tt) => {
  // the ones whose single Content-Length matches their body: the rest cannot be framed on a stream
  const framable = TORTURE.filter((m) => {
    const text = m.bytes.toString('latin1');
    const sep = text.indexOf('\r\n\r\n');
    return headerContentLength(m.bytes.subarray(0, sep)) === m.bytes.length - sep - 4;
  });
  tt.ok(framable.length > 30, `${framable.length} framable messages`);
  const r = framer(65535);
  r.framer.push(Buffer.concat(framable.map((m) => m.bytes)));
  tt.equal(r.messages.length, framable.length);
  for (let i = 0; i < framable.length; i++) {
    tt.ok(r.messages[i]!.equals(framable[i]!.bytes), `${framable[i]!.name} framed exactly`);
    const p = parseMessage(r.messages[i]!, { stream: true });
    const d = parseMessage(framable[i]!.bytes);
    tt.equal(p.ok, d.ok, `${framable[i]!.name}: same verdict as over a datagram`);
  }
});
