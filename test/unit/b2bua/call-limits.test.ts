import t from 'tap';
import { CallLimits } from '../../../lib/b2bua/call-limits';

t.test('the global limit refuses the call beyond it; a release frees the slot', async (tt) => {
  const limits = new CallLimits({ maxCalls: 2, maxCallsPerExtension: 10 });
  const a = limits.acquire(['6001', '6002']);
  const b = limits.acquire(['6003', '6004']);
  tt.ok(a.ok && b.ok);
  const c = limits.acquire(['6005', '6006']);
  tt.same(c.ok ? undefined : c.refusal, { limit: 'global', current: 2 });
  if (a.ok) a.release();
  if (a.ok) a.release();
  tt.equal(limits.current, 1, 'release is idempotent');
  tt.ok(limits.acquire(['6005', '6006']).ok);
  tt.equal(limits.peak, 2);
});

t.test('the per-extension limit counts the extension as caller and as callee', async (tt) => {
  const limits = new CallLimits({ maxCalls: 100, maxCallsPerExtension: 2 });
  tt.ok(limits.acquire(['6001', '6002']).ok);
  tt.ok(limits.acquire(['6003', '6001']).ok);
  const third = limits.acquire(['6004', '6001']);
  tt.same(third.ok ? undefined : third.refusal, { limit: 'extension', extension: '6001', current: 2 });
  tt.equal(limits.inUse('6002'), 1);
  tt.equal(limits.current, 2, 'a refused call takes no slot');
});

t.test('a call to oneself counts once; empty callers are ignored', async (tt) => {
  const limits = new CallLimits({ maxCalls: 100, maxCallsPerExtension: 1 });
  const self = limits.acquire(['6001', '6001']);
  tt.ok(self.ok);
  tt.equal(limits.inUse('6001'), 1);
  tt.ok(limits.acquire(['', '6002']).ok);
});
