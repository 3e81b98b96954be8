// Reading a call's SIP capture from the engine's status endpoint: the engine is a stand-in HTTP
// server on 127.0.0.1 (a Node one like the engine's, or a raw socket to control the bytes; the
// real engine is in test/integration). What is checked is the client side: one kept connection,
// the reads of one turn pipelined in one write and answered in order, both framings, a
// connection the engine closed (idle, or with Connection: close) retried once, errors named.

import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { EngineCapture } from '../../../lib/b2bua/engine-capture';
import type { TapTest } from '../../support/engine-harness';

interface FakeEngine {
  url: string;
  /** Connections accepted so far, and the paths asked for. */
  connections: number;
  paths: string[];
}

/** A stand-in engine; `answer` gets each request and the number of requests seen on its connection. */
async function fakeEngine(tt: TapTest, answer: (req: http.IncomingMessage, res: http.ServerResponse, nthOnConnection: number) => void): Promise<FakeEngine> {
  const engine: FakeEngine = { url: '', connections: 0, paths: [] };
  const perSocket = new WeakMap<object, number>();
  const server = http.createServer((req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    engine.paths.push(req.url ?? '');
    answer(req, res, n);
  });
  server.on('connection', () => (engine.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  tt.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  engine.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return engine;
}

function captureJson(callId: string): string {
  return JSON.stringify({
    callId,
    messages: [
      { t: 1_795_000_000_000, dir: 'in', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text: `INVITE sip:6002@pbx SIP/2.0\r\nCall-ID: ${callId}\r\n\r\n` },
      { t: 1_795_000_000_010, dir: 'out', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text: 'SIP/2.0 100 Trying\r\n\r\n' },
      { t: 'not a time', text: 'skipped' },
    ],
    truncated: callId.includes('long'),
  });
}

function answerCapture(req: http.IncomingMessage, res: http.ServerResponse): void {
  const callId = decodeURIComponent((req.url ?? '').replace(/^.*\/capture\//, ''));
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(captureJson(callId));
}

t.test('reads a leg\'s messages, and keeps one connection for reads one after another', async (tt) => {
  const engine = await fakeEngine(tt, answerCapture);
  const capture = new EngineCapture(engine.url);
  tt.teardown(() => capture.close());
  const first = await capture.messages('abc@10.0.0.1', 'b');
  tt.match(first, {
    truncated: false,
    messages: [
      { leg: 'b', dir: 'in', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text: /^INVITE .*Call-ID: abc@10\.0\.0\.1/s },
      { leg: 'b', dir: 'out', text: 'SIP/2.0 100 Trying\r\n\r\n' },
    ],
  });
  tt.equal(first?.messages.length, 2, 'an entry without a time is skipped');
  tt.equal(first?.messages[1]?.at.getTime(), 1_795_000_000_010);
  for (let i = 0; i < 5; i += 1) await capture.messages(`call-${i}`, 'a');
  tt.equal((await capture.messages('a long one', 'a'))?.truncated, true, 'truncated is passed on');
  tt.equal(engine.connections, 1, 'seven reads, one connection');
  tt.equal(engine.paths[0], '/capture/abc%4010.0.0.1', 'the Call-ID is escaped in the path');
});

t.test('a base URL with a path or a trailing slash', async (tt) => {
  const engine = await fakeEngine(tt, answerCapture);
  for (const base of [`${engine.url}/`, `${engine.url}/engine/`]) {
    const capture = new EngineCapture(base);
    await capture.messages('x1', 'a');
    capture.close();
  }
  tt.same(engine.paths, ['/capture/x1', '/engine/capture/x1']);
});

t.test('a kept connection the engine closed meanwhile: the read is sent again on a new one', async (tt) => {
  // The engine drops every connection at its second request, as a keep-alive timeout racing a reuse would.
  const engine = await fakeEngine(tt, (req, res, n) => {
    if (n === 2) req.socket.destroy();
    else answerCapture(req, res);
  });
  const capture = new EngineCapture(engine.url);
  tt.teardown(() => capture.close());
  await capture.messages('r1', 'a');
  const again = await capture.messages('r2', 'a');
  tt.equal(again?.messages.length, 2, 'the second read succeeds');
  tt.equal(engine.connections, 2, 'on a second connection');
  tt.same(engine.paths, ['/capture/r1', '/capture/r2', '/capture/r2']);
});

t.test('errors name the problem; 404 means no capture', async (tt) => {
  const engine = await fakeEngine(tt, (req, res) => {
    if (req.url?.endsWith('/none')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"no capture"}');
    } else if (req.url?.endsWith('/broken')) {
      res.writeHead(500);
      res.end('boom');
    } else if (req.url?.endsWith('/garbage')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>');
    } else if (req.url?.endsWith('/odd')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('null');
    }
    // Anything else: never answered.
  });
  const capture = new EngineCapture(engine.url, 200);
  tt.teardown(() => capture.close());
  tt.equal(await capture.messages('none', 'a'), undefined, '404: no capture for that Call-ID');
  await tt.rejects(capture.messages('broken', 'a'), /engine capture: the engine answered 500 for Call-ID broken/);
  await tt.rejects(capture.messages('garbage', 'a'), /engine capture: the engine answered something other than JSON for Call-ID garbage/);
  tt.same(await capture.messages('odd', 'a'), { messages: [], truncated: false }, 'JSON without messages: none');
  await tt.rejects(capture.messages('silent', 'a'), /engine capture: the engine did not answer within 200 ms/);
  tt.same(await capture.messages('none', 'b'), undefined, 'and it goes on working');
});

/** A raw TCP stand-in: `onData` sees each chunk as it arrives and answers with the bytes it likes. */
async function rawEngine(tt: TapTest, onData: (socket: net.Socket, data: string, connection: number) => void): Promise<{ url: string; chunks: string[] }> {
  const chunks: string[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const n = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (d) => {
      chunks.push(d.toString('latin1'));
      onData(socket, d.toString('latin1'), n);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  tt.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, chunks };
}

function withLength(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

t.test('the reads of one turn go out in one write, pipelined, and are answered in order', async (tt) => {
  const engine = await rawEngine(tt, (socket, data) => {
    const ids = [...data.matchAll(/GET \/capture\/(\S+) HTTP\/1\.1/g)].map((m) => decodeURIComponent(m[1]!));
    const answer = ids.map((id) => withLength(captureJson(id))).join('');
    // Split anywhere, even inside a head or a body: the parser must wait for the rest.
    const cut = Math.floor(answer.length / 3);
    socket.write(answer.slice(0, cut));
    setImmediate(() => socket.write(answer.slice(cut)));
  });
  const capture = new EngineCapture(engine.url);
  tt.teardown(() => capture.close());
  const [a, b, c] = await Promise.all([capture.messages('leg-a', 'a'), capture.messages('leg-b', 'b'), capture.messages('ünï', 'b')]);
  tt.match(a?.messages[0]?.text, /Call-ID: leg-a\r\n/, 'each answer to its read');
  tt.match(b?.messages[0]?.text, /Call-ID: leg-b\r\n/);
  tt.match(c?.messages[0]?.text, /Call-ID: ünï\r\n/, 'UTF-8 bodies decoded whole');
  tt.equal(engine.chunks.length, 1, 'one write');
  tt.equal(engine.chunks[0]?.match(/GET /g)?.length, 3, 'holding the three reads');
  tt.match(engine.chunks[0], /^GET \/capture\/leg-a HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/, 'with the Host header');
});

t.test('at most eight reads are written together; the rest follow once those are answered', async (tt) => {
  const engine = await rawEngine(tt, (socket, data) => {
    const ids = [...data.matchAll(/GET \/capture\/(\S+) HTTP\/1\.1/g)].map((m) => m[1]!);
    socket.write(ids.map((id) => withLength(captureJson(id))).join(''));
  });
  const capture = new EngineCapture(engine.url);
  tt.teardown(() => capture.close());
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => capture.messages(`p${i}`, 'a')));
  tt.same(results.map((r) => /Call-ID: (\S+)/.exec(r?.messages[0]?.text ?? '')?.[1]), Array.from({ length: 20 }, (_, i) => `p${i}`), 'every read its own answer');
  tt.same(engine.chunks.map((c) => c.match(/GET /g)?.length), [8, 8, 4], 'written eight, eight, then four');
});

t.test('Connection: close from the engine: the reads still waiting go again on a new connection', async (tt) => {
  const engine = await rawEngine(tt, (socket, data, connection) => {
    const ids = [...data.matchAll(/GET \/capture\/(\S+) HTTP\/1\.1/g)].map((m) => m[1]!);
    if (connection === 1) {
      // Answers the first and closes, as a server going away would.
      socket.end(withLength(captureJson(ids[0]!), 'Connection: close\r\n'));
    } else {
      socket.write(ids.map((id) => withLength(captureJson(id))).join(''));
    }
  });
  const capture = new EngineCapture(engine.url);
  tt.teardown(() => capture.close());
  const [first, second] = await Promise.all([capture.messages('c1', 'a'), capture.messages('c2', 'a')]);
  tt.match(first?.messages[0]?.text, /Call-ID: c1/);
  tt.match(second?.messages[0]?.text, /Call-ID: c2/, 'the second read answered on the next connection');
  tt.equal(engine.chunks.filter((c) => c.includes('GET /capture/c2')).length, 2, 'sent twice');
});

t.test('a response that is not HTTP fails the reads on that connection, without a retry', async (tt) => {
  const engine = await rawEngine(tt, (socket) => socket.write('SSH-2.0-OpenSSH\r\n\r\n'));
  const capture = new EngineCapture(engine.url);
  tt.teardown(() => capture.close());
  await tt.rejects(capture.messages('x', 'a'), /engine capture: the engine sent something other than an HTTP\/1\.1 response: "SSH-2\.0-OpenSSH"/);
  tt.equal(engine.chunks.length, 1, 'sent once');
});

t.test('a capture URL that is not http is refused naming it', async (tt) => {
  tt.throws(() => new EngineCapture('not a url'), /engine capture URL "not a url" is not a URL/);
  tt.throws(() => new EngineCapture('ftp://127.0.0.1:21'), /ftp:\/\/127\.0\.0\.1:21: expected http:\/\/ or https:\/\//);
});
