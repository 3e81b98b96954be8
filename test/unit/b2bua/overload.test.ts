import t from 'tap';
import { pino } from 'pino';
import { OverloadGuard } from '../../../lib/b2bua/overload';
import type { MediaBacklog } from '../../../lib/media/media-anchor';

interface Line {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A guard over a backlog the test sets, with its log lines and a way to wait for one. */
function harness(limits = { requests: 10, waitMs: 400 }): {
  guard: OverloadGuard;
  set: (b: MediaBacklog) => void;
  lines: Line[];
  next: (msg: RegExp) => Promise<Line>;
} {
  let backlog: MediaBacklog = { requests: 0, oldestWaitMs: 0 };
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
  const guard = new OverloadGuard(() => backlog, limits, logger);
  return {
    guard,
    set: (b) => {
      backlog = b;
    },
    lines,
    next: (msg) => new Promise((resolve) => waiters.push({ msg, resolve })),
  };
}

t.test('calls are taken until the backlog is both long and old, then refused with its figures', async (tt) => {
  const h = harness();
  tt.teardown(() => h.guard.close());
  h.set({ requests: 50, oldestWaitMs: 100 });
  tt.equal(h.guard.admit(), undefined, 'many requests, none old: a burst being served');
  h.set({ requests: 3, oldestWaitMs: 900 });
  tt.equal(h.guard.admit(), undefined, 'one old request among few: a lost datagram waiting for its copy');
  tt.notOk(h.guard.overloaded);
  h.set({ requests: 10, oldestWaitMs: 400 });
  tt.same(h.guard.admit(), { requests: 10, oldestWaitMs: 400 }, 'at both limits: refused, with the backlog that refused it');
  tt.ok(h.guard.overloaded);
  const warn = h.lines.find((l) => l.level === 40);
  tt.match(warn, { msg: /^overloaded/, waiting: 10, oldestWaitMs: 400, limits: { requests: 10, waitMs: 400 } }, 'one warning when it starts');
  h.set({ requests: 12, oldestWaitMs: 500 });
  tt.ok(h.guard.admit(), 'refused while it lasts');
  tt.equal(h.lines.filter((l) => l.level === 40).length, 1, 'and no line per refused call');
  tt.same(h.guard.counters, { refused: 2, episodes: 1 });
});

t.test('it clears with hysteresis: at half of either limit', async (tt) => {
  const h = harness();
  tt.teardown(() => h.guard.close());
  h.set({ requests: 20, oldestWaitMs: 800 });
  tt.ok(h.guard.admit());
  h.set({ requests: 9, oldestWaitMs: 399 });
  tt.ok(h.guard.admit(), 'below the limits that started it, above their halves: still refused');
  h.set({ requests: 5, oldestWaitMs: 399 });
  tt.ok(h.guard.admit(), 'at half the requests: still refused');
  h.set({ requests: 4, oldestWaitMs: 399 });
  tt.equal(h.guard.admit(), undefined, 'below half the requests: taken again');
  tt.notOk(h.guard.overloaded);
  const over = h.lines.find((l) => /^overload over/.test(l.msg));
  tt.match(over, { level: 30, refused: 3, waiting: 4 }, 'the end is logged with the calls refused in the episode');
  h.set({ requests: 30, oldestWaitMs: 1000 });
  tt.ok(h.guard.admit(), 'a second episode');
  h.set({ requests: 30, oldestWaitMs: 199 });
  tt.equal(h.guard.admit(), undefined, 'below half the wait: taken again');
  tt.same(h.guard.counters, { refused: 4, episodes: 2 });
});

t.test('the end of an episode is seen without new calls', async (tt) => {
  const h = harness();
  tt.teardown(() => h.guard.close());
  h.set({ requests: 20, oldestWaitMs: 800 });
  tt.ok(h.guard.admit());
  const over = h.next(/^overload over/);
  // The guard's check does not keep a process alive (unref): this test's wait must.
  const alive = setInterval(() => undefined, 1000);
  tt.teardown(() => clearInterval(alive));
  h.set({ requests: 0, oldestWaitMs: 0 });
  tt.match(await over, { refused: 1 }, 'the guard looks at the backlog by itself while refusing');
  tt.notOk(h.guard.overloaded);
});

t.test('waitMs 0 turns it off; bad limits are refused', async (tt) => {
  const h = harness({ requests: 1, waitMs: 0 });
  h.set({ requests: 1000, oldestWaitMs: 60_000 });
  tt.equal(h.guard.admit(), undefined);
  tt.notOk(h.guard.enabled);
  const logger = pino({ level: 'silent' });
  const none = (): MediaBacklog => ({ requests: 0, oldestWaitMs: 0 });
  tt.throws(() => new OverloadGuard(none, { requests: 0, waitMs: 100 }, logger), /requests must be an integer >= 1/);
  tt.throws(() => new OverloadGuard(none, { requests: 5, waitMs: -1 }, logger), /waitMs must be an integer >= 0/);
});
