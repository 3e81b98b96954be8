// srf-adapter: slimDialog against drachtio-srf's own Dialog (built the way createUAC builds it,
// from parsed SIP messages), detached strings, and write coalescing on a real TCP socket.

import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createServer, connect, type Socket } from 'node:net';
import Srf from 'drachtio-srf';
import t from 'tap';
import { coalesceWrites, detached, modifyDialog, slimDialog, type SrfDialog } from '../../../lib/b2bua/srf-adapter';

const CALL_ID = 'b-leg-1@127.0.0.2';
const DIALOG_ID = `${CALL_ID};from-tag=ours-1`;
const SDP_OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n';
const SDP_ANSWER = 'v=0\r\no=- 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40002 RTP/AVP 8\r\n';

function sip(startLine: string, headers: string[], body = ''): string {
  return `${startLine}\r\n${[...headers, `Content-Length: ${Buffer.byteLength(body)}`].join('\r\n')}\r\n\r\n${body}`;
}

const INVITE = sip(
  'INVITE sip:6002@127.0.0.1:5060 SIP/2.0',
  [
    'Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bK-1',
    'From: "6001" <sip:6001@127.0.0.1>;tag=ours-1',
    'To: <sip:6002@127.0.0.1>',
    `Call-ID: ${CALL_ID}`,
    'CSeq: 1 INVITE',
    'Contact: <sip:127.0.0.2:5080>',
    'Content-Type: application/sdp',
  ],
  SDP_OFFER,
);

const OK = sip(
  'SIP/2.0 200 OK',
  [
    'Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bK-1',
    'From: "6001" <sip:6001@127.0.0.1>;tag=ours-1',
    'To: <sip:6002@127.0.0.1>;tag=theirs-1',
    `Call-ID: ${CALL_ID}`,
    'CSeq: 1 INVITE',
    'Contact: <sip:6002@127.0.0.1:61000>',
    'Content-Type: application/sdp',
  ],
  SDP_ANSWER,
);

interface AgentCall {
  method: string;
  stackDialogId: string;
  _socket: unknown;
  headers: Record<string, string>;
}

/** Stands in for drachtio-srf's agent: records the requests a Dialog sends. */
class FakeAgent {
  readonly requests: AgentCall[] = [];
  readonly callbacks: Array<(err: unknown, req: unknown) => void> = [];
  request(opts: AgentCall, callback: (err: unknown, req: unknown) => void): void {
    this.requests.push(opts);
    this.callbacks.push(callback);
  }
}

// drachtio-srf's classes at runtime (its typings describe them only as what applications receive).
const load = createRequire(__filename);
type Ctor = new (...args: unknown[]) => Record<string, unknown>;
const srfStatics = Srf as unknown as { SipMessage: Ctor; SipRequest: Ctor; SipResponse: Ctor };
const SipMessage = srfStatics.SipMessage;
const SipRequest = srfStatics.SipRequest;
const SipResponse = srfStatics.SipResponse;
const Dialog = load('drachtio-srf/lib/dialog') as Ctor;

interface Built {
  srf: Srf;
  agent: FakeAgent;
  socket: object;
  dialog: SrfDialog;
}

/** A UAC dialog as Srf#createUAC makes it: the INVITE as sent, the 200 as received. */
function buildUacDialog(): Built {
  const srf = new Srf();
  const agent = new FakeAgent();
  const socket = { fake: 'socket' };
  const req = new SipRequest(new SipMessage(INVITE), { source: 'application', transactionId: 'txn-1' });
  req.socket = socket;
  req.agent = agent;
  const res = new SipResponse(agent);
  res.msg = new SipMessage(OK);
  res.meta = { source: 'network', address: '127.0.0.1', port: '5060', protocol: 'udp', transactionId: 'txn-1', dialogId: DIALOG_ID };
  const dialog = new Dialog(srf, 'uac', { req, res }) as unknown as SrfDialog;
  (srf as unknown as { addDialog(d: unknown): void }).addDialog(dialog);
  return { srf, agent, socket, dialog };
}

function registry(srf: Srf): { findDialogById(id: string): unknown } {
  return srf as unknown as { findDialogById(id: string): unknown };
}

t.test('slimDialog keeps what an INVITE dialog reads after set-up and drops the messages', async (tt) => {
  const { srf, agent, socket, dialog } = buildUacDialog();
  const d = dialog as unknown as Record<string, unknown> & { id: string; dialogType: string; socket: unknown; toJSON(): unknown };
  const before = JSON.parse(JSON.stringify(d.toJSON())) as unknown;
  tt.equal(d.id, DIALOG_ID);
  slimDialog(srf, dialog);
  tt.equal(d.id, DIALOG_ID, 'same id');
  tt.equal(d.dialogType, 'INVITE', 'still an INVITE dialog');
  tt.equal(d.socket, socket, 'same socket');
  tt.same(JSON.parse(JSON.stringify(d.toJSON())), before, 'sip, local, remote unchanged');
  tt.same(Object.keys(d.req as object).sort(), ['method', 'socket'], 'req holds two fields, no parsed message');
  tt.same(Object.keys(d.res as object), ['stackDialogId'], 'res holds the dialog id only');
  tt.equal(registry(srf).findDialogById(DIALOG_ID), dialog, 'still registered under its id');
  tt.equal(dialog.remote.sdp, SDP_ANSWER);
  tt.equal(dialog.local.sdp, SDP_OFFER);

  // BYE from our side still works: the request goes out on the dialog's socket, with its id.
  const bye = dialog.destroy() as unknown as Promise<unknown>;
  tt.equal(agent.requests.length, 1);
  tt.match(agent.requests[0], { method: 'BYE', stackDialogId: DIALOG_ID, _socket: socket });
  const sent = new SipRequest(new SipMessage(sip('BYE sip:6002@127.0.0.1:61000 SIP/2.0', [`Call-ID: ${CALL_ID}`, 'CSeq: 2 BYE'])), { source: 'application' });
  agent.callbacks[0]?.(null, sent);
  (sent as unknown as { emit(e: string): void }).emit('response');
  await bye;
  tt.equal(registry(srf).findDialogById(DIALOG_ID), undefined, 'removed once the BYE is answered');
});

