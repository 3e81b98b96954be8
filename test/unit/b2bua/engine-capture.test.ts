// Reading calls' SIP captures from the engine's status endpoint: the engine is a stand-in HTTP
// server on 127.0.0.1 (a Node one like the engine's, or a raw socket to control the bytes; the
// real engine is in test/integration). What is checked is the client side: one kept connection,
// the reads of one turn in one request, one request in flight with the reads asked meanwhile
// batched into the next, lines handed over as they arrive, both framings, a connection the
// engine closed retried once, errors named.

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

function captureLine(callId: string): string {
  if (callId.startsWith('none')) return `${JSON.stringify({ callId, missing: true })}\n`;
  return `${JSON.stringify({
    callId,
    messages: [
      { t: 1_795_000_000_000, dir: 'in', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text: `INVITE sip:6002@pbx SIP/2.0\r\nCall-ID: ${callId}\r\n\r\n` },
      { t: 1_795_000_000_010, dir: 'out', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text: 'SIP/2.0 100 Trying\r\n\r\n' },
      { t: 'not a time', text: 'skipped' },
    ],
    truncated: callId.includes('long'),
  })}\n`;
}

/** The Call-IDs a request names, in order. */
function idsOf(path: string): string[] {
  return new URL(path, 'http://engine').searchParams.getAll('id');
}

function answerCaptures(req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.end(idsOf(req.url ?? '/').map(captureLine).join(''));
}

t.test('reads a leg\'s messages, taking them, and keeps one connection for reads one after another', async (tt) => {
  const engine = await fakeEngine(tt, answerCaptures);
  const capture = new EngineCapture(engine.url, { take: true });
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
  tt.equal(await capture.messages('none-such', 'a'), undefined, 'a call the engine has no capture of: none');
  tt.equal(engine.connections, 1, 'eight reads, one connection');
  tt.equal(engine.paths[0], '/captures?take=1&id=abc%4010.0.0.1', 'the Call-ID is escaped, and the engine lets the capture go');
});

t.test('a base URL with a path or a trailing slash', async (tt) => {
  const engine = await fakeEngine(tt, answerCaptures);
  for (const base of [`${engine.url}/`, `${engine.url}/engine/`]) {
    const capture = new EngineCapture(base);
    await capture.messages('x1', 'a');
    capture.close();
  }
  tt.same(engine.paths, ['/captures?take=0&id=x1', '/engine/captures?take=0&id=x1'], 'and without take, the engine keeps the capture');
});

t.test('the reads of one turn go in one request, both legs of a call and the same Call-ID asked twice', async (tt) => {
  const engine = await fakeEngine(tt, answerCaptures);
  const capture = new EngineCapture(engine.url, { take: true });
  tt.teardown(() => capture.close());
  const [a, b, again, u] = await Promise.all([capture.messages('leg-a', 'a'), capture.messages('leg-b', 'b'), capture.messages('leg-a', 'b'), capture.messages('ünï', 'b')]);
  tt.match(a?.messages[0]?.text, /Call-ID: leg-a\r\n/, 'each answer to its read');
  tt.equal(a?.messages[0]?.leg, 'a');
  tt.match(b?.messages[0]?.text, /Call-ID: leg-b\r\n/);
  tt.equal(again?.messages[0]?.leg, 'b', 'a Call-ID asked twice is answered to both, each with its leg');
  tt.match(u?.messages[0]?.text, /Call-ID: ünï\r\n/, 'UTF-8 decoded whole');
  tt.same(engine.paths.map(idsOf), [['leg-a', 'leg-b', 'ünï']], 'one request naming each Call-ID once');
});

