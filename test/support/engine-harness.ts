// Shared shape of the engine integration test files: one engine per file, one subtest per
// behaviour, and after every subtest the checks that the engine was left clean.

import type tap from 'tap';
import { describeSipp, type SippResult } from './sipp';
import { withTimeout } from './wait';
import {
  connectSrf,
  startEngine,
  statusCount,
  waitForEngineStatus,
  type ConnectSrfOptions,
  type ConnectedSrf,
  type EngineHandle,
  type EngineOptions,
} from './engine-process';

/** The type of `t` inside a tap subtest. */
export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0];

export const TRANSPORTS = ['udp', 'tcp'] as const;

export interface CallTestContext {
  engine: EngineHandle;
  /** Connects an application that is closed (and awaited) when the subtest ends. */
  connect(options?: ConnectSrfOptions): Promise<ConnectedSrf>;
}

export interface EngineSuiteOptions extends EngineOptions {
  /** Deadline for "no dialogs left" after each subtest (default 5 s). */
  dialogsTimeoutMs?: number;
}

export interface EngineSuite {
  engine(): EngineHandle;
  /**
   * A subtest with an application context. The body gets timeoutMs (default 30 s). Afterwards the
   * engine must report as many dialogs as before the test (0 unless an earlier test leaked one),
   * every application the test connected is closed, and the engine must report 0 applications.
   */
  test(name: string, body: (t: TapTest, ctx: CallTestContext) => Promise<void>, options?: { timeoutMs?: number }): void;
  /**
   * The last subtest of a file: waits until the engine reports 0 dialogs and 0 transactions
   * (transactions linger for their RFC 3261 timers, up to 64*T1 = 32 s after the last call),
   * then stops it with SIGTERM and expects exit code 0.
   */
  settles(timeoutMs?: number): void;
}

/** Starts one engine for the test file `t` (stopped at teardown) and returns helpers bound to it. */
export function engineSuite(t: TapTest, options: EngineSuiteOptions = {}): EngineSuite {
  let engine: EngineHandle | undefined;
  t.before(async () => {
    engine = await startEngine(options);
  });
  t.teardown(async () => {
    await engine?.stop();
  });
  const current = (): EngineHandle => {
    if (!engine) throw new Error('engine not started (did t.before fail?)');
    return engine;
  };

  const suite: EngineSuite = {
    engine: current,
    test(name, body, testOptions = {}) {
      const bodyTimeoutMs = testOptions.timeoutMs ?? 30000;
      // tap's own timeout only fires if the cleanup below hangs too.
      t.test(name, { timeout: bodyTimeoutMs + 30000 }, async (st) => {
        const running = current();
        const apps: ConnectedSrf[] = [];
        const ctx: CallTestContext = {
          engine: running,
          async connect(connectOptions) {
            const app = await connectSrf(running, connectOptions);
            apps.push(app);
            return app;
          },
        };
        // A dialog leaked by an earlier subtest is reported there, not again in every later one.
        let baseline = 0;
        try {
          baseline = statusCount(await running.status(), 'dialogs');
        } catch (err) {
          st.fail(`engine /status unavailable before the test: ${(err as Error).message}`);
        }
        let failure: unknown;
        try {
          // The body may hang on an event that never comes; cleanup must still run.
          await withTimeout(body(st, ctx), bodyTimeoutMs, `the test body (${name})`);
        } catch (err) {
          failure = err;
        }
        try {
          await waitForEngineStatus(running, (status) => statusCount(status, 'dialogs') === baseline,
            `dialogs back to ${baseline} after the test`, options.dialogsTimeoutMs ?? 5000);
          st.pass(`engine reports ${baseline} dialogs after the test, as before it`);
        } catch (err) {
          st.fail(`engine dialogs not back to ${baseline} after the test (leaked dialog?): ${(err as Error).message}`);
        }
        await Promise.all(apps.map((app) => app.close()));
        for (const app of apps) {
          if (app.errors.length > 0) st.comment(`drachtio-srf errors: ${app.errors.map((e) => e.message).join('; ')}`);
        }
        try {
          await waitForEngineStatus(running, (status) => statusCount(status, 'applications') === 0, 'applications = 0 after closing them');
        } catch (err) {
          st.fail(`engine still counts applications after they closed: ${(err as Error).message}`);
        }
        if (failure !== undefined || !st.passing()) st.comment(`engine log tail:\n${running.logTail(60)}`);
        if (failure !== undefined) throw failure;
      });
    },
    settles(timeoutMs = 45000) {
      t.test('engine settles: no dialogs and no transactions left', { timeout: timeoutMs + 10000 }, async (st) => {
        const running = current();
        const status = await waitForEngineStatus(
          running,
          (s) => statusCount(s, 'dialogs') === 0 && statusCount(s, 'transactions') === 0,
          'dialogs = 0 and transactions = 0 once timers have run',
          timeoutMs,
        );
        st.equal(statusCount(status, 'dialogs'), 0, 'no dialogs');
        st.equal(statusCount(status, 'transactions'), 0, 'no transactions');
        const code = await running.stop();
        st.equal(code, 0, 'SIGTERM stops the engine with exit code 0', { logTail: running.logTail(20) });
      });
    },
  };
  return suite;
}

/**
 * Asserts that a SIPp run completed `calls` calls (default 1) without failure; on failure the
 * assertion carries SIPp's exit, counts, message flow and error trace.
 */
export function expectSippSuccess(t: TapTest, result: SippResult, calls = 1, label = 'SIPp'): void {
  const extra = { sipp: describeSipp(result) };
  t.equal(result.code, 0, `${label} (${result.scenario}) exits 0`, extra);
  t.equal(result.successful, calls, `${label} (${result.scenario}) counts ${calls} successful call(s)`, extra);
  t.equal(result.failed, 0, `${label} (${result.scenario}) counts no failed call`, extra);
}
