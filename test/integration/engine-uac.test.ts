// The engine with an unmodified drachtio-srf application acting as UAC (srf.createUAC) or as a
// proxy (srf.proxyRequest), towards SIPp UASes. Each behaviour runs over UDP and over TCP.

import t from 'tap';
import { engineSuite, expectSippSuccess, TRANSPORTS } from '../support/engine-harness';
import { sdp, sdpDirection } from '../support/sdp';
import { received, runSipp, sippHeader, withSipp, type SipTransport, type SippResult } from '../support/sipp';
import { destroyDialog, proxyRequest, sipStatusOf, type ProxyResult, type SrfRequest, type SrfResponse } from '../support/srf';
import { deferred, withTimeout } from '../support/wait';

const suite = engineSuite(t);
const target = (port: number, transport: SipTransport): string => `sip:callee@127.0.0.1:${port};transport=${transport}`;

for (const transport of TRANSPORTS) {
  suite.test(`createUAC calls a SIPp UAS; the app hangs up [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const result = await withSipp({ scenario: 'uas-answer', transport }, async (uas) => {
      const dialog = await srf.createUAC(target(uas.localPort, transport), {
        localSdp: sdp({ origin: 'app-uac' }),
        headers: { 'X-Test-Header': 'from-app' },
      });
      tt.match(dialog.remote.sdp, /o=sippuas /, 'the dialog holds the callee\'s SDP');
      tt.equal(dialog.type, 'uac', 'a uac dialog');
      const bye = await destroyDialog(dialog);
      tt.equal(bye.method, 'BYE', 'destroy() sent a BYE');
    });
    expectSippSuccess(tt, result);
    const invite = received(result, { method: 'INVITE' })[0];
    tt.equal(invite && sippHeader(invite, 'X-Test-Header'), 'from-app', 'the callee got the app\'s header');
    tt.match(invite?.body ?? '', /o=app-uac /, 'the callee got the app\'s SDP');
  });

  suite.test(`createUAC; the callee hangs up and the dialog emits 'destroy' [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const result = await withSipp({ scenario: 'uas-answer-then-bye', transport, holdMs: 100 }, async (uas) => {
      const dialog = await srf.createUAC(target(uas.localPort, transport), { localSdp: sdp() });
      const destroyed = deferred<SrfRequest>();
      dialog.on('destroy', (bye) => destroyed.resolve(bye));
      const bye = await withTimeout(destroyed.promise, 5000, 'the callee\'s BYE at the app');
      tt.equal(bye.method, 'BYE', 'the app saw the callee\'s BYE');
    });
    expectSippSuccess(tt, result);
  });

  suite.test(`createUAC without an offer (late offer): srf answers in the ACK [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const result = await withSipp({ scenario: 'uas-answer', transport }, async (uas) => {
      const dialog = await srf.createUAC(target(uas.localPort, transport), {});
      tt.match(dialog.remote.sdp, /o=sippuas /, 'the offer came in the 200');
      await destroyDialog(dialog);
    });
    expectSippSuccess(tt, result);
    tt.equal(received(result, { method: 'INVITE' })[0]?.body ?? '', '', 'the INVITE carried no SDP');
    tt.equal(sdpDirection(received(result, { method: 'ACK' })[0]?.body), 'recvonly', 'the ACK carried srf\'s answer (the offer turned recvonly)');
  });

  suite.test(`dialog.modify() sends a re-INVITE; the callee's answer comes back [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const result = await withSipp({ scenario: 'uas-reinvite', transport }, async (uas) => {
      const dialog = await srf.createUAC(target(uas.localPort, transport), { localSdp: sdp() });
      const answer = await dialog.modify(sdp({ version: 2, direction: 'sendonly' }));
      tt.equal(sdpDirection(answer), 'recvonly', 'modify() resolved with the callee\'s recvonly answer');
      tt.equal(sdpDirection(dialog.remote.sdp), 'recvonly', 'the dialog keeps the new remote SDP');
      await destroyDialog(dialog);
    });
    expectSippSuccess(tt, result);
    const invites = received(result, { method: 'INVITE' });
    tt.equal(invites.length, 2, 'the callee got the INVITE and the re-INVITE');
    tt.equal(sdpDirection(invites[1]?.body), 'sendonly', 'the re-INVITE offered sendonly');
  });

  suite.test(`createUAC PRACKs a reliable 183 [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const provisional: number[] = [];
    const result = await withSipp({ scenario: 'uas-prack', transport }, async (uas) => {
      const dialog = await srf.createUAC(target(uas.localPort, transport), { localSdp: sdp() }, {
        cbProvisional: (res: SrfResponse) => { provisional.push(res.status); },
      });
      tt.ok(provisional.includes(183), `the app saw the 183 (saw ${provisional.join(', ') || 'nothing'})`);
      await destroyDialog(dialog);
    });
    expectSippSuccess(tt, result);
    const prack = received(result, { method: 'PRACK' })[0];
    tt.match(prack ? sippHeader(prack, 'RAck') ?? '' : '', /^1 \d+ INVITE$/, 'the PRACK acknowledges RSeq 1');
    tt.ok(prack?.headers.some(([name]) => name === 'RAck'),
      `the PRACK names RAck canonically, as drachtio-server does (got: ${prack?.headers.map(([n]) => n).join(', ')})`);
  });

  suite.test(`createUAC rejected with 486 rejects with the SIP status [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const result = await withSipp({ scenario: 'uas-reject-486', transport }, async (uas) => {
      const outcome = await srf.createUAC(target(uas.localPort, transport), { localSdp: sdp() }).then(
        () => undefined,
        (err: unknown) => err,
      );
      tt.equal(sipStatusOf(outcome), 486, 'createUAC rejected with status 486', { error: String(outcome) });
    });
    expectSippSuccess(tt, result);
  });

  suite.test(`createUAC cancelled while ringing rejects with 487 [${transport}]`, async (tt, ctx) => {
    const { srf } = await ctx.connect();
    const result = await withSipp({ scenario: 'uas-ring', transport }, async (uas) => {
      let invite: SrfRequest | undefined;
      const outcome = await srf.createUAC(target(uas.localPort, transport), { localSdp: sdp() }, {
        // drachtio-srf calls cbRequest(err, req); its typings declare cbRequest(req).
        cbRequest: ((_err: unknown, req: SrfRequest) => { invite = req; }) as unknown as (req: SrfRequest) => void,
        cbProvisional: (res: SrfResponse) => {
          if (res.status === 180) invite?.cancel(() => undefined);
        },
      }).then(() => undefined, (err: unknown) => err);
      tt.equal(sipStatusOf(outcome), 487, 'createUAC rejected with status 487', { error: String(outcome) });
    });
    expectSippSuccess(tt, result);
    tt.ok(received(result, { method: 'CANCEL' })[0], 'the callee got the CANCEL');
  });

  suite.test(`srf.proxyRequest proxies a whole call (record-routed) [${transport}]`, async (tt, ctx) => {
    let uacResult: SippResult | undefined;
    const proxied = deferred<ProxyResult>();
    const uasResult = await withSipp({ scenario: 'uas-answer', transport }, async (uas) => {
      await ctx.connect({
        setup: (srf) => srf.invite((req) => {
          proxyRequest(srf, req, target(uas.localPort, transport), { recordRoute: true })
            .then(proxied.resolve, (err: unknown) => proxied.reject(err as Error));
        }),
      });
      uacResult = await runSipp({ scenario: 'uac-call', remote: `127.0.0.1:${suite.engine().sipPort}`, transport, holdMs: 100 });
    });
    if (!uacResult) throw new Error('the SIPp UAC did not run');
    expectSippSuccess(tt, uacResult, 1, 'SIPp UAC');
    expectSippSuccess(tt, uasResult, 1, 'SIPp UAS');
    const outcome = await withTimeout(proxied.promise, 2000, 'proxyRequest to resolve');
    tt.equal(outcome.finalStatus, 200, 'proxyRequest saw the 200');
    tt.equal(outcome.connected, true, 'proxyRequest reports connected');
    const invite = received(uasResult, { method: 'INVITE' })[0];
    tt.ok(invite && sippHeader(invite, 'Record-Route'), 'the callee saw a Record-Route');
    tt.ok(received(uasResult, { method: 'BYE' })[0], 'the BYE reached the callee through the engine');
    tt.match(received(uacResult, { status: 200, cseqMethod: 'INVITE' })[0]?.body ?? '', /o=sippuas /, 'the caller got the callee\'s SDP');
  });
}

suite.settles();
