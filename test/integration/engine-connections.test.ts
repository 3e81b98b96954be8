// The engine's application side: no application, a wrong secret, several applications sharing
// the INVITEs, the metrics endpoint, and how the process refuses bad start-up options.

import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer } from 'node:net';
import t from 'tap';
import { engineSuite, expectSippSuccess, TRANSPORTS } from '../support/engine-harness';
import { runEngineToExit, SrfConnectError, statusCount, waitForEngineStatus } from '../support/engine-process';
import { freePorts } from '../support/ports';
import { received, runSipp } from '../support/sipp';

const suite = engineSuite(t);
const remote = (): string => `127.0.0.1:${suite.engine().sipPort}`;

for (const transport of TRANSPORTS) {
  suite.test(`an INVITE with no application connected gets 503 [${transport}]`, async (tt, ctx) => {
    await waitForEngineStatus(ctx.engine, (status) => statusCount(status, 'applications') === 0, 'no applications connected');
    const result = await runSipp({ scenario: 'uac-reject', remote: remote(), transport, keys: { status: '503' } });
    expectSippSuccess(tt, result);
    tt.ok(received(result, { status: 503 })[0], 'SIPp got the 503');
  });
}

suite.test('an application with a wrong secret is refused', async (tt, ctx) => {
  const outcome = await ctx.connect({ secret: 'not-the-secret' }).then(() => undefined, (err: unknown) => err);
  tt.type(outcome, SrfConnectError, 'connectSrf rejected');
  tt.match(String(outcome), /authenticate|closed/, 'because authentication failed or the engine closed the socket');
  tt.equal(statusCount(await ctx.engine.status(), 'applications'), 0, 'the engine counts no application');
});

for (const transport of TRANSPORTS) {
  suite.test(`two applications receive new INVITEs in turn [${transport}]`, async (tt, ctx) => {
    const counts = [0, 0];
    for (const index of [0, 1]) {
      await ctx.connect({
        setup: (srf) => srf.invite((_req, res) => {
          counts[index] = (counts[index] ?? 0) + 1;
          res.send(486, { headers: { 'X-App-Index': String(index) } });
        }),
      });
    }
    await waitForEngineStatus(ctx.engine, (status) => statusCount(status, 'applications') === 2, 'two applications connected');
    const result = await runSipp({ scenario: 'uac-reject', remote: remote(), transport, calls: 4, rate: 20, keys: { status: '486' } });
    expectSippSuccess(tt, result, 4);
    tt.same(counts, [2, 2], 'each application got two of the four INVITEs');
  });
}

suite.test('GET /metrics serves Prometheus text', async (tt, ctx) => {
  const text = await ctx.engine.metrics();
  tt.match(text, /^# (HELP|TYPE) \S+/m, 'Prometheus exposition format');
});

t.test('the engine exits 1 and names an unknown option', async (tt) => {
  const exit = await runEngineToExit(['--no-such-option', 'x']);
  tt.equal(exit.code, 1, 'exit code 1', { output: exit.output });
  tt.match(exit.output, /no-such-option/, 'the message names the option');
});

async function engineArgs(overrides: { sip?: number; wire?: number; status?: number } = {}): Promise<string[]> {
  const [sip, wire, status] = await freePorts(3);
  return [
    '--contact', `sip:127.0.0.1:${overrides.sip ?? sip};transport=udp,tcp`,
    '--address', '127.0.0.1',
    '--port', String(overrides.wire ?? wire),
    '--secret', 'cymru',
    '--loglevel', 'info',
    '--prometheus-scrape-port', `127.0.0.1:${overrides.status ?? status}`,
  ];
}

t.test('the engine exits 1 and names its wire port when it is in use', async (tt) => {
  const [wire] = await freePorts(1);
  const blocker = createServer().listen(wire, '127.0.0.1');
  await once(blocker, 'listening');
  try {
    const exit = await runEngineToExit(await engineArgs({ wire }));
    tt.equal(exit.code, 1, 'exit code 1', { output: exit.output });
    tt.match(exit.output, new RegExp(String(wire)), 'the message names the port', { output: exit.output });
  } finally {
    blocker.close();
  }
});

t.test('the engine exits 1 and names its SIP port when it is in use', async (tt) => {
  const [sip] = await freePorts(1);
  const blocker = createSocket('udp4');
  blocker.bind(sip, '127.0.0.1');
  await once(blocker, 'listening');
  try {
    const exit = await runEngineToExit(await engineArgs({ sip }));
    tt.equal(exit.code, 1, 'exit code 1', { output: exit.output });
    tt.match(exit.output, new RegExp(String(sip)), 'the message names the port', { output: exit.output });
  } finally {
    blocker.close();
  }
});

suite.settles();
