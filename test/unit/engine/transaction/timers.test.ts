// The real clock: short timers share a queue per length, long ones a coarse wheel; a cancelled
// timer never fires.
import t from 'tap';
import { realClock } from '../../../../lib/engine/transaction/timers';

function later(ms: number, log: string[], name: string): { fired: Promise<void>; cancel(): void } {
  let done!: () => void;
  const fired = new Promise<void>((resolve) => (done = resolve));
  const h = realClock.schedule(ms, () => {
    log.push(name);
    done();
  });
  return { fired, cancel: () => h.cancel() };
}

t.test('short timers of one length fire in order; a cancelled one does not', async (tt) => {
  const log: string[] = [];
  const a = later(15, log, 'a');
  const b = later(15, log, 'b');
  const c = later(15, log, 'c');
  b.cancel();
  const started = Date.now();
  await Promise.all([a.fired, c.fired]);
  tt.same(log, ['a', 'c']);
  tt.ok(Date.now() - started >= 14, 'not before their time');
});

t.test('timers of different lengths keep their own order; one scheduled from a callback fires too', async (tt) => {
  const log: string[] = [];
  const long = later(40, log, 'long');
  const short = later(5, log, 'short');
  await short.fired;
  const again = later(5, log, 'again');
  await Promise.all([long.fired, again.fired]);
  tt.same(log, ['short', 'again', 'long']);
});

t.test('long timers go on the coarse wheel: never early, cancellable', async (tt) => {
  const log: string[] = [];
  const started = Date.now();
  const kept = later(1000, log, 'kept');
  const dropped = later(1000, log, 'dropped');
  dropped.cancel();
  await kept.fired;
  const took = Date.now() - started;
  tt.ok(took >= 999, `not before its time (fired after ${took} ms)`);
  tt.same(log, ['kept']);
});
