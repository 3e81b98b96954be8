/**
 * A call's SIP messages as a text ladder diagram (sngrep-style), for `calls show`. Pure: messages
 * in, lines out. Three lifelines: Kamailio as the engine sees it on leg a (the caller's side), the
 * engine (the B2BUA), and Kamailio on leg b (the callee's side). One message per line: seconds
 * since the first message, the arrow with the request line or status line, then the CSeq and
 * notes (sdp, retransmission, an unusual peer):
 *
 *   caller side · leg a (udp)             engine (B2BUA)              callee side · leg b (udp)
 *   Kamailio 127.0.0.1:5060               127.0.0.2:5080               Kamailio 127.0.0.1:5060
 *    time (s)   │                                    │                                    │
 *      +0.000   │── INVITE sip:6002@127.0.0.2:5080 ─▶│                                    │  CSeq 2 INVITE · sdp
 *      +0.015   │                                    │── INVITE sip:6002@127.0.0.1:5070 ─▶│  CSeq 1538 INVITE · sdp
 *      +0.019   │                                    │◀──────────────────── 180 Ringing ──│  CSeq 1538 INVITE
 *      +0.023   │◀──────────────────── 180 Ringing ──│                                    │  CSeq 2 INVITE
 *
 * `dir` is the engine's point of view: leg a 'in' is an arrow from the caller side to the engine,
 * leg b 'out' an arrow from the engine to the callee side, and so on.
 */

/** One captured message, as the operator API returns it (MessageJson). */
export interface LadderMessage {
  readonly leg: 'a' | 'b';
  /** ISO-8601 capture time. */
  readonly at: string;
  readonly dir: 'in' | 'out';
  readonly transport: string;
  /** The far end "address:port". */
  readonly peer: string;
  /** The engine's own "address:port". */
  readonly local: string;
  readonly text: string;
}

export interface LadderOptions {
  /** Characters between two lifelines (default 36, at least 16). */
  readonly laneWidth?: number;
  /** Plain ASCII (| - > <) instead of box-drawing characters. */
  readonly ascii?: boolean;
}

/** What the ladder shows of one message's start line and headers. */
export interface MessageSummary {
  /** "INVITE sip:6002@host" or "180 Ringing"; the raw start line when it is neither. */
  readonly label: string;
  readonly method: string | undefined;
  readonly status: number | undefined;
  /** "1 INVITE"; undefined when the message has no readable CSeq. */
  readonly cseq: string | undefined;
  /** The message carries an SDP body. */
  readonly sdp: boolean;
}

const TIME_WIDTH = 9;
const GAP = 3;

interface Glyphs {
  line: string;
  dash: string;
  right: string;
  left: string;
  more: string;
  /** Separates notes and the header's words. */
  dot: string;
}

const UNICODE: Glyphs = { line: '│', dash: '─', right: '▶', left: '◀', more: '…', dot: '·' };
const ASCII: Glyphs = { line: '|', dash: '-', right: '>', left: '<', more: '~', dot: '-' };