t.test('one request in flight: the reads asked meanwhile go together in the next', async (tt) => {
  let release: (() => void) | undefined;
  const engine = await fakeEngine(tt, (req, res, n) => {
    if (n === 1) release = () => answerCaptures(req, res);
    else answerCaptures(req, res);
  });
  const capture = new EngineCapture(engine.url, { take: true });
  tt.teardown(() => capture.close());
  const first = capture.messages('q0', 'a');
  while (!release) await new Promise((resolve) => setImmediate(resolve));
  const rest: Promise<unknown>[] = [];
  for (let i = 1; i <= 20; i++) {
    rest.push(capture.messages(`q${i}`, 'a'));
    // spread over several turns of the event loop
    if (i % 5 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  tt.equal(engine.paths.length, 1, 'nothing more is sent while the first request waits');
  release();
  await first;
  const results = (await Promise.all(rest)) as Array<{ messages: Array<{ text: string }> } | undefined>;
  tt.same(results.map((r) => /Call-ID: (\S+)/.exec(r?.messages[0]?.text ?? '')?.[1]), Array.from({ length: 20 }, (_, i) => `q${i + 1}`), 'every read its own answer');
  tt.same(engine.paths.map((p) => idsOf(p).length), [1, 20], 'then one request for the twenty');
});

t.test('a kept connection the engine closed meanwhile: the read is sent again on a new one', async (tt) => {
  // The engine drops every connection at its second request, as a keep-alive timeout racing a reuse would.
  const engine = await fakeEngine(tt, (req, res, n) => {
    if (n === 2) req.socket.destroy();
    else answerCaptures(req, res);
  });
  const capture = new EngineCapture(engine.url, { take: true });
  tt.teardown(() => capture.close());
  await capture.messages('r1', 'a');
  const again = await capture.messages('r2', 'a');
  tt.equal(again?.messages.length, 2, 'the second read succeeds');
  tt.equal(engine.connections, 2, 'on a second connection');
  tt.same(engine.paths.map(idsOf), [['r1'], ['r2'], ['r2']]);
});

t.test('errors name the problem', async (tt) => {
  const engine = await fakeEngine(tt, (req, res) => {
    const [id] = idsOf(req.url ?? '/');
    if (id === 'off') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"capture is off (start with --capture)"}');
    } else if (id === 'broken') {
      res.writeHead(500);
      res.end('boom');
    } else if (id === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end('<html>\n');
    } else if (id === 'stranger') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end(captureLine('someone-else'));
    } else if (id === 'short') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end('');
    } else if (id === 'odd') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end('{"callId":"odd"}');
    } else if (id?.startsWith('none')) {
      answerCaptures(req, res);
    }
    // Anything else: never answered.
  });
  // Long enough that the read after the silent one does not time out on a loaded CI machine
  // (200 ms did once: the stand-in engine shares this process's event loop).
  const capture = new EngineCapture(engine.url, { timeoutMs: 1000 });
  tt.teardown(() => capture.close());
  await tt.rejects(capture.messages('off', 'a'), /engine capture: the engine answered 404: capture is off \(start with --capture\)/);
  await tt.rejects(capture.messages('broken', 'a'), /engine capture: the engine answered 500/);
  await tt.rejects(capture.messages('garbage', 'a'), /engine capture: the engine answered a line that is not JSON/);
  await tt.rejects(capture.messages('stranger', 'a'), /engine capture: the engine answered for a Call-ID not asked for: "someone-else"/);
  await tt.rejects(capture.messages('short', 'a'), /engine capture: the engine did not answer for this Call-ID/);
  tt.same(await capture.messages('odd', 'a'), { messages: [], truncated: false }, 'a last line without a newline, and without messages: none');
  await tt.rejects(capture.messages('silent', 'a'), /engine capture: the engine did not answer within 1000 ms/);
  tt.equal(await capture.messages('none-again', 'b'), undefined, 'and it goes on working');
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
  return `HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

t.test('lines are handed over as they arrive, whatever the chunking, in either framing', async (tt) => {
  let later: (() => void) | undefined;
  const engine = await rawEngine(tt, (socket, data) => {
    const [path] = /GET (\S+) HTTP\/1\.1/.exec(data)!.slice(1);
    const ids = idsOf(path!);
    const body = ids.map(captureLine).join('');
    if (ids[0] === 'chunked-1') {
      // the first line whole and a part of the second; the rest only once the first was handed over
      const cut = body.indexOf('\n') + 40;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n${Buffer.byteLength(body.slice(0, cut)).toString(16)}\r\n${body.slice(0, cut)}\r\n`);
      later = () => socket.write(`${Buffer.byteLength(body.slice(cut)).toString(16)}\r\n${body.slice(cut)}\r\n0\r\n\r\n`);
    } else {
      // split anywhere, even inside the head
      const answer = withLength(body);
      socket.write(answer.slice(0, 20));
      setImmediate(() => socket.write(answer.slice(20)));
    }
  });
  const capture = new EngineCapture(engine.url, { take: true });
  tt.teardown(() => capture.close());
  const first = capture.messages('chunked-1', 'a');
  const second = capture.messages('chunked-2', 'a');
  tt.match((await first)?.messages[0]?.text, /Call-ID: chunked-1\r\n/, 'the first call handed over before the response is whole');
  later!();
  tt.match((await second)?.messages[0]?.text, /Call-ID: chunked-2\r\n/, 'the second when its line is');
  const [x, y] = await Promise.all([capture.messages('len-1', 'a'), capture.messages('len-2', 'b')]);
  tt.match(x?.messages[0]?.text, /Call-ID: len-1\r\n/, 'Content-Length framing');
  tt.match(y?.messages[0]?.text, /Call-ID: len-2\r\n/);
  tt.equal(engine.chunks.length, 2, 'two requests on one connection');
  tt.match(engine.chunks[0], /^GET \/captures\?take=1&id=chunked-1&id=chunked-2 HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/, 'with the Host header');
});

