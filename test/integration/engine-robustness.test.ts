// Bad input and the engine's own answers: malformed and oversized requests (RFC 3261 8.2, 18.1.1,
// RFC 4475), Max-Forwards (483), merged requests (482, 8.2.2.2), TCP peers that send garbage or
// stall, a wire client that sends garbage; and what it offers operators: CDR events and the
// per-call SIP capture.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { engineSuite, expectSippSuccess } from '../support/engine-harness';
import { statusCount } from '../support/engine-process';
import { runSipp } from '../support/sipp';
import { waitUntil, withTimeout } from '../support/wait';

const suite = engineSuite(t, { extraArgs: ['--capture', '--tcp-stall-timeout', '1', '--max-message-size', '4096'] });

/** A raw UDP SIP peer on a free port, collecting what it receives. */
async function udpPeer(): Promise<{ sock: UdpSocket; port: number; got: string[]; close(): void }> {
  const sock = createSocket('udp4');
  const got: string[] = [];
  sock.on('message', (m) => got.push(m.toString('utf8')));
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { sock, port: sock.address().port, got, close: () => sock.close() };
}

function request(method: string, port: number, opts: { branch: string; callId: string; cseq?: string; maxForwards?: string; body?: string; extra?: string }): string {
  const body = opts.body ?? '';
  return [
    `${method} sip:service@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=${opts.branch};rport`,
    `From: <sip:tester@127.0.0.1>;tag=ft-${opts.callId}`,
    'To: <sip:service@127.0.0.1>',
    `Call-ID: ${opts.callId}`,
    `CSeq: ${opts.cseq ?? `1 ${method}`}`,
    `Max-Forwards: ${opts.maxForwards ?? '70'}`,
    `Contact: <sip:tester@127.0.0.1:${port}>`,
    ...(opts.extra ? [opts.extra] : []),
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
}

function statusOf(text: string | undefined): number | undefined {
  const m = /^SIP\/2\.0 (\d{3})/.exec(text ?? '');
  return m ? Number(m[1]) : undefined;
}

suite.test('RFC 4475 / 8.2: a malformed request gets 400 naming the fault; garbage is dropped; the engine lives on', async (tt, ctx) => {
  const peer = await udpPeer();
  try {
    const target = ctx.engine.sipPort;
    const before = statusCount(await ctx.engine.status(), 'rejected');
    // CSeq method differs from the request method (RFC 4475 3.1.2.17 mismatch01)
    peer.sock.send(request('OPTIONS', peer.port, { branch: 'z9hG4bKbad1', callId: 'bad-1', cseq: '1 INVITE' }), target, '127.0.0.1');
    await waitUntil(() => peer.got.length, (n) => n >= 1, { description: 'a response to the malformed request' });
    tt.equal(statusOf(peer.got[0]), 400, 'answered 400');
    tt.match(peer.got[0] ?? '', /^Call-ID: bad-1\r$/m, 'the 400 belongs to that request');
    peer.sock.send(Buffer.from('\x00\x01garbage that is no SIP at all\r\n\r\n'), target, '127.0.0.1');
    await waitUntil(async () => statusCount(await ctx.engine.status(), 'rejected'), (n) => n >= before + 2, { description: 'both inputs counted as rejected' });
    tt.equal(peer.got.length, 1, 'garbage gets no answer');
    await waitUntil(() => ctx.engine.logTail(40), (text) => /malformed message dropped/.test(text), { description: 'a log line saying it was dropped' });
    tt.pass('a log line says the garbage was dropped');
  } finally {
    peer.close();
  }
});

suite.test('RFC 3261 18.1.1: a request over the size limit gets 513', async (tt, ctx) => {
  const peer = await udpPeer();
  try {
    const body = `v=0\r\n${'a=x-padding:0123456789abcdef\r\n'.repeat(200)}`;
    peer.sock.send(request('OPTIONS', peer.port, { branch: 'z9hG4bKbig1', callId: 'big-1', body, extra: 'Content-Type: application/sdp' }), ctx.engine.sipPort, '127.0.0.1');
    await waitUntil(() => peer.got.length, (n) => n >= 1, { description: 'a response to the oversized request' });
    tt.equal(statusOf(peer.got[0]), 513, 'answered 513 Message Too Large');
  } finally {
    peer.close();
  }
});

suite.test('RFC 3261 16.3: Max-Forwards 0 gets 483 Too Many Hops', async (tt, ctx) => {
  const peer = await udpPeer();
  try {
    peer.sock.send(request('OPTIONS', peer.port, { branch: 'z9hG4bKmf0', callId: 'mf-0', maxForwards: '0' }), ctx.engine.sipPort, '127.0.0.1');
    await waitUntil(() => peer.got.length, (n) => n >= 1, { description: 'a response' });
    tt.equal(statusOf(peer.got[0]), 483);
  } finally {
    peer.close();
  }
});

suite.test('RFC 3261 8.2.2.2: a merged request (same From tag, Call-ID, CSeq, other branch) gets 482', async (tt, ctx) => {
  let invites = 0;
  await ctx.connect({
    setup: (srf) =>
      srf.invite((_req, res) => {
        invites++;
        setTimeout(() => res.send(486), 300);
      }),
  });
  const peer = await udpPeer();
  try {
    const callId = 'merged-1';
    peer.sock.send(request('INVITE', peer.port, { branch: 'z9hG4bKm1', callId }), ctx.engine.sipPort, '127.0.0.1');
    await waitUntil(() => invites, (n) => n === 1, { description: 'the first INVITE reached the application' });
    peer.sock.send(request('INVITE', peer.port, { branch: 'z9hG4bKm2', callId }), ctx.engine.sipPort, '127.0.0.1');
    await waitUntil(() => peer.got.map(statusOf), (s) => s.includes(482) && s.includes(486), { description: '482 for the copy and 486 for the original' });
    tt.equal(invites, 1, 'the application saw the INVITE once');
    const busy = peer.got.find((m) => statusOf(m) === 486) ?? '';
    const toTag = /^To: .*;tag=([^;\r]+)/m.exec(busy)?.[1] ?? '';
    // ACK the 486 so the transaction ends (17.1.1.3)
    const ack = request('ACK', peer.port, { branch: 'z9hG4bKm1', callId, cseq: '1 ACK' }).replace('To: <sip:service@127.0.0.1>', `To: <sip:service@127.0.0.1>;tag=${toTag}`);
    peer.sock.send(ack, ctx.engine.sipPort, '127.0.0.1');
  } finally {
    setTimeout(() => peer.close(), 100);
  }
});

async function tcpPeer(port: number): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1' });
  await once(s, 'connect');
  return s;
}

