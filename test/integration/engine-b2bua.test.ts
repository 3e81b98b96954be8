// The engine with an unmodified drachtio-srf application bridging calls with srf.createB2BUA,
// between a SIPp UAC (A leg) and a SIPp UAS (B leg). Each behaviour runs over UDP and over TCP.

import t from 'tap';
import { engineSuite, expectSippSuccess, TRANSPORTS, type CallTestContext } from '../support/engine-harness';
import { sdpDirection } from '../support/sdp';
import { received, runSipp, sippHeader, withSipp, type SipTransport, type SippOptions, type SippResult } from '../support/sipp';
import { destroyDialog, sipStatusOf, type SrfDialog } from '../support/srf';
import { deferred, withTimeout, type Deferred } from '../support/wait';
import type Srf from 'drachtio-srf';

const suite = engineSuite(t);

interface Bridge {
  uas: SrfDialog;
  uac: SrfDialog;
}

interface B2buaRun {
  caller: SippResult;
  callee: SippResult;
  /** Settles with the dialogs createB2BUA resolved with, or the error it rejected with. */
  outcome: Deferred<Bridge>;
}

/**
 * Runs one call: a SIPp UAS (callee) in the background, an app whose INVITE handler calls
 * srf.createB2BUA towards it, and a SIPp UAC (caller) towards the engine. `onBridge` may add
 * behaviour to the bridged dialogs; by default a BYE on either leg is relayed to the other.
 */
async function b2buaCall(
  ctx: CallTestContext,
  transport: SipTransport,
  callerOptions: Omit<SippOptions, 'transport' | 'remote'>,
  calleeOptions: Omit<SippOptions, 'transport'>,
  b2buaOptions: Srf.CreateB2BUAOptions = {},
  onBridge?: (bridge: Bridge) => void,
): Promise<B2buaRun> {
  const outcome = deferred<Bridge>();
  let caller: SippResult | undefined;
  const callee = await withSipp({ ...calleeOptions, transport }, async (uas) => {
    await ctx.connect({
      setup: (srf) => srf.invite((req, res) => {
        const uri = `sip:${req.calledNumber || 'callee'}@127.0.0.1:${uas.localPort};transport=${transport}`;
        srf.createB2BUA(req, res, uri, { ...b2buaOptions }).then((bridge) => {
          // Relay a hang-up to the other leg (the BYE's failure, if any, is not this test's concern).
          bridge.uas.on('destroy', () => { destroyDialog(bridge.uac).catch(() => undefined); });
          bridge.uac.on('destroy', () => { destroyDialog(bridge.uas).catch(() => undefined); });
          onBridge?.(bridge);
          outcome.resolve(bridge);
        }, (err: unknown) => outcome.reject(err instanceof Error ? err : new Error(String(err))));
      }),
    });
    caller = await runSipp({ ...callerOptions, transport, remote: `127.0.0.1:${ctx.engine.sipPort}` });
  });
  if (!caller) throw new Error('the SIPp UAC did not run');
  return { caller, callee, outcome };
}