t.test('a connection that breaks in the middle of a response: the reads not answered yet go again on a new one', async (tt) => {
  const engine = await rawEngine(tt, (socket, data, connection) => {
    const ids = idsOf(/GET (\S+) HTTP\/1\.1/.exec(data)![1]!);
    const body = ids.map(captureLine).join('');
    // The first connection sends the first call's line of a longer body and goes away.
    if (connection === 1) socket.end(withLength(body).slice(0, -(body.length - captureLine(ids[0]!).length)));
    else socket.write(withLength(body));
  });
  const capture = new EngineCapture(engine.url, { take: true });
  tt.teardown(() => capture.close());
  const [first, second] = await Promise.all([capture.messages('c1', 'a'), capture.messages('c2', 'a')]);
  tt.match(first?.messages[0]?.text, /Call-ID: c1/);
  tt.match(second?.messages[0]?.text, /Call-ID: c2/, 'the second read answered on the next connection');
  tt.same(engine.chunks.map((c) => idsOf(/GET (\S+) HTTP/.exec(c)![1]!)), [['c1', 'c2'], ['c2']], 'only the read not answered is sent again');
});

t.test('a response that is not HTTP fails the reads on that connection, without a retry', async (tt) => {
  const engine = await rawEngine(tt, (socket) => socket.write('SSH-2.0-OpenSSH\r\n\r\n'));
  const capture = new EngineCapture(engine.url, { take: true });
  tt.teardown(() => capture.close());
  await tt.rejects(capture.messages('x', 'a'), /engine capture: the engine sent something other than an HTTP\/1\.1 response: "SSH-2\.0-OpenSSH"/);
  tt.equal(engine.chunks.length, 1, 'sent once');
});

t.test('a capture URL that is not http is refused naming it', async (tt) => {
  tt.throws(() => new EngineCapture('not a url'), /engine capture URL "not a url" is not a URL/);
  tt.throws(() => new EngineCapture('ftp://127.0.0.1:21'), /ftp:\/\/127\.0\.0\.1:21: expected http:\/\/ or https:\/\//);
});