suite.test('RFC 3261 18.3: a TCP peer sending garbage is cut off; another TCP peer is served meanwhile', async (tt, ctx) => {
  const bad = await tcpPeer(ctx.engine.sipPort);
  const good = await tcpPeer(ctx.engine.sipPort);
  try {
    const closed = once(bad, 'close');
    bad.write('THIS IS NOT SIP\r\nNor: a header\r\n\r\n');
    await withTimeout(closed, 5000, 'the garbage connection to close');
    tt.pass('the engine closed the garbage connection');
    let answer = '';
    good.on('data', (b: Buffer) => (answer += b.toString()));
    good.write(request('OPTIONS', good.localPort ?? 0, { branch: 'z9hG4bKtcp1', callId: 'tcp-ok', maxForwards: '0' }).replace('SIP/2.0/UDP', 'SIP/2.0/TCP'));
    await waitUntil(() => answer, (a) => /^SIP\/2\.0 \d{3}/.test(a), { description: 'an answer on the good connection' });
    tt.equal(statusOf(answer), 483, 'the other connection still gets answers');
  } finally {
    bad.destroy();
    good.destroy();
  }
});

suite.test('a TCP peer that stalls inside a message is cut off after --tcp-stall-timeout', async (tt, ctx) => {
  const slow = await tcpPeer(ctx.engine.sipPort);
  try {
    const closed = once(slow, 'close');
    slow.write('OPTIONS sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKslow\r\n');
    await withTimeout(closed, 6000, 'the stalled connection to close');
    tt.pass('closed');
    await waitUntil(() => ctx.engine.logTail(20), (text) => /stalled/.test(text), { description: 'a log line naming the stall' });
    tt.pass('a log line names the stall');
  } finally {
    slow.destroy();
  }
});

suite.test('a wire client sending garbage is disconnected with a log line; connected applications are not', async (tt, ctx) => {
  await ctx.connect({ setup: (srf) => srf.invite((_req, res) => res.send(486)) });
  const raw = connect({ port: ctx.engine.wirePort, host: '127.0.0.1' });
  await once(raw, 'connect');
  const closed = once(raw, 'close');
  raw.write('this is not#the drachtio protocol');
  await withTimeout(closed, 5000, 'the wire connection to close');
  await waitUntil(() => ctx.engine.logTail(20), (text) => /garbage on wire connection/.test(text), { description: 'a log line about the wire garbage' });
  tt.pass('logged');
  tt.equal(statusCount(await ctx.engine.status(), 'applications'), 1, 'the real application is still connected');
});

