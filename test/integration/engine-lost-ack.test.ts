// A 200 that is never ACKed (RFC 3261 13.3.1.4): the engine retransmits it over UDP and, when
// no ACK has come after 64*T1, ends the dialog with a BYE to the caller and tells the
// application, as drachtio-server does. UDP and TCP run at the same time to keep this to ~35 s.

import t from 'tap';
import { engineSuite, expectSippSuccess, TRANSPORTS } from '../support/engine-harness';
import { sdp } from '../support/sdp';
import { received, runSipp } from '../support/sipp';
import type { SrfRequest } from '../support/srf';
import { deferred, withTimeout, type Deferred } from '../support/wait';

const suite = engineSuite(t);

suite.test('a 200 never ACKed is retransmitted, then both sides get a BYE [udp and tcp]', async (tt, ctx) => {
  const destroyed: Array<Deferred<SrfRequest>> = [];
  await ctx.connect({
    setup: (srf) => srf.invite((req, res) => {
      const ended = deferred<SrfRequest>();
      destroyed.push(ended);
      srf.createUAS(req, res, { localSdp: sdp() }).then((uas) => {
        uas.on('destroy', (bye) => ended.resolve(bye));
      }, (err: unknown) => ended.reject(err instanceof Error ? err : new Error(String(err))));
    }),
  });
  const results = await Promise.all(TRANSPORTS.map((transport) => runSipp({
    scenario: 'uac-no-ack',
    remote: `127.0.0.1:${ctx.engine.sipPort}`,
    transport,
    timeoutSec: 80,
  })));
  for (const result of results) {
    expectSippSuccess(tt, result, 1, `SIPp over ${result.transport}`);
    const answers = received(result, { status: 200, cseqMethod: 'INVITE' });
    if (result.transport === 'udp') {
      tt.ok(answers.length >= 3, `over UDP the 200 came at least 3 times (got ${answers.length})`);
    } else {
      tt.ok(answers.length >= 1, `over TCP the 200 arrived (got ${answers.length}; retransmission is optional on a reliable transport)`);
    }
    tt.ok(received(result, { method: 'BYE' })[0], `over ${result.transport} the caller got a BYE`);
  }
  tt.equal(destroyed.length, 2, 'the app got both INVITEs');
  for (const ended of destroyed) {
    const bye = await withTimeout(ended.promise, 5000, 'the dialog destroy event');
    tt.equal(bye.method, 'BYE', 'the app was told with a BYE');
  }
}, { timeoutMs: 90000 });

suite.settles();
