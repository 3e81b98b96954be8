// The SIP ladder of one call as an SVG diagram: three lifelines (caller side = Kamailio on leg a,
// the engine/B2BUA, callee side = Kamailio on leg b), one arrow per captured message in capture
// order, with the time relative to the first message. Requests are solid, responses dashed; leg a
// and leg b have their own colours. Arrows are focusable buttons; selecting one calls onSelect.
//
// Message text is attacker-controlled: labels are set as text nodes only.

import { fmtClock, fmtIso, s } from './util.js';

const LANE_X = [185, 455, 725];
const WIDTH = 830;
const HEAD = 64;
const ROW = 32;
const LABEL_MAX = 30;

let markerSeq = 0;

/** What the first line and CSeq say: {kind, method, status, reason, label, cseq, sdp}. */
export function describeMessage(text) {
  const raw = String(text ?? '');
  const firstLine = raw.split(/\r\n|\n|\r/, 1)[0] ?? '';
  const cseqMatch = /^(?:CSeq)[ \t]*:[ \t]*(\d+)[ \t]+([A-Za-z]+)/im.exec(raw);
  const cseqMethod = cseqMatch ? cseqMatch[2].toUpperCase() : '';
  const cseq = cseqMatch ? `${cseqMatch[1]} ${cseqMethod}` : '';
  const headEnd = raw.search(/\r?\n\r?\n/);
  const head = headEnd >= 0 ? raw.slice(0, headEnd) : raw;
  const sdp = /^(?:Content-Type|c)[ \t]*:[ \t]*application\/sdp/im.test(head);
  const response = /^SIP\/2\.0[ \t]+(\d{3})(?:[ \t]+(.*))?$/.exec(firstLine);
  if (response) {
    const status = Number(response[1]);
    const reason = (response[2] ?? '').trim();
    return { kind: 'response', method: cseqMethod, status, reason, label: reason ? `${status} ${reason}` : String(status), cseq, sdp };
  }
  const request = /^([A-Za-z]+)[ \t]+\S+[ \t]+SIP\/2\.0$/.exec(firstLine);
  if (request) {
    const method = request[1].toUpperCase();
    return { kind: 'request', method, status: null, reason: '', label: method, cseq, sdp };
  }
  return { kind: 'unknown', method: cseqMethod, status: null, reason: '', label: firstLine || '(empty)', cseq, sdp };
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function distinct(values) {
  return [...new Set(values.filter((v) => typeof v === 'string' && v !== ''))];
}

/** The lanes a message goes between: [from, to] as lane indexes. */
function lanesOf(message) {
  const inbound = message.dir === 'in';
  if (message.leg === 'b') return inbound ? [2, 1] : [1, 2];
  return inbound ? [0, 1] : [1, 0];
}

/**
 * Builds the ladder. messages: MessageJson[] in capture order. Returns {element, select(index)}.
 * onSelect(index, message, description) is called when an arrow is chosen.
 */
export function renderLadder(messages, { onSelect }) {
  const id = `ladder${(markerSeq += 1)}`;
  const height = HEAD + Math.max(1, messages.length) * ROW + 16;
  const svg = s('svg', {
    class: 'ladder',
    width: WIDTH,
    height,
    viewBox: `0 0 ${WIDTH} ${height}`,
    role: 'list',
    'aria-label': `SIP ladder, ${messages.length} messages`,
    'data-testid': 'ladder',
  });

  const marker = (leg) => s('marker', {
    id: `${id}-${leg}`,
    viewBox: '0 0 10 10',
    refX: 9,
    refY: 5,
    markerUnits: 'userSpaceOnUse',
    markerWidth: 9,
    markerHeight: 9,
    orient: 'auto',
  }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: `head-${leg}` }));
  svg.append(s('defs', {}, marker('a'), marker('b')));

  const peersA = distinct(messages.filter((m) => m.leg !== 'b').map((m) => m.peer));
  const peersB = distinct(messages.filter((m) => m.leg === 'b').map((m) => m.peer));
  const locals = distinct(messages.map((m) => m.local));
  const heads = [
    { title: 'Caller side', sub: 'Kamailio · leg a', addr: peersA.join(', '), cls: 'lane-a' },
    { title: 'Engine / B2BUA', sub: 'SIP engine', addr: locals.join(', '), cls: 'lane-e' },
    { title: 'Callee side', sub: 'Kamailio · leg b', addr: peersB.join(', '), cls: 'lane-b' },
  ];
  heads.forEach((head, i) => {
    const x = LANE_X[i];
    svg.append(
      s('rect', { class: `lane-box ${head.cls}`, x: x - 100, y: 4, width: 200, height: 46, rx: 4 }),
      s('text', { class: 'lane-title', x, y: 20, 'text-anchor': 'middle' }, head.title),
      s('text', { class: 'lane-sub', x, y: 33, 'text-anchor': 'middle' }, head.sub),
      s('text', { class: 'lane-addr', x, y: 45, 'text-anchor': 'middle' }, clip(head.addr || '—', 34)),
      s('line', { class: 'lifeline', x1: x, y1: 50, x2: x, y2: height - 6 }),
    );
  });
  svg.append(s('text', { class: 'time-head', x: 8, y: 45 }, 'time (s)'));

  const first = messages.length > 0 ? Date.parse(messages[0].at) : NaN;
  const groups = [];
  let selected = -1;

  const select = (index, focus = false) => {
    if (index < 0 || index >= groups.length) return;
    if (selected >= 0) {
      groups[selected].classList.remove('selected');
      groups[selected].setAttribute('aria-pressed', 'false');
    }
    selected = index;
    groups[index].classList.add('selected');
    groups[index].setAttribute('aria-pressed', 'true');
    if (focus) groups[index].focus();
    onSelect(index, messages[index], describeMessage(messages[index].text));
  };

  messages.forEach((message, index) => {
    const info = describeMessage(message.text);
    const leg = message.leg === 'b' ? 'b' : 'a';
    const [fromLane, toLane] = lanesOf(message);
    const x1 = LANE_X[fromLane];
    const x2 = LANE_X[toLane];
    const y = HEAD + index * ROW + 20;
    const at = Date.parse(message.at);
    const rel = Number.isFinite(at) && Number.isFinite(first) ? ((at - first) / 1000).toFixed(3) : '?';
    const left = Math.min(x1, x2);
    const label = clip(info.label, LABEL_MAX);
    const extra = [info.kind === 'response' && info.method ? info.method : '', info.sdp ? 'SDP' : ''].filter(Boolean).join(' · ');
    const g = s('g', {
      class: `arrow leg-${leg} ${info.kind}`,
      tabindex: 0,
      role: 'button',
      'aria-pressed': 'false',
      'data-testid': 'ladder-arrow',
      'data-index': index,
      'data-leg': leg,
      'data-dir': message.dir,
      'data-kind': info.kind,
      'data-method': info.method,
      'data-status': info.status ?? undefined,
      on: {
        click: () => select(index),
        keydown: (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            select(index);
          } else if (ev.key === 'ArrowDown' || ev.key === 'j') {
            ev.preventDefault();
            select(Math.min(groups.length - 1, index + 1), true);
          } else if (ev.key === 'ArrowUp' || ev.key === 'k') {
            ev.preventDefault();
            select(Math.max(0, index - 1), true);
          }
        },
      },
    },
    s('title', {}, `${info.label} — leg ${leg}, ${message.dir === 'in' ? 'received by' : 'sent by'} the engine at ${fmtIso(message.at)}`),
    s('rect', { class: 'hit', x: 0, y: y - ROW + 10, width: WIDTH, height: ROW }),
    s('text', { class: 'time', x: 8, y: y + 4 }, `+${rel}`),
    s('text', { class: 'clock', x: 60, y: y + 4 }, fmtClock(message.at)),
    s('line', { class: 'shaft', x1, y1: y, x2: x2 + (x2 > x1 ? -2 : 2), y2: y, 'marker-end': `url(#${id}-${leg})` }),
    s('text', { class: 'label', x: left + Math.abs(x2 - x1) / 2, y: y - 5, 'text-anchor': 'middle' },
      label,
      extra ? s('tspan', { class: 'label-extra', dx: 6 }, extra) : null));
    groups.push(g);
    svg.append(g);
  });

  if (messages.length === 0) {
    svg.append(s('text', { class: 'ladder-empty', x: LANE_X[1], y: HEAD + 20, 'text-anchor': 'middle' }, 'No SIP messages stored for this call.'));
  }
  return { element: svg, select };
}
