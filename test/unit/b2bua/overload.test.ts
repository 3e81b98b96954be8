import t from 'tap';
import { pino } from 'pino';
import { OverloadGuard } from '../../../lib/b2bua/overload';
import type { MediaBacklog } from '../../../lib/media/media-anchor';

interface Line {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** n requests that have waited `ms` each. */
function waiting(n: number, ms: number): number[] {
  return Array.from({ length: n }, () => ms);
}

/**
 * A guard over a backlog the test sets (how long each waiting request has waited, oldest first),
 * with its log lines and a way to wait for one.
 */
function harness(limits = { requests: 10, waitMs: 400 }): {
  guard: OverloadGuard;
  set: (waits: number[]) => void;
  /** The guard's clock, ms: the test moves it. */
  clock: { now: number };
  lines: Line[];
  next: (msg: RegExp) => Promise<Line>;
} {
  let waits: number[] = [];
  const lines: Line[] = [];
  const waiters: Array<{ msg: RegExp; resolve: (l: Line) => void }> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write: (text: string) => {
        const line = JSON.parse(text) as Line;
        lines.push(line);
        for (const w of waiters.filter((x) => x.msg.test(line.msg))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      },
    },
  );
  const backlog = (rank: number): MediaBacklog => ({ requests: waits.length, oldestWaitMs: waits[0] ?? 0, rankWaitMs: waits[rank - 1] ?? 0 });
  const clock = { now: 1_000_000 };
  const guard = new OverloadGuard(backlog, limits, logger, () => clock.now);
  return {
    guard,
    clock,
    set: (w) => {
      waits = [...w].sort((a, b) => b - a);
    },
    lines,
    next: (msg) => new Promise((resolve) => waiters.push({ msg, resolve })),
  };
}

t.test('calls are taken until enough requests have waited long enough, then refused', async (tt) => {
  const h = harness();
  tt.teardown(() => h.guard.close());
  h.set(waiting(50, 100));
  tt.equal(h.guard.admit(), undefined, 'many requests, none old: a burst being served');
  h.set([...waiting(9, 2000), ...waiting(40, 10)]);
  tt.equal(h.guard.admit(), undefined, 'nine old requests among many young: lost datagrams waiting for their copies');
  tt.notOk(h.guard.overloaded);
  h.set([...waiting(10, 400), ...waiting(5, 10)]);
  tt.match(h.guard.admit(), { requests: 15, oldestWaitMs: 400, rankWaitMs: 400 }, 'ten requests at 400 ms: refused, with the backlog that refused it');
  tt.ok(h.guard.overloaded);
  const warn = h.lines.find((l) => l.level === 40);
  tt.match(warn, { msg: /^overloaded/, waiting: 15, oldestWaitMs: 400, limits: { requests: 10, waitMs: 400 } }, 'one warning when it starts');
  h.set(waiting(12, 500));
  tt.ok(h.guard.admit(), 'refused while it lasts');
  tt.equal(h.lines.filter((l) => l.level === 40).length, 1, 'and no line per refused call');
  tt.same(h.guard.counters, { refused: 2, episodes: 1 });
});

t.test('each call is judged on the backlog of its moment; an episode ends after a second without refusals', async (tt) => {
  const h = harness();
  tt.teardown(() => h.guard.close());
  h.set(waiting(20, 800));
  tt.ok(h.guard.admit(), 'refused');
  h.set([...waiting(9, 800), ...waiting(30, 100)]);
  tt.equal(h.guard.admit(), undefined, 'nine old requests: the next call is taken (no hysteresis)');
  tt.ok(h.guard.overloaded, 'the episode goes on');
  h.set(waiting(10, 400));
  h.clock.now += 900;
  tt.ok(h.guard.admit(), 'ten again: refused, in the same episode');
  tt.equal(h.lines.filter((l) => l.level === 40).length, 1, 'one warning for the episode');
  h.set([]);
  const over = h.next(/^overload over/);
  // The guard's check does not keep a process alive (unref): this test's wait must.
  const alive = setInterval(() => undefined, 1000);
  tt.teardown(() => clearInterval(alive));
  h.clock.now += 1000;
  tt.match(await over, { level: 30, refused: 2, forMs: 1900, waiting: 0 }, 'a second after the last refusal, with no call coming, the end is logged with the calls refused');
  tt.notOk(h.guard.overloaded);
  h.set(waiting(30, 1000));
  tt.ok(h.guard.admit(), 'a second episode');
  tt.same(h.guard.counters, { refused: 3, episodes: 2 });
});

t.test('waitMs 0 turns it off; bad limits are refused', async (tt) => {
  const h = harness({ requests: 1, waitMs: 0 });
  h.set(waiting(1000, 60_000));
  tt.equal(h.guard.admit(), undefined);
  tt.notOk(h.guard.enabled);
  const logger = pino({ level: 'silent' });
  const none = (): MediaBacklog => ({ requests: 0, oldestWaitMs: 0, rankWaitMs: 0 });
  tt.throws(() => new OverloadGuard(none, { requests: 0, waitMs: 100 }, logger), /requests must be an integer >= 1/);
  tt.throws(() => new OverloadGuard(none, { requests: 5, waitMs: -1 }, logger), /waitMs must be an integer >= 0/);
});
