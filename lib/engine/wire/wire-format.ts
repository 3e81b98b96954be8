import type { TransportName } from '../transport/transport';

const DAY_MS = 86_400_000;
let lastMs = -1;
let lastText = '';

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `HH:MM:SS.uuuuuu`, UTC time of day: the time field drachtio puts in message metadata. */
export function wireTime(ms: number = Date.now()): string {
  // several messages share a millisecond under load: format each millisecond once
  if (ms === lastMs) return lastText;
  const t = ((Math.floor(ms) % DAY_MS) + DAY_MS) % DAY_MS;
  const milli = t % 1000;
  const secs = Math.floor(t / 1000);
  const micros = milli < 10 ? `00${milli}000` : milli < 100 ? `0${milli}000` : `${milli}000`;
  lastText = `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.${micros}`;
  lastMs = ms;
  return lastText;
}

/** The six metadata fields: `source|bytes|protocol|address|port|time`. */
export function meta6(
  source: 'network' | 'application',
  bytes: number,
  transport: TransportName,
  address: string,
  port: number,
  time: number = Date.now(),
): string {
  return `${source}|${bytes}|${transport}|${address}|${port}|${wireTime(time)}`;
}
