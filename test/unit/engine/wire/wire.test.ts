// drachtio wire protocol pieces: framing both ways, frames of one event-loop turn in one write,
// the metadata time field and application messages.
import t from 'tap';
import type { Socket } from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import { WireFramer } from '../../../../lib/engine/wire/wire-framer';
import { AppConnection } from '../../../../lib/engine/wire/wire-server';
import { wireTime } from '../../../../lib/engine/wire/wire-format';
import { parseAppMessage } from '../../../../lib/engine/wire/app-message';
import { newMsgId, newTxnId } from '../../../../lib/engine/ids';

function fakeSocket(): { socket: Socket; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const socket = {
    destroyed: false,
    remoteAddress: '127.0.0.1',
    remotePort: 40000,
    write(b: Buffer | string): boolean {
      writes.push(Buffer.isBuffer(b) ? b : Buffer.from(b));
      return true;
    },
  } as unknown as Socket;
  return { socket, writes };
}

/** Splits framed bytes back into payloads, as drachtio-srf does (lengths in bytes). */
function unframe(all: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < all.length; ) {
    const hash = all.indexOf(0x23, at);
    const len = Number(all.toString('latin1', at, hash));
    out.push(all.toString('utf8', hash + 1, hash + 1 + len));
    at = hash + 1 + len;
  }
  return out;
}

t.test('frames written in one turn go out in one write; lengths count UTF-8 bytes', async (tt) => {
  const { socket, writes } = fakeSocket();
  const app = new AppConnection('app-1', socket);
  const sip = Buffer.from('INVITE sip:a@b SIP/2.0\r\nFrom: "Jürgen" <sip:j@b>;tag=1\r\n\r\n', 'utf8');
  app.sendFrame('m1|sip|network|x|\r\n', sip);
  app.send('m2|response|a1|OK');
  app.reply('a2', 'OK|ö|Msg sent:|\r\n', Buffer.from('SIP/2.0 200 OK\r\n\r\n'));
  tt.equal(writes.length, 0, 'nothing written before the turn ends');
  await turn();
  tt.equal(writes.length, 1, 'one write for the turn');
  const payloads = unframe(writes[0]!);
  tt.equal(payloads.length, 3);
  tt.equal(payloads[0], `m1|sip|network|x|\r\n${sip.toString('utf8')}`, 'the SIP bytes follow the head as they are');
  tt.equal(payloads[1], 'm2|response|a1|OK');
  tt.match(payloads[2]!, /^[0-9a-f-]{36}\|response\|a2\|OK\|ö\|Msg sent:\|\r\nSIP\/2\.0 200 OK\r\n\r\n$/);
  app.send('later');
  await turn();
  tt.equal(writes.length, 2, 'a later turn writes again');
  tt.same(unframe(writes[1]!), ['later']);
});

t.test('nothing is written to a destroyed socket', async (tt) => {
  const { socket, writes } = fakeSocket();
  const app = new AppConnection('app-1', socket);
  (socket as { destroyed: boolean }).destroyed = true;
  app.send('x');
  await turn();
  tt.equal(writes.length, 0);
});

t.test('the framer reads frames split across chunks and several in one chunk', async (tt) => {
  const got: string[] = [];
  const errors: string[] = [];
  const framer = new WireFramer(1000, (p) => got.push(p), (e) => errors.push(e));
  const frame = (p: string): Buffer => Buffer.concat([Buffer.from(`${Buffer.byteLength(p)}#`), Buffer.from(p)]);
  const all = Buffer.concat([frame('one|ping'), frame('two|ö|x'), frame('three')]);
  framer.push(all.subarray(0, 3));
  framer.push(all.subarray(3, 15));
  framer.push(all.subarray(15));
  tt.same(got, ['one|ping', 'two|ö|x', 'three']);
  tt.same(errors, []);
  for (const bad of ['#x', 'abc#x', '12345678901#', '0#', '2000#x']) {
    const errs: string[] = [];
    new WireFramer(1000, () => undefined, (e) => errs.push(e)).push(Buffer.from(bad));
    tt.equal(errs.length, 1, `refused: ${bad}`);
  }
});

t.test('wireTime: HH:MM:SS.uuuuuu of the UTC time of day', async (tt) => {
  const ref = (ms: number): string => {
    const d = new Date(ms);
    const p2 = (n: number): string => String(n).padStart(2, '0');
    return `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}.${String(d.getUTCMilliseconds() * 1000).padStart(6, '0')}`;
  };
  for (const ms of [0, 7, 45, 999, 1000, 86_399_999, 1_763_740_800_123, Date.UTC(2026, 10, 21, 23, 59, 59, 5)]) tt.equal(wireTime(ms), ref(ms), String(ms));
  tt.equal(wireTime(1000), wireTime(1000), 'the same millisecond twice');
});

t.test('application messages: start line, headers (folded lines joined), body', async (tt) => {
  const res = parseAppMessage('SIP/2.0 200 OK\r\nCall-ID: x\r\ncseq: 1 INVITE\r\nx-a:  one\r\n  two\r\nContent-Length: 3\r\n\r\nv=0');
  if (typeof res === 'string') throw new Error(res);
  tt.equal(res.type, 'response');
  tt.same(res.headers.map((h) => [h.key, h.name, h.value]), [['call-id', 'Call-ID', 'x'], ['cseq', 'cseq', '1 INVITE'], ['x-a', 'x-a', 'one two'], ['content-length', 'Content-Length', '3']]);
  tt.equal(res.body.toString(), 'v=0');
  const req = parseAppMessage('bye sip:a@b SIP/2.0\r\n\r\n');
  tt.ok(typeof req !== 'string' && req.type === 'request' && req.method === 'BYE' && req.body.length === 0);
  tt.match(parseAppMessage('SIP/2.0 2000 OK\r\n\r\n'), /^invalid status line/);
  tt.match(parseAppMessage('INVITE  sip:a SIP/2.0\r\n\r\n'), /^invalid request line/);
  tt.match(parseAppMessage('INVITE sip:a SIP/2.0\r\nno colon\r\n\r\n'), /^invalid header line: no colon/);
  tt.match(parseAppMessage('INVITE sip:a SIP/2.0\r\n: empty name\r\n\r\n'), /^invalid header line/);
});

t.test('ids: UUID-shaped, unique', async (tt) => {
  const seen = new Set<string>();
  const misshapen: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const id = i % 2 ? newTxnId() : newMsgId();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)) misshapen.push(id);
    seen.add(id);
  }
  tt.same(misshapen, [], 'every id has the version 4 layout');
  tt.equal(seen.size, 10_000, 'no id twice');
});