/** Reads the start line, CSeq and body kind of a SIP message's text. Never throws. */
export function summarizeMessage(text: string): MessageSummary {
  const split = /\r?\n\r?\n/.exec(text);
  const head = split ? text.slice(0, split.index) : text;
  const body = split ? text.slice(split.index + split[0].length) : '';
  const lines = head.split(/\r?\n/);
  const start = (lines[0] ?? '').trim();
  const header = (names: readonly string[]): string | undefined => {
    for (const line of lines.slice(1)) {
      const m = /^([A-Za-z0-9!%'*+._`~-]+)\s*:\s*(.*)$/.exec(line);
      if (m && names.includes((m[1] as string).toLowerCase())) return (m[2] as string).trim();
    }
    return undefined;
  };
  const cseqMatch = /^(\d+)\s+([A-Za-z]+)/.exec(header(['cseq']) ?? '');
  const contentType = header(['content-type', 'c'])?.toLowerCase() ?? '';
  const sdp = body.trim() !== '' && (contentType.startsWith('application/sdp') || (contentType === '' && body.trimStart().startsWith('v=0')));
  const request = /^([A-Za-z]+)\s+(\S+)\s+SIP\/2\.0$/i.exec(start);
  if (request) {
    const method = (request[1] as string).toUpperCase();
    return { label: `${method} ${request[2] as string}`, method, status: undefined, cseq: cseqMatch ? `${cseqMatch[1]} ${cseqMatch[2]}` : undefined, sdp };
  }
  const response = /^SIP\/2\.0\s+(\d{3})(?:\s+(.*))?$/i.exec(start);
  if (response) {
    const status = Number(response[1]);
    const reason = (response[2] ?? '').trim();
    return { label: reason === '' ? String(status) : `${status} ${reason}`, method: undefined, status, cseq: cseqMatch ? `${cseqMatch[1]} ${cseqMatch[2]}` : undefined, sdp };
  }
  return { label: start === '' ? '(empty message)' : start, method: undefined, status: undefined, cseq: cseqMatch ? `${cseqMatch[1]} ${cseqMatch[2]}` : undefined, sdp };
}

/** "+1.234": seconds since `zeroMs`, millisecond precision. */
export function relativeTime(atMs: number, zeroMs: number): string {
  const d = Math.max(0, atMs - zeroMs);
  return `+${(d / 1000).toFixed(3)}`;
}

function clip(text: string, width: number, more: string): string {
  if (width <= 0) return '';
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}${more}`;
}

/** One lane's content: an arrow of exactly `width` characters with `label` in it. */
export function arrow(label: string, direction: 'right' | 'left', width: number, ascii = false): string {
  const g = ascii ? ASCII : UNICODE;
  // "── label ──…──▶" : two dashes, a space, the label, a space, at least one dash, the head.
  const text = clip(label, width - 6, g.more);
  const fill = width - text.length - 5;
  return direction === 'right'
    ? `${g.dash}${g.dash} ${text} ${g.dash.repeat(fill)}${g.right}`
    : `${g.left}${g.dash.repeat(fill)} ${text} ${g.dash}${g.dash}`;
}

function mostCommon(values: readonly string[]): string | undefined {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: string | undefined;
  let bestCount = 0;
  for (const [v, n] of counts) {
    if (n > bestCount) {
      best = v;
      bestCount = n;
    }
  }
  return best;
}

/** Places labels centred on columns of a line `width` wide (clamped so each stays whole). */
function centred(width: number, items: ReadonlyArray<{ at: number; text: string }>): string {
  const chars = Array.from({ length: width }, () => ' ');
  for (const { at, text } of items) {
    const start = Math.max(0, Math.min(width - text.length, at - Math.floor(text.length / 2)));
    for (let i = 0; i < text.length && start + i < width; i++) chars[start + i] = text[i] as string;
  }
  return chars.join('').trimEnd();
}

function timeOf(m: LadderMessage): number {
  const t = Date.parse(m.at);
  return Number.isFinite(t) ? t : 0;
}

/**
 * The ladder of a call's messages, oldest first (messages with equal times keep their order).
 * Returns the lines without trailing newlines; one line saying so when there is no message.
 */
export function renderLadder(messages: readonly LadderMessage[], options: LadderOptions = {}): string[] {
  if (messages.length === 0) return ['(no SIP messages stored for this call)'];
  const g = options.ascii ? ASCII : UNICODE;
  const lane = Math.max(16, Math.floor(options.laneWidth ?? 36));
  const ordered = messages.map((m, i) => ({ m, i, t: timeOf(m) })).sort((x, y) => x.t - y.t || x.i - y.i);
  const zero = ordered[0]?.t ?? 0;

  const legA = messages.filter((m) => m.leg === 'a');
  const legB = messages.filter((m) => m.leg === 'b');
  const peerA = mostCommon(legA.map((m) => m.peer));
  const peerB = mostCommon(legB.map((m) => m.peer));
  const local = mostCommon(messages.map((m) => m.local));
  const transportOf = (list: readonly LadderMessage[]): string => {
    const t = mostCommon(list.map((m) => m.transport.toLowerCase()));
    return t ? ` (${t})` : '';
  };

  const x0 = TIME_WIDTH + GAP;
  const x1 = x0 + 1 + lane;
  const x2 = x1 + 1 + lane;
  // The header may run past the last lifeline (its labels are centred on it).
  const width = x2 + 1 + 16;
  const lines: string[] = [
    centred(width, [
      { at: x0, text: `caller side ${g.dot} leg a${transportOf(legA)}` },
      { at: x1, text: 'engine (B2BUA)' },
      { at: x2, text: `callee side ${g.dot} leg b${transportOf(legB)}` },
    ]),
    centred(width, [
      { at: x0, text: peerA ? `Kamailio ${peerA}` : '-' },
      { at: x1, text: local ?? '-' },
      { at: x2, text: peerB ? `Kamailio ${peerB}` : '-' },
    ]),
    `${'time (s)'.padStart(TIME_WIDTH)}${' '.repeat(GAP)}${g.line}${' '.repeat(lane)}${g.line}${' '.repeat(lane)}${g.line}`,
  ];

  const seen = new Set<string>();
  const empty = ' '.repeat(lane);
  for (const { m, t } of ordered) {
    const s = summarizeMessage(m.text);
    const toEngine = m.dir === 'in';
    const arrowText = arrow(s.label, toEngine === (m.leg === 'a') ? 'right' : 'left', lane, options.ascii);
    const [laneA, laneB] = m.leg === 'a' ? [arrowText, empty] : [empty, arrowText];
    const notes: string[] = [];
    if (s.cseq) notes.push(`CSeq ${s.cseq}`);
    if (s.sdp) notes.push('sdp');
    const key = `${m.leg}|${m.dir}|${m.peer}|${m.text}`;
    if (seen.has(key)) notes.push('retransmission');
    seen.add(key);
    const usual = m.leg === 'a' ? peerA : peerB;
    if (m.peer !== usual) notes.push(`${toEngine ? 'from' : 'to'} ${m.peer}`);
    const row = `${relativeTime(t, zero).padStart(TIME_WIDTH)}${' '.repeat(GAP)}${g.line}${laneA}${g.line}${laneB}${g.line}`;
    lines.push(notes.length > 0 ? `${row}  ${notes.join(` ${g.dot} `)}` : row);
  }
  return lines;
}