for (const transport of TRANSPORTS) {
  suite.test(`createB2BUA bridges a call; the caller hangs up [${transport}]`, async (tt, ctx) => {
    const run = await b2buaCall(ctx, transport,
      { scenario: 'uac-call', holdMs: 100 },
      { scenario: 'uas-answer' },
      { headers: { 'X-Test-Header': 'via-b2bua' }, proxyResponseHeaders: ['X-Seen-Test-Header'] });
    expectSippSuccess(tt, run.caller, 1, 'caller');
    expectSippSuccess(tt, run.callee, 1, 'callee');
    const bridge = await withTimeout(run.outcome.promise, 1000, 'createB2BUA');
    tt.match(bridge.uac.remote.sdp, /o=sippuas /, 'B leg holds the callee\'s SDP');
    tt.match(bridge.uas.remote.sdp, /o=sipp /, 'A leg holds the caller\'s SDP');
    const invite = received(run.callee, { method: 'INVITE' })[0];
    tt.equal(invite && sippHeader(invite, 'X-Test-Header'), 'via-b2bua', 'the callee got the header the app added');
    tt.match(invite?.body ?? '', /o=sipp /, 'the callee got the caller\'s SDP');
    const answer = received(run.caller, { status: 200, cseqMethod: 'INVITE' })[0];
    tt.equal(answer && sippHeader(answer, 'X-Seen-Test-Header'), 'via-b2bua', 'the caller got the callee\'s header back (proxyResponseHeaders)');
    tt.match(answer?.body ?? '', /o=sippuas /, 'the caller got the callee\'s SDP');
    tt.ok(received(run.callee, { method: 'BYE' })[0], 'the caller\'s BYE was relayed to the callee');
  });

  suite.test(`createB2BUA bridges a call; the callee hangs up [${transport}]`, async (tt, ctx) => {
    const run = await b2buaCall(ctx, transport,
      { scenario: 'uac-call-expect-bye' },
      { scenario: 'uas-answer-then-bye', holdMs: 100 });
    expectSippSuccess(tt, run.caller, 1, 'caller');
    expectSippSuccess(tt, run.callee, 1, 'callee');
    tt.ok(received(run.caller, { method: 'BYE' })[0], 'the callee\'s BYE was relayed to the caller');
  });

  for (const status of [404, 480, 486, 503]) {
    suite.test(`createB2BUA passes a ${status} from the callee back to the caller [${transport}]`, async (tt, ctx) => {
      const run = await b2buaCall(ctx, transport,
        { scenario: 'uac-reject', keys: { status: String(status) } },
        { scenario: `uas-reject-${status}` });
      expectSippSuccess(tt, run.caller, 1, 'caller');
      expectSippSuccess(tt, run.callee, 1, 'callee');
      const outcome = await run.outcome.promise.then(() => undefined, (err: unknown) => err);
      tt.equal(sipStatusOf(outcome), status, `createB2BUA rejected with ${status}`, { error: String(outcome) });
      tt.ok(received(run.caller, { status })[0], `the caller got the ${status}`);
    });
  }

  suite.test(`CANCEL from the caller while the callee rings: both legs end with 487 [${transport}]`, async (tt, ctx) => {
    const run = await b2buaCall(ctx, transport, { scenario: 'uac-cancel' }, { scenario: 'uas-ring' });
    expectSippSuccess(tt, run.caller, 1, 'caller');
    expectSippSuccess(tt, run.callee, 1, 'callee');
    const outcome = await run.outcome.promise.then(() => undefined, (err: unknown) => err);
    tt.equal(sipStatusOf(outcome), 487, 'createB2BUA rejected with 487', { error: String(outcome) });
    tt.ok(received(run.callee, { method: 'CANCEL' })[0], 'the callee got a CANCEL');
    tt.ok(received(run.caller, { status: 180 })[0], 'the caller got the 180 relayed');
  });

  suite.test(`a re-INVITE from the caller is relayed to the callee with dialog.modify() [${transport}]`, async (tt, ctx) => {
    const relayed = deferred<string>();
    const run = await b2buaCall(ctx, transport,
      { scenario: 'uac-reinvite', holdMs: 50 },
      { scenario: 'uas-reinvite' },
      {},
      ({ uas, uac }) => {
        uas.on('modify', (req, res) => {
          uac.modify(req.body).then((answer) => {
            relayed.resolve(answer);
            res.send(200, { body: answer });
          }, (err: unknown) => {
            relayed.reject(err instanceof Error ? err : new Error(String(err)));
            res.send(500);
          });
        });
      });
    expectSippSuccess(tt, run.caller, 1, 'caller');
    expectSippSuccess(tt, run.callee, 1, 'callee');
    tt.equal(sdpDirection(await withTimeout(relayed.promise, 1000, 'the relayed re-INVITE')), 'recvonly', 'the callee answered the hold');
    const reinvite = received(run.callee, { method: 'INVITE' })[1];
    tt.equal(sdpDirection(reinvite?.body), 'sendonly', 'the callee got the caller\'s sendonly offer');
    const answers = received(run.caller, { status: 200, cseqMethod: 'INVITE' });
    tt.equal(sdpDirection(answers[answers.length - 1]?.body), 'recvonly', 'the caller got the callee\'s recvonly answer');
  });
}

suite.settles();
