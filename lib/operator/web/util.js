// DOM building and formatting helpers for the operator page.
//
// Every piece of text that reaches the page goes through document.createTextNode() or
// textContent: call records and SIP messages are attacker-controlled (a caller chooses its
// display name, headers and bodies), so no string is ever parsed as HTML here.

const SVG_NS = 'http://www.w3.org/2000/svg';

function applyAttributes(el, attrs) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [type, handler] of Object.entries(value)) el.addEventListener(type, handler);
      continue;
    }
    // Event handler attributes would be script; they are never built from strings.
    if (/^on/i.test(name)) throw new Error(`event handler attribute ${name} is not allowed`);
    el.setAttribute(name, value === true ? '' : String(value));
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Creates an HTML element; string children become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttributes(el, attrs);
  appendChildren(el, children);
  return el;
}

/** Creates an SVG element; string children become text nodes. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttributes(el, attrs);
  appendChildren(el, children);
  return el;
}

/** Replaces every child of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
}

export const OUTCOMES = ['answered', 'busy', 'no-answer', 'cancelled', 'rejected', 'failed', 'interrupted'];
export const FINAL_STATES = new Set(['ended', 'failed', 'cancelled']);

const pad = (n, width = 2) => String(n).padStart(width, '0');

function toDate(iso) {
  if (iso === null || iso === undefined || iso === '') return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "2026-11-01 14:03:07" in the browser's time zone; "—" when absent. */
export function fmtDateTime(iso) {
  const d = toDate(iso);
  if (!d) return '—';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "14:03:07.125" in the browser's time zone. */
export function fmtClock(iso) {
  const d = toDate(iso);
  if (!d) return '—';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The ISO string, for tooltips. */
export function fmtIso(iso) {
  const d = toDate(iso);
  return d ? d.toISOString() : '';
}

/** Seconds as "m:ss" or "h:mm:ss"; keeps tenths under a minute when asked. */
export function fmtDuration(sec, { tenths = false } = {}) {
  if (sec === null || sec === undefined || !Number.isFinite(Number(sec))) return '—';
  const value = Math.max(0, Number(sec));
  if (tenths && value < 60) return `${value.toFixed(1)} s`;
  const whole = Math.floor(value);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const seconds = whole % 60;
  return hours > 0 ? `${hours}:${pad(minutes)}:${pad(seconds)}` : `${minutes}:${pad(seconds)}`;
}

/** Milliseconds as "850 ms" or "2.41 s". */
export function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return '—';
  const value = Number(ms);
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

export function fmtCount(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
  return Number(n).toLocaleString('en-US');
}

export function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
  const value = Number(n);
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${(value / 1024 / 1024).toFixed(2)} MiB`;
}

export function fmtPercent(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(Number(ratio))) return '—';
  return `${(Number(ratio) * 100).toFixed(1)} %`;
}

/** "200 OK" from a status and reason; "—" without a status. */
export function fmtStatus(status, reason) {
  if (status === null || status === undefined) return '—';
  return reason ? `${status} ${reason}` : String(status);
}

/** CSS class for a MOS figure (ITU-T G.107 bands, roughly: >= 4 good, >= 3.6 fair, below poor). */
export function mosClass(mos) {
  if (mos === null || mos === undefined || !Number.isFinite(Number(mos))) return 'mos-none';
  const value = Number(mos);
  if (value >= 4) return 'mos-good';
  if (value >= 3.6) return 'mos-fair';
  return 'mos-poor';
}

export function fmtMos(mos) {
  if (mos === null || mos === undefined || !Number.isFinite(Number(mos))) return '—';
  return Number(mos).toFixed(1);
}

/** The caller's extension: CallRecordJson has callerUser; an older live view had caller. */
export function callerOf(record) {
  return record.callerUser ?? record.caller ?? '?';
}

/** A datetime-local input value ("2026-11-01T14:03") as an ISO string, '' when empty, null when invalid. */
export function localInputToIso(value) {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** "2026-11-01 14:03:07.125" in the browser's time zone. */
export function fmtDateTimeMs(iso) {
  const d = toDate(iso);
  if (!d) return '—';
  return `${fmtDateTime(iso)}.${pad(d.getMilliseconds(), 3)}`;
}

/** Seconds from `fromIso` to `iso` as "+0.183 s"; '' when either is absent. */
export function fmtOffset(iso, fromIso) {
  const a = toDate(iso);
  const b = toDate(fromIso);
  if (!a || !b) return '';
  return `+${((a.getTime() - b.getTime()) / 1000).toFixed(3)} s`;
}

/** Time since `iso` until `now` (ms since the epoch) as "m:ss". */
export function fmtElapsed(iso, now = Date.now()) {
  const d = toDate(iso);
  if (!d) return '—';
  return fmtDuration((now - d.getTime()) / 1000);
}