t.test('slimDialog: an incoming BYE and a re-INVITE are still handled', async (tt) => {
  const { srf, dialog } = buildUacDialog();
  slimDialog(srf, dialog);
  const d = dialog as unknown as { handle(req: unknown, res: unknown): void };
  const reinvite = new SipRequest(new SipMessage(sip('INVITE sip:127.0.0.2:5080 SIP/2.0', [`Call-ID: ${CALL_ID}`, 'CSeq: 5 INVITE', 'Content-Type: application/sdp'], SDP_OFFER.replace('40000', '40010'))), {
    source: 'network',
  });
  const modified = once(dialog, 'modify');
  d.handle(reinvite, {});
  const [req] = (await modified) as [{ body: string }];
  tt.match(req.body, /40010/, 'modify emitted with the re-INVITE');
  tt.match(dialog.remote.sdp, /40010/, 'remote SDP updated');

  const sent: number[] = [];
  const byeRes = { send: (status: number) => sent.push(status) };
  const byeReq = new SipRequest(new SipMessage(sip('BYE sip:127.0.0.2:5080 SIP/2.0', [`Call-ID: ${CALL_ID}`, 'CSeq: 6 BYE'])), { source: 'network' });
  const destroyed = once(dialog, 'destroy');
  d.handle(byeReq, byeRes);
  await destroyed;
  tt.same(sent, [200], 'the BYE is answered');
  tt.equal(registry(srf).findDialogById(DIALOG_ID), undefined, 'and the dialog unregistered');
});

t.test('modifyDialog: a re-INVITE answered with a failure does not block the next one', async (tt) => {
  const { srf, agent, dialog } = buildUacDialog();
  slimDialog(srf, dialog);
  /** answers the agent's latest request with `status` */
  const answer = (status: number): void => {
    const sent = new SipRequest(new SipMessage(sip('INVITE sip:6002@127.0.0.1:61000 SIP/2.0', [`Call-ID: ${CALL_ID}`, 'CSeq: 3 INVITE'])), { source: 'application' });
    agent.callbacks.at(-1)?.(null, sent);
    (sent as unknown as { emit(e: string, res: unknown, ack: () => void): void }).emit('response', { status, reason: status === 200 ? 'OK' : 'Not Acceptable Here', body: SDP_ANSWER }, () => undefined);
  };
  const first = modifyDialog(dialog, SDP_OFFER, { 'Session-Expires': '90;refresher=uac' });
  tt.equal(agent.requests.length, 1, 'the first re-INVITE went out');
  tt.match(agent.requests[0], { method: 'INVITE', headers: { 'Session-Expires': '90;refresher=uac' } }, 'with the headers given');
  answer(488);
  const failure = await first.then(() => undefined, (err: unknown) => err as { status?: number });
  tt.equal(failure?.status, 488, 'a failure rejects with its status');
  const second = modifyDialog(dialog, SDP_OFFER);
  tt.equal(agent.requests.length, 2, 'the next re-INVITE was let out (drachtio-srf alone would queue it for ever)');
  answer(200);
  tt.equal(await second, SDP_ANSWER, 'and completes');
});

t.test('slimDialog on a dialog already gone from the registry leaves the registry alone', async (tt) => {
  const { srf, dialog } = buildUacDialog();
  (srf as unknown as { removeDialog(d: unknown): void }).removeDialog(dialog);
  slimDialog(srf, dialog);
  tt.equal(registry(srf).findDialogById(DIALOG_ID), undefined, 'not re-added');
  tt.equal((dialog as unknown as { id: string }).id, DIALOG_ID);
});

t.test('detached returns an equal string', async (tt) => {
  const raw = `${'x'.repeat(500)}Call-ID: abc-123-def-456@127.0.0.1\r\n${'y'.repeat(500)}`;
  const slice = raw.slice(509, 534);
  tt.equal(detached(slice), slice);
  tt.equal(detached(''), '');
  tt.equal(detached('Zoë 😀'), 'Zoë 😀', 'UTF-8 survives');
});

t.test('coalesceWrites: writes made while handling one chunk leave together, in order', async (tt) => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const client = connect(port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [Socket];
  tt.teardown(() => {
    client.destroy();
    accepted.destroy();
    server.close();
  });
  coalesceWrites(accepted);
  coalesceWrites(accepted);
  const during: Array<{ corked: number; buffered: number }> = [];
  accepted.on('data', () => {
    accepted.write('200 to the BYE|');
    accepted.write('BYE to the other leg|');
    // Uncorked, each write would have gone out at once (nothing buffered).
    during.push({ corked: accepted.writableCorked, buffered: accepted.writableLength });
  });
  const chunks: string[] = [];
  client.on('data', (c: Buffer) => chunks.push(c.toString()));
  client.write('BYE');
  await once(client, 'data');
  await new Promise((resolve) => setImmediate(resolve));
  tt.same(during, [{ corked: 1, buffered: 36 }], 'held back while the chunk is handled');
  tt.same(chunks, ['200 to the BYE|BYE to the other leg|'], 'then sent together, in order');
  tt.equal(accepted.writableCorked, 0, 'uncorked again');
  tt.equal(accepted.listenerCount('data'), 2, 'one coalescing listener however often it is asked');
  coalesceWrites(undefined);
  tt.pass('no socket: nothing to do');
});
