import type { TransportName } from '../transport/transport';

/** `HH:MM:SS.uuuuuu`, UTC time of day: the time field drachtio puts in message metadata. */
export function wireTime(ms: number = Date.now()): string {
  const d = new Date(ms);
  const p2 = (n: number): string => (n < 10 ? '0' : '') + n;
  const micros = String(d.getUTCMilliseconds() * 1000).padStart(6, '0');
  return `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}.${micros}`;
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
