// The engine with an unmodified drachtio-srf application acting as UAS, called by SIPp.
// Each behaviour runs over UDP and over TCP.

import t from 'tap';
import { engineSuite, expectSippSuccess, TRANSPORTS } from '../support/engine-harness';
import { sdp, sdpDirection } from '../support/sdp';
import { received, runSipp, sippHeader } from '../support/sipp';
import { destroyDialog, dialogRequest, onMethod, sendReliableProvisional, type SrfDialog, type SrfRequest } from '../support/srf';
import { deferred, withTimeout } from '../support/wait';

const suite = engineSuite(t);
const remote = (): string => `127.0.0.1:${suite.engine().sipPort}`;

for (const transport of TRANSPORTS) {
  suite.test(`app rejects an INVITE with 486 [${transport}]`, async (tt, ctx) => {
    const seen = deferred<SrfRequest>();
    await ctx.connect({
      setup: (srf) => srf.invite((req, res) => {
        seen.resolve(req);
        res.send(486, { headers: { 'X-Rejected-By': 'test-app' } });
      }),
    });
    const result = await runSipp({ scenario: 'uac-reject', remote: remote(), transport, keys: { status: '486' } });
    expectSippSuccess(tt, result);
    const req = await withTimeout(seen.promise, 1000, 'the INVITE at the app');
    tt.equal(req.get('X-Test-Scenario'), 'uac-reject', 'the app saw the INVITE with its custom header');
    tt.match(req.body, /o=sipp /, 'the app saw the caller\'s SDP');
    const final = received(result, { status: 486 })[0];
    tt.ok(final, 'SIPp received the 486');
    tt.equal(final && sippHeader(final, 'X-Rejected-By'), 'test-app', 'the 486 carries the header the app set');
  });

  suite.test(`createUAS answers; the caller hangs up [${transport}]`, async (tt, ctx) => {
    const dialog = deferred<SrfDialog>();
    const destroyed = deferred<string>();
    await ctx.connect({
      setup: (srf) => srf.invite(async (req, res) => {
        try {
          const uas = await srf.createUAS(req, res, { localSdp: sdp({ origin: 'app-uas' }), headers: { 'X-App': 'uas' } });
          uas.on('destroy', () => destroyed.resolve('destroy'));
          dialog.resolve(uas);
        } catch (err) {
          dialog.reject(err as Error);
        }
      }),
    });
    const result = await runSipp({ scenario: 'uac-call', remote: remote(), transport, holdMs: 100 });
    expectSippSuccess(tt, result);
    const uas = await withTimeout(dialog.promise, 1000, 'createUAS');
    tt.match(uas.remote.sdp, /o=sipp /, 'the dialog holds the caller\'s SDP');
    await withTimeout(destroyed.promise, 2000, 'the dialog destroy event after the caller\'s BYE');
    tt.pass('the app saw the BYE as a destroy event');
    const ok = received(result, { status: 200, cseqMethod: 'INVITE' })[0];
    tt.match(ok?.body ?? '', /o=app-uas /, 'SIPp got the app\'s SDP in the 200');
    tt.equal(ok && sippHeader(ok, 'X-App'), 'uas', 'SIPp got the app\'s header in the 200');
  });

  suite.test(`createUAS answers; the app hangs up with dialog.destroy() [${transport}]`, async (tt, ctx) => {
    const byeSent = deferred<SrfRequest>();
    await ctx.connect({
      setup: (srf) => srf.invite(async (req, res) => {
        try {
          const uas = await srf.createUAS(req, res, { localSdp: sdp() });
          uas.on('ack', () => {
            destroyDialog(uas, { headers: { 'X-Hangup': 'app' } }).then(byeSent.resolve, (err: unknown) => byeSent.reject(err as Error));
          });
        } catch (err) {
          byeSent.reject(err as Error);
        }
      }),
    });
    const result = await runSipp({ scenario: 'uac-call-expect-bye', remote: remote(), transport });
    expectSippSuccess(tt, result);
    const bye = await withTimeout(byeSent.promise, 2000, 'dialog.destroy() to resolve');
    tt.equal(bye.method, 'BYE', 'destroy() resolved with the BYE it sent');
    const byeAtSipp = received(result, { method: 'BYE' })[0];
    tt.ok(byeAtSipp, 'SIPp received the BYE');
    tt.equal(byeAtSipp && sippHeader(byeAtSipp, 'X-Hangup'), 'app', 'the BYE carries the app\'s header');
  });

  suite.test(`late offer: 200 carries the offer, the ACK the answer [${transport}]`, async (tt, ctx) => {
    const ackBody = deferred<string>();
    const offerSeen = deferred<string>();
    await ctx.connect({
      setup: (srf) => srf.invite(async (req, res) => {
        offerSeen.resolve(req.body);
        try {
          const uas = await srf.createUAS(req, res, { localSdp: sdp({ origin: 'app-offer' }) });
          uas.on('ack', (ack) => ackBody.resolve(ack.body));
        } catch (err) {
          ackBody.reject(err as Error);
        }
      }),
    });
    const result = await runSipp({ scenario: 'uac-late-offer', remote: remote(), transport, holdMs: 100 });
    expectSippSuccess(tt, result);
    tt.equal((await withTimeout(offerSeen.promise, 1000, 'the INVITE')).trim(), '', 'the INVITE had no SDP');
    tt.match(await withTimeout(ackBody.promise, 2000, 'the ACK at the app'), /o=sippanswer /, 'the app got the answer in the ACK');
    tt.match(received(result, { status: 200, cseqMethod: 'INVITE' })[0]?.body ?? '', /o=app-offer /, 'SIPp got the offer in the 200');
  });

  suite.test(`re-INVITE from the caller reaches dialog 'modify' [${transport}]`, async (tt, ctx) => {
    const offer = deferred<string>();
    await ctx.connect({
      setup: (srf) => srf.invite(async (req, res) => {
        try {
          const uas = await srf.createUAS(req, res, { localSdp: sdp() });
          uas.on('modify', (reinvite, reinviteRes) => {
            offer.resolve(reinvite.body);
            reinviteRes.send(200, { body: sdp({ version: 2, direction: 'recvonly' }) });
          });
        } catch (err) {
          offer.reject(err as Error);
        }
      }),
    });
    const result = await runSipp({ scenario: 'uac-reinvite', remote: remote(), transport, holdMs: 50 });
    expectSippSuccess(tt, result);
    tt.equal(sdpDirection(await withTimeout(offer.promise, 1000, 'the re-INVITE at the app')), 'sendonly', 'the app saw the hold offer');
    const answers = received(result, { status: 200, cseqMethod: 'INVITE' });
    tt.equal(sdpDirection(answers[answers.length - 1]?.body), 'recvonly', 'SIPp got the app\'s recvonly answer');
  });

  suite.test(`re-INVITE from the caller without a 'modify' listener gets the current SDP [${transport}]`, async (tt, ctx) => {
    await ctx.connect({
      setup: (srf) => srf.invite((req, res) => {
        srf.createUAS(req, res, { localSdp: sdp({ origin: 'app-default' }) }).catch(() => undefined);
      }),
    });
    const result = await runSipp({ scenario: 'uac-reinvite', remote: remote(), transport, holdMs: 50 });
    expectSippSuccess(tt, result);
    const answers = received(result, { status: 200, cseqMethod: 'INVITE' });
    tt.equal(answers.length >= 2, true, 'SIPp got a 200 for the INVITE and for the re-INVITE');
    const last = answers[answers.length - 1];
    tt.match(last?.body ?? '', /o=app-default /, 'the re-INVITE was answered with the dialog\'s SDP');
    // drachtio-srf names these headers itself ('Contact', 'Content-Type'); drachtio-server (sofia)
    // writes known headers with their canonical names, and SIPp's header lookup is case-sensitive.
    const names = (last?.headers ?? []).map(([name]) => name);
    tt.ok(names.includes('Contact') && names.includes('Content-Type'),
      `known headers go out with canonical names (got: ${names.join(', ')})`);
  });

  suite.test(`INFO reaches dialog 'info' [${transport}]`, async (tt, ctx) => {
    const info = deferred<SrfRequest>();
    await ctx.connect({
      setup: (srf) => srf.invite(async (req, res) => {
        try {
          const uas = await srf.createUAS(req, res, { localSdp: sdp() });
          uas.on('info', (infoReq, infoRes) => {
            info.resolve(infoReq);
            infoRes.send(200, { headers: { 'X-Info-Result': 'ok' } });
          });
        } catch (err) {
          info.reject(err as Error);
        }
      }),
    });
    const result = await runSipp({ scenario: 'uac-info', remote: remote(), transport, holdMs: 50 });
    expectSippSuccess(tt, result);
    const req = await withTimeout(info.promise, 1000, 'the INFO at the app');
    tt.match(req.get('Content-Type'), /application\/dtmf-relay/, 'INFO content type');
    tt.match(req.body, /Signal=5/, 'INFO body');
    tt.equal(req.get('X-Info-Test'), 'dtmf-5', 'INFO custom header');
    const ok = received(result, { status: 200, cseqMethod: 'INFO' })[0];
    tt.equal(ok && sippHeader(ok, 'X-Info-Result'), 'ok', 'SIPp got the app\'s 200 to the INFO');
  });

  suite.test(`reliable 183 (100rel), PRACK, then 200 [${transport}]`, async (tt, ctx) => {
    const prack = deferred<SrfRequest>();
    const sent183 = deferred<string>();
    await ctx.connect({
      setup: (srf) => srf.invite((req, res) => {
        tt.match(req.get('Supported'), /100rel/, 'the INVITE offers 100rel');
        const answer = sdp({ origin: 'app-early' });
        sendReliableProvisional(res, 183, { body: answer }, (prackReq) => {
          prack.resolve(prackReq);
          // Answer after drachtio-srf's middleware has replied 200 to the PRACK.
          setImmediate(() => {
            srf.createUAS(req, res, { localSdp: answer }).catch(() => undefined);
          });
        }).then((msg) => sent183.resolve(msg.get('RSeq')), (err: unknown) => sent183.reject(err as Error));
      }),
    });
    const result = await runSipp({ scenario: 'uac-prack', remote: remote(), transport, holdMs: 50 });
    expectSippSuccess(tt, result);
    tt.match(await withTimeout(sent183.promise, 1000, 'the 183 echo'), /^\d+$/, 'the 183 as sent carries an RSeq');
    const prackReq = await withTimeout(prack.promise, 1000, 'the PRACK at the app');
    tt.match(prackReq.get('RAck'), /^\d+ 1 INVITE$/, 'the PRACK acknowledges the 183');
    const early = received(result, { status: 183 })[0];
    tt.match(early?.body ?? '', /o=app-early /, 'SIPp got the early SDP');
    tt.ok(early?.headers.some(([name, value]) => name === 'Require' && /100rel/.test(value)),
      `the 183 carries "Require: 100rel" with the canonical header name (got: ${early?.headers.map(([n]) => n).join(', ')})`);
  });

  suite.test(`REFER: app answers 202 and sends a NOTIFY [${transport}]`, async (tt, ctx) => {
    const referTo = deferred<string>();
    const notifyStatus = deferred<number>();
    await ctx.connect({
      setup: (srf) => srf.invite(async (req, res) => {
        try {
          const uas = await srf.createUAS(req, res, { localSdp: sdp() });
          uas.on('refer', (refer, referRes) => {
            referTo.resolve(refer.get('Refer-To'));
            referRes.send(202);
            dialogRequest(uas, {
              method: 'NOTIFY',
              headers: {
                Event: 'refer',
                'Subscription-State': 'terminated;reason=noresource',
                'Content-Type': 'message/sipfrag;version=2.0',
              },
              body: 'SIP/2.0 200 OK\r\n',
            }).then((notifyRes) => notifyStatus.resolve(notifyRes.status), (err: unknown) => notifyStatus.reject(err as Error));
          });
        } catch (err) {
          referTo.reject(err as Error);
        }
      }),
    });
    const result = await runSipp({ scenario: 'uac-refer', remote: remote(), transport, holdMs: 50 });
    expectSippSuccess(tt, result);
    tt.match(await withTimeout(referTo.promise, 1000, 'the REFER at the app'), /transfer-target@/, 'the app read Refer-To');
    tt.equal(await withTimeout(notifyStatus.promise, 2000, 'the NOTIFY response'), 200, 'SIPp answered the NOTIFY with 200');
    tt.ok(received(result, { status: 202 })[0], 'SIPp got the 202');
  });

  suite.test(`CANCEL before the answer: app sees 'cancel', caller gets 487 [${transport}]`, async (tt, ctx) => {
    const canceled = deferred<boolean>();
    await ctx.connect({
      setup: (srf) => srf.invite((req, res) => {
        req.on('cancel', () => canceled.resolve(true));
        res.send(180);
      }),
    });
    const result = await runSipp({ scenario: 'uac-cancel', remote: remote(), transport });
    expectSippSuccess(tt, result);
    tt.equal(await withTimeout(canceled.promise, 2000, 'the cancel event'), true, 'the app saw the CANCEL');
    tt.ok(received(result, { status: 487 })[0], 'SIPp got the 487');
  });

  suite.test(`out-of-dialog OPTIONS answered by the app [${transport}]`, async (tt, ctx) => {
    await ctx.connect({
      setup: (srf) => onMethod(srf, 'options', (_req, res) => res.send(200, { headers: { 'X-Options-By': 'test-app' } })),
    });
    const result = await runSipp({ scenario: 'uac-options', remote: remote(), transport, keys: { status: '200' } });
    expectSippSuccess(tt, result);
    const ok = received(result, { status: 200 })[0];
    tt.equal(ok && sippHeader(ok, 'X-Options-By'), 'test-app', 'the 200 came from the app');
  });
}

suite.settles();
