// The cold-start probe (bench/cold-probe.ts): it runs the engine's parser for real, so its
// figures are positive and its ratio is what it says; the report line carries them.

import t from 'tap';
import { coldProbe, describeColdProbe } from '../../../bench/cold-probe';

t.test('the probe measures both ways and reports their ratio', async (t) => {
  const p = await coldProbe(10, 2);
  t.equal(p.samples, 10);
  t.equal(p.sleepMs, 2);
  t.ok(p.warmMicros > 0, `warm ${p.warmMicros} us`);
  t.ok(p.coldMicros > 0, `cold ${p.coldMicros} us`);
  t.ok(Math.abs(p.ratio - p.coldMicros / p.warmMicros) < 1e-9, 'ratio is cold over warm');
});

t.test('the report line names both figures and the ratio', async (t) => {
  const line = describeColdProbe({ warmMicros: 14.2, coldMicros: 100.4, ratio: 100.4 / 14.2, sleepMs: 10, samples: 200 });
  t.match(line, /100\.4 us after a 10 ms sleep against 14\.2 us back to back \(7\.1x, median of 200\)/);
});
