// The benchmark's caller scenarios (bench/scenarios/bench-uac*.xml) against a SIPp UAS standing in
// for the far end. What is checked is what a phone's UA core tolerates and SIPp, left to itself,
// would count as a failed call: here, a 180 relayed after the call's 200 (Kamailio's tm can send
// the two replies of one transaction out of order when two of its workers handle them under load).

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { describeSipp, received, runSipp, startSipp } from '../support/sipp';

const BENCH_SCENARIOS = resolve(__dirname, '..', '..', 'bench', 'scenarios');

for (const scenario of ['bench-uac', 'bench-uac-audio']) {
  t.test(`${scenario}: a 180 arriving after the 200 is ignored and the call ends with its BYE`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-uac-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'callees.csv'), 'SEQUENTIAL\n6107;\n');

    const far = await startSipp({ scenario: 'uas-late-ringing', calls: 1, timeoutSec: 30 });
    t.teardown(() => far.stop());
    const caller = await runSipp({
      scenario: join(BENCH_SCENARIOS, `${scenario}.xml`),
      remote: `127.0.0.1:${far.localPort}`,
      // the late 180 arrives while the caller holds the call, as it did in the benchmark
      holdMs: 300,
      recvTimeoutMs: 5000,
      timeoutSec: 30,
      keys: { caller: '6000' },
      extraArgs: ['-inf', join(dir, 'callees.csv'), '-au', '6000', '-ap', 'not-checked'],
    });
    const callee = await far.finish(5000);

    // The case was exercised: the caller received a 180 after the 200 of the same INVITE.
    const invite = received(caller, { cseqMethod: 'INVITE' }).map((m) => m.status);
    const answered = invite.indexOf(200);
    t.ok(answered >= 0 && invite.indexOf(180, answered + 1) > answered, `a 180 after the 200 (received ${invite.join(', ')})\n${describeSipp(caller)}`);

    t.equal(caller.code, 0, `the caller counts the call as successful\n${describeSipp(caller)}`);
    t.equal(caller.successful, 1, 'one successful call');
    t.equal(caller.failed, 0, 'no failed call');
    // The far end got the BYE (and answered it): the caller did not abort the call.
    t.equal(callee.code, 0, `the far end's scenario completed with the caller's BYE\n${describeSipp(callee)}`);
    t.equal(received(callee, { method: 'BYE' }).length, 1, 'the far end received one BYE');
  });
}