suite.test('cdr:attempt, cdr:start and cdr:stop reach an application that routes them; the call is captured, read one or many at a time', async (tt, ctx) => {
  const events: string[] = [];
  let callId = '';
  await ctx.connect({
    setup: (srf) => {
      srf.on('cdr:attempt', (source: string) => events.push(`attempt:${source}`));
      srf.on('cdr:start', (source: string, _time: string, role: string) => events.push(`start:${source}:${role}`));
      srf.on('cdr:stop', (source: string, _time: string, reason: string) => events.push(`stop:${source}:${reason}`));
      srf.invite((req, res) => {
        callId = req.get('Call-ID');
        srf.createUAS(req, res, { localSdp: req.body }).catch(() => undefined);
      });
    },
  });
  const result = await runSipp({ scenario: 'uac-call', remote: `127.0.0.1:${ctx.engine.sipPort}`, transport: 'udp', holdMs: 50 });
  expectSippSuccess(tt, result);
  await waitUntil(() => events.length, (n) => n >= 3, { description: 'three CDR events' });
  tt.same(events, ['attempt:network', 'start:application:uas', 'stop:network:normal-release'], 'attempt, start (uas), stop (normal release)');
  const res = await fetch(`http://127.0.0.1:${ctx.engine.statusPort}/capture/${encodeURIComponent(callId)}`);
  tt.equal(res.status, 200, 'capture found for the Call-ID');
  const capture = (await res.json()) as { messages: { dir: string; text: string; t: number }[] };
  const lines = capture.messages.map((m) => `${m.dir} ${m.text.split('\r\n')[0]}`);
  tt.ok(lines.includes('in INVITE sip:service@127.0.0.1:' + ctx.engine.sipPort + ' SIP/2.0') || lines.some((l) => l.startsWith('in INVITE ')), 'the INVITE in');
  tt.ok(lines.some((l) => l === 'out SIP/2.0 200 OK'), 'the 200 out');
  tt.ok(lines.some((l) => l.startsWith('in BYE ')), 'the BYE in');
  tt.ok(capture.messages.every((m, i, all) => i === 0 || m.t >= all[i - 1]!.t), 'in time order with timestamps');

  // Many calls in one request, one JSON line each, as the B2BUA's call log reads them; take=1 hands them over.
  const base = `http://127.0.0.1:${ctx.engine.statusPort}`;
  const many = await fetch(`${base}/captures?take=1&id=${encodeURIComponent(callId)}&id=no-such-call`);
  tt.equal(many.status, 200);
  tt.match(many.headers.get('content-type'), /^application\/x-ndjson/);
  const lines2 = (await many.text()).split('\n');
  tt.equal(lines2.length, 3, 'one line per Call-ID asked for, each ending in a newline');
  tt.same(JSON.parse(lines2[1]!), { callId: 'no-such-call', missing: true }, 'a call without a capture says so');
  const taken = JSON.parse(lines2[0]!) as { callId: string; messages: unknown[]; truncated: boolean };
  tt.equal(taken.callId, callId);
  tt.equal(taken.messages.length, capture.messages.length, 'the same messages as /capture/<Call-ID>');
  tt.equal((await fetch(`${base}/capture/${encodeURIComponent(callId)}`)).status, 404, 'taken: the engine keeps it no longer');
  const badId = await fetch(`${base}/capture/%E0%A4%A`);
  tt.equal(badId.status, 400, 'a Call-ID that is not valid percent-encoding gets a 400, and the engine stays up');
  tt.match(((await badId.json()) as { error: string }).error, /not a valid percent-encoding/);
  for (const [query, reason] of [
    ['', /name at least one call/],
    ['?id=x&take=yes', /take is 0 or 1, got "yes"/],
    [`?${Array.from({ length: 501 }, (_, i) => `id=${i}`).join('&')}`, /at most 500 Call-IDs per request, got 501/],
  ] as const) {
    const bad = await fetch(`${base}/captures${query}`);
    tt.equal(bad.status, 400, `400 for /captures${query.slice(0, 20)}`);
    tt.match(((await bad.json()) as { error: string }).error, reason, 'with the reason');
  }
});

suite.settles();
