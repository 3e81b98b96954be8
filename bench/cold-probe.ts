import { setTimeout as sleep } from 'node:timers/promises';
import { parseMessage } from '../lib/engine/message/parser';

/**
 * How much slower the same work runs when a process wakes for it after sleeping, as every event
 * does at a low call rate, than when it runs back to back.
 *
 * At 100 calls/s a SIP process sleeps ~2-10 ms between events; on a virtual machine whose host
 * runs other work meanwhile, the caches, TLB and branch predictors it left are gone when it
 * wakes. CPU per call measured at a low rate then says more about the machine than about the
 * code. This probe puts a figure on it: it times the engine's own parser on one INVITE, first
 * back to back, then once per wake-up after a sleep. The ratio is a property of the machine (on
 * the development VM: 4-6x; on bare metal expect 1-2x), reported beside the per-call figures.
 */
export interface ColdProbe {
  /** microseconds for one round of work, back to back */
  readonly warmMicros: number;
  /** microseconds for the same round, run once after each `sleepMs` sleep */
  readonly coldMicros: number;
  readonly ratio: number;
  readonly sleepMs: number;
  readonly samples: number;
}

const INVITE = Buffer.from(
  [
    'INVITE sip:1002@127.0.0.1:5060 SIP/2.0',
    'Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-cold-probe;rport',
    'Max-Forwards: 70',
    'From: "Alice" <sip:1001@127.0.0.1>;tag=a1b2c3',
    'To: <sip:1002@127.0.0.1>',
    'Call-ID: cold-probe@127.0.0.1',
    'CSeq: 1 INVITE',
    'Contact: <sip:1001@127.0.0.1:5070>',
    'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY',
    'Supported: replaces, timer',
    'User-Agent: cold-probe',
    'Content-Type: application/sdp',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n'),
);

/** One round: what the engine does to a few messages of a call (parse, read the headers). */
function round(): number {
  let n = 0;
  for (let i = 0; i < 5; i++) {
    const r = parseMessage(INVITE);
    if (r.ok) n += r.message.headers.length;
  }
  return n;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** Runs the probe in this process (about `samples * sleepMs` ms); call it while the machine is otherwise idle. */
export async function coldProbe(samples = 200, sleepMs = 10): Promise<ColdProbe> {
  let sink = 0;
  // let the JIT settle first: both measurements must run the same optimised code
  for (let i = 0; i < 20_000; i++) sink += round();
  const warm: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    sink += round();
    warm.push(performance.now() - t);
  }
  const cold: number[] = [];
  for (let i = 0; i < samples; i++) {
    await sleep(sleepMs);
    const t = performance.now();
    sink += round();
    cold.push(performance.now() - t);
  }
  if (sink < 0) throw new Error('unreachable: keeps the rounds from being optimised away');
  const warmMicros = median(warm) * 1000;
  const coldMicros = median(cold) * 1000;
  return { warmMicros, coldMicros, ratio: coldMicros / Math.max(warmMicros, 0.001), sleepMs, samples };
}

/** One line for a report. */
export function describeColdProbe(p: ColdProbe): string {
  return (
    `the same parsing work takes ${p.coldMicros.toFixed(1)} us after a ${p.sleepMs} ms sleep against ${p.warmMicros.toFixed(1)} us back to back ` +
    `(${p.ratio.toFixed(1)}x, median of ${p.samples}): at low call rates every event runs that cold, so CPU per call there is a machine figure as much as a code one`
  );
}
