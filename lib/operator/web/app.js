// The operator console: sign-in, live calls over Server-Sent Events, call history with filters
// and paging, summary figures, and a call page with the record, media quality and the SIP ladder.
// Routes live in the hash: "#/" is the dashboard, "#/calls/<id or Call-ID>" a call.
//
// Everything shown comes from the API and may carry attacker-chosen text (SIP display names,
// headers, bodies): it is inserted as text nodes only (see util.js `h`), never as HTML.

import { ApiClient, ApiError } from './api.js';
import { renderLadder } from './ladder.js';
import { EventStream } from './sse.js';
import {
  FINAL_STATES, OUTCOMES, callerOf, fmtBytes, fmtClock, fmtCount, fmtDateTime, fmtDateTimeMs, fmtDuration,
  fmtElapsed, fmtIso, fmtMos, fmtMs, fmtOffset, fmtPercent, fmtStatus, h, localInputToIso, mosClass, replaceChildren,
} from './util.js';

const TOKEN_KEY = 'b2bua-operator.token';
const PAGE_SIZE = 50;
const STATS_EVERY_MS = 30_000;
const ENDED_MEMORY = 2000;

function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

const ui = {
  nav: byId('nav'),
  conn: byId('conn'),
  access: byId('access'),
  signout: byId('signout'),
  banner: byId('banner'),
  bannerText: byId('banner-text'),
  bannerClose: byId('banner-close'),
  signin: byId('signin'),
  signinForm: byId('signin-form'),
  token: byId('token'),
  signinError: byId('signin-error'),
  dashboard: byId('dashboard'),
  stats: byId('stats'),
  liveCount: byId('live-count'),
  liveBody: byId('live-body'),
  liveEmpty: byId('live-empty'),
  filters: byId('filters'),
  outcomeBoxes: byId('outcome-boxes'),
  historyBody: byId('history-body'),
  historyEmpty: byId('history-empty'),
  historyNote: byId('history-note'),
  older: byId('older'),
  callpage: byId('callpage'),
};

const emptyFilters = () => ({ caller: '', callee: '', q: '', outcomes: [], from: '', to: '' });

const state = {
  /** 'read' | 'admin' while signed in, null otherwise. */
  access: null,
  /** Calls in progress, by id. */
  live: new Map(),
  /** Ids whose `end` was seen: a late `call` event must not bring them back. */
  ended: new Set(),
  /** Ids touched by events while a /api/calls/live snapshot is on its way. */
  syncTouched: null,
  pendingHangups: new Set(),
  filters: emptyFilters(),
  nextCursor: null,
  historyLoaded: false,
  historySeq: 0,
  view: null,
  /** The call page: {key, data, selected, parts}. */
  call: null,
  callSeq: 0,
};

let stream = null;
let tickTimer = null;
let statsTimer = null;
let statsSoon = null;
let bannerTimer = null;
let callReloadSoon = null;

const api = new ApiClient({ onUnauthorized: (reason) => signOut(reason) });

const isAuthError = (err) => err instanceof ApiError && err.status === 401;
const reasonOf = (err) => (err instanceof ApiError ? err.reason : (err && err.message) || String(err));
const callHash = (id) => `#/calls/${encodeURIComponent(id)}`;
const isFinal = (rec) => rec.live === false || FINAL_STATES.has(rec.state) || (rec.outcome !== null && rec.outcome !== undefined);

// ---------------------------------------------------------------------------------------------
// Banner

function showBanner(text, kind = 'error') {
  ui.bannerText.textContent = text;
  ui.banner.dataset.kind = kind;
  ui.banner.hidden = false;
  if (bannerTimer) clearTimeout(bannerTimer);
  bannerTimer = kind === 'info' ? setTimeout(hideBanner, 5000) : null;
}

function hideBanner() {
  ui.banner.hidden = true;
  if (bannerTimer) clearTimeout(bannerTimer);
  bannerTimer = null;
}

ui.bannerClose.addEventListener('click', hideBanner);

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out

function showSignin(message) {
  ui.dashboard.hidden = true;
  ui.callpage.hidden = true;
  ui.nav.hidden = true;
  ui.conn.hidden = true;
  ui.access.hidden = true;
  ui.signout.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.textContent = message || '';
  ui.signinError.hidden = !message;
  document.title = 'Sign in · B2BUA operator';
  ui.token.focus();
}

async function signIn(token) {
  api.token = token;
  let who;
  try {
    who = await api.whoami();
  } catch (err) {
    // A 401 already brought the sign-in form back with the reason (signOut).
    if (!isAuthError(err)) {
      api.token = '';
      showSignin(`Cannot sign in: ${reasonOf(err)}`);
    }
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  startSession(who && who.access === 'admin' ? 'admin' : 'read');
}

function startSession(access) {
  state.access = access;
  document.body.classList.toggle('is-admin', access === 'admin');
  ui.access.textContent = access;
  ui.access.dataset.access = access;
  ui.access.title = access === 'admin' ? 'Admin token: you can hang up calls' : 'Read token: you can look, not hang up';
  ui.signin.hidden = true;
  ui.signinError.hidden = true;
  ui.token.value = '';
  ui.nav.hidden = false;
  ui.conn.hidden = false;
  ui.access.hidden = false;
  ui.signout.hidden = false;
  hideBanner();
  state.historyLoaded = false;
  startStream();
  tickTimer = setInterval(tick, 1000);
  statsTimer = setInterval(() => {
    if (state.view === 'dashboard') void refreshStats();
  }, STATS_EVERY_MS);
  route();
}

/** Ends the session (a 401 anywhere, or the Sign out button) and shows why. */
function signOut(reason) {
  const wasSignedIn = state.access !== null;
  if (stream) stream.stop();
  stream = null;
  for (const timer of [tickTimer, statsTimer]) if (timer) clearInterval(timer);
  if (statsSoon) clearTimeout(statsSoon);
  tickTimer = statsTimer = statsSoon = null;
  state.access = null;
  state.live.clear();
  state.ended.clear();
  state.pendingHangups.clear();
  state.historyLoaded = false;
  state.historySeq += 1;
  state.callSeq += 1;
  state.call = null;
  state.view = null;
  document.body.classList.remove('is-admin');
  sessionStorage.removeItem(TOKEN_KEY);
  api.token = '';
  ui.liveBody.replaceChildren();
  ui.historyBody.replaceChildren();
  ui.historyBody.removeAttribute('data-loaded');
  ui.stats.replaceChildren();
  ui.callpage.replaceChildren();
  hideBanner();
  if (reason) showSignin(wasSignedIn ? `Signed out: ${reason}` : `The token was refused: ${reason}`);
  else showSignin(wasSignedIn ? 'Signed out.' : '');
}

ui.signinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = ui.token.value.trim();
  if (!token) {
    showSignin('Enter a token.');
    return;
  }
  void signIn(token);
});

ui.signout.addEventListener('click', () => signOut(''));

// ---------------------------------------------------------------------------------------------
// Routing

function route() {
  if (!state.access) return;
  const match = /^#\/calls\/([^/?#]+)$/.exec(location.hash);
  if (match) {
    let key = match[1];
    try {
      key = decodeURIComponent(key);
    } catch {
      // a malformed escape: use it as it is, the API will say it does not know it
    }
    void showCallPage(key);
  } else {
    showDashboard();
  }
}

window.addEventListener('hashchange', route);

// ---------------------------------------------------------------------------------------------
// Event stream

function startStream() {
  stream = new EventStream({
    url: '/api/events',
    headers: () => api.authHeaders(),
    onEvent: handleEvent,
    onStatus: renderConnection,
    onOpen: ({ reconnect }) => {
      void syncLive();
      if (reconnect) {
        // Events may have been missed while disconnected: catch up.
        if (state.historyLoaded) void loadHistory({ reset: true });
        void refreshStats();
        if (state.view === 'call') void reloadCall();
      }
    },
    onUnauthorized: (reason) => signOut(reason),
  });
  stream.start();
}

function renderConnection(status, detail) {
  ui.conn.dataset.state = status;
  const text = {
    open: 'live',
    connecting: 'connecting…',
    waiting: `reconnecting in ${Math.max(1, Math.ceil((detail.retryInMs ?? 0) / 1000))} s`,
    closed: 'offline',
  };
  ui.conn.textContent = text[status] ?? status;
  ui.conn.title = detail && detail.error ? `Event stream: ${detail.error}` : 'Event stream (/api/events)';
}

/** Replaces the live map with the server's list, keeping what events said meanwhile. */
async function syncLive() {
  const touched = new Set();
  state.syncTouched = touched;
  let body;
  try {
    body = await api.liveCalls();
  } catch (err) {
    if (!isAuthError(err)) showBanner(`Loading live calls failed: ${reasonOf(err)}`);
    return;
  } finally {
    if (state.syncTouched === touched) state.syncTouched = null;
  }
  const snapshot = new Map();
  for (const rec of (body && body.calls) || []) {
    if (rec && typeof rec.id === 'string' && !isFinal(rec) && !state.ended.has(rec.id)) snapshot.set(rec.id, rec);
  }
  for (const id of [...state.live.keys()]) if (!touched.has(id) && !snapshot.has(id)) state.live.delete(id);
  for (const [id, rec] of snapshot) if (!touched.has(id)) state.live.set(id, rec);
  renderLive();
}

function rememberEnded(id) {
  state.ended.add(id);
  if (state.ended.size > ENDED_MEMORY) state.ended.delete(state.ended.values().next().value);
}

function handleEvent({ event, data }) {
  let rec;
  try {
    rec = JSON.parse(data);
  } catch {
    console.warn('unreadable event data', event);
    return;
  }
  if (!rec || typeof rec !== 'object' || typeof rec.id !== 'string') return;
  if (state.syncTouched) state.syncTouched.add(rec.id);
  if (event === 'call') {
    if (isFinal(rec)) state.live.delete(rec.id);
    else if (!state.ended.has(rec.id)) state.live.set(rec.id, rec);
    renderLive();
    if (findHistoryRow(rec.id)) upsertHistoryRow(rec, { position: 'prepend' });
    if (isCurrentCall(rec.id)) {
      updateCallRecord(rec);
      scheduleCallReload();
    }
  } else if (event === 'end') {
    state.live.delete(rec.id);
    rememberEnded(rec.id);
    state.pendingHangups.delete(rec.id);
    renderLive();
    if (state.historyLoaded && matchesFilters(rec, state.filters)) upsertHistoryRow(rec, { position: 'prepend', flash: true });
    scheduleStats();
    if (isCurrentCall(rec.id)) void reloadCall();
  }
}

function isCurrentCall(id) {
  return state.view === 'call' && state.call !== null && state.call.data !== null && state.call.data.call.id === id;
}

/** A live call's ladder grows: fetch it again, at most every half second. */
function scheduleCallReload() {
  if (callReloadSoon) return;
  callReloadSoon = setTimeout(() => {
    callReloadSoon = null;
    if (state.view === 'call') void reloadCall();
  }, 500);
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('.tick[data-since]')) {
    const since = el.getAttribute('data-since');
    if (since) el.textContent = fmtElapsed(since, now);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared bits

function outcomeBadge(rec) {
  if (rec.outcome) {
    return h('span', { class: `badge outcome-${rec.outcome}`, 'data-testid': 'outcome' }, rec.outcome);
  }
  if (rec.live || !isFinal(rec)) {
    return h('span', { class: 'badge outcome-live', 'data-testid': 'outcome' }, `live · ${rec.state}`);
  }
  return h('span', { class: 'badge', 'data-testid': 'outcome' }, rec.state || '—');
}

function statusClass(status) {
  if (status === null || status === undefined) return '';
  if (status >= 200 && status < 300) return 'st-ok';
  if (status === 486 || status === 487 || status === 480 || status === 600 || status === 603) return 'st-warn';
  return 'st-bad';
}

function party(user, name) {
  return [h('span', { class: 'mono' }, user), name ? h('span', { class: 'muted name' }, name) : null];
}

function mosPair(media) {
  if (!media) return '—';
  const one = (dir) => h('span', { class: mosClass(dir && dir.mos), title: dir && dir.mos !== null ? `MOS ${dir.mos}` : 'no MOS' }, fmtMos(dir && dir.mos));
  return [one(media.callerToCallee), h('span', { class: 'muted' }, ' / '), one(media.calleeToCaller)];
}

function hangupButton(rec) {
  const pending = state.pendingHangups.has(rec.id);
  return h('button', {
    class: 'btn btn-danger btn-small',
    type: 'button',
    'data-testid': 'hangup',
    'data-call-id': rec.id,
    disabled: pending,
    on: { click: (ev) => { ev.stopPropagation(); void hangup(rec); } },
  }, pending ? 'Hanging up…' : 'Hang up');
}

async function hangup(rec) {
  if (state.access !== 'admin') return;
  const question = `Hang up this call?\n\n${callerOf(rec)} → ${rec.callee} (${rec.state})\nCall id ${rec.id}`;
  if (!window.confirm(question)) return;
  state.pendingHangups.add(rec.id);
  renderLive();
  refreshCallHead();
  try {
    await api.hangup(rec.id);
    showBanner(`Hang-up sent: ${callerOf(rec)} → ${rec.callee}.`, 'info');
  } catch (err) {
    if (isAuthError(err)) return;
    state.pendingHangups.delete(rec.id);
    renderLive();
    refreshCallHead();
    if (err instanceof ApiError && err.status === 404) showBanner('That call is no longer live.', 'info');
    else if (err instanceof ApiError && err.status === 403) showBanner('Hanging up needs an admin token.');
    else showBanner(`Hang-up failed: ${reasonOf(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Dashboard: stats, live calls, history

function showDashboard() {
  state.view = 'dashboard';
  state.callSeq += 1;
  state.call = null;
  ui.callpage.hidden = true;
  ui.callpage.replaceChildren();
  ui.dashboard.hidden = false;
  document.title = 'Calls · B2BUA operator';
  renderLive();
  if (!state.historyLoaded) void loadHistory({ reset: true });
  void refreshStats();
}

function scheduleStats() {
  if (statsSoon) return;
  statsSoon = setTimeout(() => {
    statsSoon = null;
    if (state.view === 'dashboard') void refreshStats();
  }, 1000);
}

async function refreshStats() {
  const { from, to } = state.filters;
  try {
    const stats = await api.stats({ from: from || undefined, to: to || undefined });
    renderStats(stats, from || to ? 'filtered period' : 'last 24 h');
  } catch (err) {
    if (isAuthError(err)) return;
    replaceChildren(ui.stats, h('span', { class: 'error' }, `Stats unavailable: ${reasonOf(err)}`));
  }
}

function renderStats(st, period) {
  const conc = (st && st.concurrency) || {};
  const item = (key, label, value, title) => h('div', { class: 'stat', 'data-testid': `stat-${key}`, title },
    h('span', { class: 'stat-value' }, value), h('span', { class: 'stat-label' }, label));
  const unlimited = (n) => (n === null || n === undefined ? '∞' : fmtCount(n));
  const byOutcome = Object.entries((st && st.byOutcome) || {})
    .filter(([, n]) => Number(n) > 0)
    .sort((a, b) => OUTCOMES.indexOf(a[0]) - OUTCOMES.indexOf(b[0]));
  replaceChildren(ui.stats,
    h('div', { class: 'stat-period', title: `${fmtIso(st.from)} – ${fmtIso(st.to)}` }, period),
    item('calls', 'calls', fmtCount(st.calls)),
    item('answered', 'answered', fmtCount(st.answered)),
    item('asr', 'ASR', fmtPercent(st.asr), 'Answer-seizure ratio: answered / calls'),
    item('acd', 'ACD', fmtDuration(st.acdSec), 'Average call duration: mean billable time of answered calls'),
    h('div', { class: 'stat-sep' }),
    item('current', 'now', fmtCount(conc.current), 'Calls in progress'),
    item('peak', 'peak', fmtCount(conc.peak), 'Highest number of concurrent calls'),
    item('limit', 'limit', unlimited(conc.limit), 'MAX_CALLS'),
    item('capacity', 'capacity left', unlimited(conc.capacityLeft), 'Calls that can still be admitted'),
    h('div', { class: 'stat-outcomes', 'data-testid': 'stat-outcomes' },
      byOutcome.map(([outcome, n]) => h('span', { class: `badge outcome-${outcome}` }, `${outcome} ${n}`))));
}

function renderLive() {
  const calls = [...state.live.values()].sort((a, b) => Date.parse(a.receivedAt) - Date.parse(b.receivedAt));
  ui.liveCount.textContent = String(calls.length);
  ui.liveEmpty.hidden = calls.length > 0;
  const admin = state.access === 'admin';
  const now = Date.now();
  ui.liveBody.replaceChildren(...calls.map((rec) => h('tr', {
    'data-testid': 'live-row',
    'data-call-id': rec.id,
    'data-state': rec.state,
    class: 'clickable',
    on: { click: (ev) => { if (!ev.target.closest('a, button')) location.hash = callHash(rec.id); } },
  },
  h('td', {}, h('span', { class: `badge state-${rec.state}`, 'data-testid': 'live-state' }, rec.state)),
  h('td', {},
    h('span', { 'data-col': 'caller' }, party(callerOf(rec), rec.callerName)),
    h('span', { class: 'muted flow' }, '→'),
    h('span', { class: 'mono', 'data-col': 'callee' }, rec.callee)),
  h('td', { class: 'nowrap', title: fmtIso(rec.receivedAt) }, fmtClock(rec.receivedAt)),
  h('td', { class: 'num tick', 'data-since': rec.receivedAt, 'data-testid': 'live-elapsed' }, fmtElapsed(rec.receivedAt, now)),
  rec.answeredAt
    ? h('td', { class: 'num tick', 'data-since': rec.answeredAt, 'data-testid': 'live-talk' }, fmtElapsed(rec.answeredAt, now))
    : h('td', { class: 'num muted', 'data-testid': 'live-talk' }, '—'),
  h('td', { class: 'mono small' }, h('a', { href: callHash(rec.id), title: rec.id }, rec.id.slice(0, 8))),
  admin ? h('td', { class: 'admin-only' }, hangupButton(rec)) : null)));
}

function buildOutcomeBoxes() {
  replaceChildren(ui.outcomeBoxes, OUTCOMES.map((outcome) => h('label', { class: 'chip' },
    h('input', { type: 'checkbox', name: 'outcome', value: outcome, 'data-testid': `filter-outcome-${outcome}` }),
    h('span', {}, outcome))));
}

function readFilters() {
  const form = new FormData(ui.filters);
  const text = (name) => String(form.get(name) ?? '').trim();
  const from = localInputToIso(text('from'));
  const to = localInputToIso(text('to'));
  if (from === null) throw new Error('"From" is not a valid date and time.');
  if (to === null) throw new Error('"To" is not a valid date and time.');
  if (from && to && Date.parse(from) >= Date.parse(to)) throw new Error('"From" must be before "To".');
  return {
    caller: text('caller'),
    callee: text('callee'),
    q: text('q'),
    outcomes: form.getAll('outcome').map(String).filter((o) => OUTCOMES.includes(o)),
    from,
    to,
  };
}

/** The same test the API applies, for calls that end while the page is open. */
function matchesFilters(rec, f) {
  if (f.caller && callerOf(rec) !== f.caller) return false;
  if (f.callee && rec.callee !== f.callee) return false;
  if (f.outcomes.length > 0 && !f.outcomes.includes(rec.outcome)) return false;
  const received = Date.parse(rec.receivedAt);
  if (f.from && !(received >= Date.parse(f.from))) return false;
  if (f.to && !(received < Date.parse(f.to))) return false;
  if (f.q) {
    const haystack = [callerOf(rec), rec.callerName, rec.callerAddress, rec.callee, rec.id, rec.aCallId, rec.bCallId]
      .filter((v) => typeof v === 'string').join('\n').toLowerCase();
    if (!haystack.includes(f.q.toLowerCase())) return false;
  }
  return true;
}

ui.filters.addEventListener('submit', (ev) => {
  ev.preventDefault();
  try {
    state.filters = readFilters();
  } catch (err) {
    showBanner(reasonOf(err));
    return;
  }
  hideBanner();
  void loadHistory({ reset: true });
  void refreshStats();
});

ui.filters.addEventListener('reset', () => {
  // The reset event comes before the fields are cleared.
  setTimeout(() => {
    state.filters = emptyFilters();
    void loadHistory({ reset: true });
    void refreshStats();
  }, 0);
});

ui.older.addEventListener('click', () => void loadHistory({ reset: false }));

async function loadHistory({ reset }) {
  const seq = (state.historySeq += 1);
  const cursor = reset ? undefined : state.nextCursor;
  if (!reset && !cursor) return;
  ui.older.disabled = true;
  try {
    const page = await api.calls(state.filters, { cursor, limit: PAGE_SIZE });
    if (seq !== state.historySeq) return;
    if (reset) ui.historyBody.replaceChildren();
    for (const rec of (page && page.calls) || []) upsertHistoryRow(rec, { position: 'append' });
    state.nextCursor = (page && page.nextCursor) || null;
    state.historyLoaded = true;
    ui.historyBody.setAttribute('data-loaded', 'true');
    ui.older.hidden = !state.nextCursor;
    updateHistoryNote();
  } catch (err) {
    if (seq !== state.historySeq || isAuthError(err)) return;
    showBanner(`Loading calls failed: ${reasonOf(err)}`);
  } finally {
    if (seq === state.historySeq) ui.older.disabled = false;
  }
}

function findHistoryRow(id) {
  for (const row of ui.historyBody.children) if (row.getAttribute('data-call-id') === id) return row;
  return null;
}

function updateHistoryNote() {
  const n = ui.historyBody.children.length;
  ui.historyEmpty.hidden = n > 0 || !state.historyLoaded;
  ui.historyNote.textContent = state.historyLoaded ? `${n} call${n === 1 ? '' : 's'} shown${state.nextCursor ? ', more below' : ''}` : '';
}

function historyRow(rec) {
  return h('tr', {
    'data-testid': 'history-row',
    'data-call-id': rec.id,
    'data-outcome': rec.outcome || '',
    class: 'clickable',
    on: { click: (ev) => { if (!ev.target.closest('a')) location.hash = callHash(rec.id); } },
  },
  h('td', { class: 'nowrap', title: fmtIso(rec.receivedAt) }, h('a', { href: callHash(rec.id), 'data-testid': 'call-link' }, fmtDateTime(rec.receivedAt))),
  h('td', { 'data-col': 'caller' }, party(callerOf(rec), rec.callerName)),
  h('td', { class: 'mono', 'data-col': 'callee' }, rec.callee),
  h('td', { 'data-col': 'outcome' }, outcomeBadge(rec)),
  h('td', { 'data-col': 'hangup' }, rec.hangupBy || '—'),
  h('td', { class: `nowrap ${statusClass(rec.aStatus)}`, 'data-col': 'a-status' }, fmtStatus(rec.aStatus, rec.aReason)),
  h('td', { class: `nowrap ${statusClass(rec.bStatus)}`, 'data-col': 'b-status' }, fmtStatus(rec.bStatus, rec.bReason)),
  h('td', { class: 'num', 'data-col': 'duration' }, fmtDuration(rec.durationSec, { tenths: true })),
  h('td', { class: 'num', 'data-col': 'billable' }, rec.billableSec === null || rec.billableSec === undefined ? '—' : `${rec.billableSec} s`),
  h('td', { class: 'num', 'data-col': 'pdd' }, fmtMs(rec.postDialDelayMs)),
  h('td', { class: 'num nowrap', 'data-col': 'mos' }, mosPair(rec.media)));
}

function upsertHistoryRow(rec, { position, flash = false }) {
  const row = historyRow(rec);
  if (flash) row.classList.add('fresh');
  const old = findHistoryRow(rec.id);
  if (old) old.replaceWith(row);
  else if (position === 'prepend') ui.historyBody.prepend(row);
  else ui.historyBody.append(row);
  updateHistoryNote();
}

// ---------------------------------------------------------------------------------------------
// Call page

function backLink() {
  return h('a', { class: 'back', href: '#/', 'data-testid': 'back' }, '← Calls');
}

async function showCallPage(key) {
  state.view = 'call';
  const seq = (state.callSeq += 1);
  state.call = { key, data: null, selected: -1, parts: null };
  ui.dashboard.hidden = true;
  ui.callpage.hidden = false;
  replaceChildren(ui.callpage, backLink(), h('p', { class: 'empty' }, 'Loading call…'));
  window.scrollTo(0, 0);
  try {
    const data = await api.call(key);
    if (seq !== state.callSeq) return;
    state.call.data = data;
    renderCallPage();
  } catch (err) {
    if (seq !== state.callSeq || isAuthError(err)) return;
    const text = err instanceof ApiError && err.status === 404 ? `No call is known as ${key}.` : `Could not load the call: ${reasonOf(err)}`;
    replaceChildren(ui.callpage, backLink(), h('p', { class: 'error', 'data-testid': 'call-error' }, text));
  }
}

/** Fetches the call again (its end arrived, or the stream reconnected), keeping the selection. */
async function reloadCall() {
  if (!state.call) return;
  const seq = state.callSeq;
  const { key, selected } = state.call;
  try {
    const data = await api.call(key);
    if (seq !== state.callSeq || !state.call) return;
    state.call.data = data;
    renderCallPage();
    if (selected >= 0 && state.call.parts) state.call.parts.ladder.select(selected);
  } catch (err) {
    if (!isAuthError(err)) showBanner(`Reloading the call failed: ${reasonOf(err)}`);
  }
}

function callHead(rec) {
  const live = !isFinal(rec);
  return h('div', { class: 'call-head' },
    backLink(),
    h('h1', {},
      h('span', { class: 'mono' }, callerOf(rec)),
      rec.callerName ? h('span', { class: 'muted name' }, rec.callerName) : null,
      h('span', { class: 'muted' }, ' → '),
      h('span', { class: 'mono' }, rec.callee)),
    outcomeBadge(rec),
    h('span', { class: 'muted' }, fmtDateTime(rec.receivedAt)),
    h('span', { class: 'spacer' }),
    state.access === 'admin' && live ? hangupButton(rec) : null,
    h('button', { class: 'btn', type: 'button', 'data-testid': 'download', on: { click: downloadMessages } }, 'Download messages'));
}

function refreshCallHead() {
  if (!state.call || !state.call.parts || !state.call.data) return;
  const head = callHead(state.call.data.call);
  state.call.parts.head.replaceWith(head);
  state.call.parts.head = head;
}

function recordPanel(rec) {
  const at = (iso) => (iso ? [fmtDateTimeMs(iso), h('span', { class: 'muted' }, ` ${fmtOffset(iso, rec.receivedAt)}`)] : '—');
  const fields = [
    ['id', 'Call id', rec.id, 'mono'],
    ['aCallId', 'A-leg Call-ID', rec.aCallId, 'mono'],
    ['bCallId', 'B-leg Call-ID', rec.bCallId || '—', 'mono'],
    ['instance', 'Instance', rec.instance || '—'],
    ['caller', 'Caller', party(callerOf(rec), rec.callerName)],
    ['callerAddress', 'Caller address', rec.callerAddress ? `${rec.callerAddress}:${rec.callerPort}` : '—', 'mono'],
    ['callee', 'Callee', rec.callee, 'mono'],
    ['state', 'State', rec.state],
    ['outcome', 'Outcome', rec.outcome || (isFinal(rec) ? '—' : 'in progress')],
    ['hangupBy', 'Hang-up side', rec.hangupBy || '—'],
    ['aStatus', 'A status (to caller)', fmtStatus(rec.aStatus, rec.aReason), statusClass(rec.aStatus)],
    ['bStatus', 'B status (from callee)', fmtStatus(rec.bStatus, rec.bReason), statusClass(rec.bStatus)],
    ['receivedAt', 'Received', at(rec.receivedAt)],
    ['ringingAt', 'Ringing', at(rec.ringingAt)],
    ['answeredAt', 'Answered', at(rec.answeredAt)],
    ['endedAt', 'Ended', at(rec.endedAt)],
    ['postDialDelay', 'Post-dial delay', fmtMs(rec.postDialDelayMs)],
    ['duration', 'Duration', rec.durationSec === null || rec.durationSec === undefined ? '—' : `${Number(rec.durationSec).toFixed(3)} s (${fmtDuration(rec.durationSec)})`],
    ['billable', 'Billable', rec.billableSec === null || rec.billableSec === undefined ? '—' : `${rec.billableSec} s`],
    ['transfers', 'Transfers', rec.transfers && rec.transfers.length > 0 ? rec.transfers.join(' → ') : 'none'],
    ['mediaEngine', 'RTPEngine', rec.media ? rec.media.engine : '—', 'mono'],
  ];
  return h('section', { class: 'panel' },
    h('header', { class: 'panel-head' }, h('h2', {}, 'Call record')),
    h('dl', { class: 'kv', 'data-testid': 'call-record' }, fields.map(([key, label, value, cls]) => [
      h('dt', {}, label),
      h('dd', { class: cls || '', 'data-testid': `field-${key}` }, value),
    ])));
}

function mediaPanel(rec) {
  const media = rec.media;
  const head = h('header', { class: 'panel-head' }, h('h2', {}, 'Media quality'), media ? h('span', { class: 'muted' }, `RTPEngine ${media.engine}`) : null);
  if (!media) {
    return h('section', { class: 'panel', 'data-testid': 'media' }, head,
      h('p', { class: 'empty', 'data-testid': 'media-none' }, isFinal(rec) ? 'No media figures: the call was not answered or media was not anchored.' : 'Media figures arrive when the call ends.'));
  }
  const ways = [['callerToCallee', media.callerToCallee || {}], ['calleeToCaller', media.calleeToCaller || {}]];
  const lossText = (d) => {
    const lost = d.packetsLost;
    if (lost === null || lost === undefined) return '—';
    const total = Number(d.packets) + Number(lost);
    return `${fmtCount(lost)}${total > 0 ? ` (${((Number(lost) / total) * 100).toFixed(2)} %)` : ''}`;
  };
  const metrics = [
    ['packets', 'Packets', (d) => fmtCount(d.packets)],
    ['bytes', 'Bytes', (d) => fmtBytes(d.bytes)],
    ['lost', 'Lost', lossText],
    ['jitter', 'Jitter', (d) => (d.jitterMs === null || d.jitterMs === undefined ? '—' : `${d.jitterMs} ms`)],
    ['mos', 'MOS', (d) => fmtMos(d.mos)],
  ];
  return h('section', { class: 'panel', 'data-testid': 'media' }, head,
    h('table', { class: 'grid media', 'data-testid': 'media-table' },
      h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', { class: 'num' }, 'caller → callee'), h('th', { class: 'num' }, 'callee → caller'))),
      h('tbody', {}, metrics.map(([key, label, show]) => h('tr', { 'data-metric': key },
        h('th', { scope: 'row' }, label),
        ways.map(([way, d]) => h('td', {
          class: `num${key === 'mos' ? ` ${mosClass(d.mos)}` : ''}`,
          'data-dir': way,
          title: key === 'bytes' ? `${d.bytes} bytes` : undefined,
        }, show(d))))))));
}

function renderCallPage() {
  const { call: rec, messages = [], truncated } = state.call.data;
  document.title = `${callerOf(rec)} → ${rec.callee} · B2BUA operator`;
  const meta = h('div', { class: 'msg-meta', 'data-testid': 'message-meta' }, 'Select an arrow in the ladder to read its message.');
  const text = h('pre', { class: 'msg-text', 'data-testid': 'message-text', tabindex: 0 });
  const ladder = renderLadder(messages, {
    onSelect: (index, message, info) => {
      state.call.selected = index;
      const inbound = message.dir === 'in';
      replaceChildren(meta,
        h('span', { class: `badge leg-${message.leg === 'b' ? 'b' : 'a'}` }, `leg ${message.leg}`),
        h('strong', {}, info.label),
        info.kind === 'response' && info.cseq ? h('span', { class: 'muted' }, `CSeq ${info.cseq}`) : null,
        h('span', {}, `#${index + 1} of ${messages.length}`),
        h('span', {}, `${inbound ? 'received' : 'sent'} ${message.transport || ''}`.trim()),
        h('span', { class: 'mono' }, inbound ? `${message.peer} → ${message.local}` : `${message.local} → ${message.peer}`),
        h('span', { class: 'mono', title: fmtIso(message.at) }, `${fmtClock(message.at)} (${fmtOffset(message.at, messages[0].at)})`));
      text.textContent = String(message.text ?? '').replace(/\r\n/g, '\n');
    },
  });
  const head = callHead(rec);
  const record = recordPanel(rec);
  const media = mediaPanel(rec);
  const note = isFinal(rec) ? null : h('p', { class: 'muted' }, 'The call is in progress: the ladder shows its messages so far and follows it until it ends.');
  replaceChildren(ui.callpage,
    head,
    h('div', { class: 'call-layout' },
      h('div', { class: 'call-main' },
        h('div', { class: 'call-facts' }, record, media),
        h('section', { class: 'panel', 'data-testid': 'ladder-panel' },
          h('header', { class: 'panel-head' },
            h('h2', {}, 'SIP ladder'),
            h('span', { class: 'muted' }, `${messages.length} message${messages.length === 1 ? '' : 's'}`),
            h('span', { class: 'legend' }, h('span', { class: 'key leg-a' }, 'leg a'), h('span', { class: 'key leg-b' }, 'leg b'),
              h('span', { class: 'key req' }, 'request'), h('span', { class: 'key resp' }, 'response'))),
          truncated ? h('p', { class: 'warn', 'data-testid': 'truncated' }, 'Only the first messages of this call were stored.') : null,
          note,
          h('div', { class: 'ladder-wrap' }, ladder.element))),
      h('aside', { class: 'panel message-panel', 'data-testid': 'message-panel' },
        h('header', { class: 'panel-head' }, h('h2', {}, 'Message')),
        meta,
        text)));
  state.call.parts = { head, record, media, ladder };
}

/** Updates the record and media from a `call` event without redrawing the ladder. */
function updateCallRecord(rec) {
  if (!state.call || !state.call.parts) return;
  state.call.data = { ...state.call.data, call: rec };
  const parts = state.call.parts;
  const record = recordPanel(rec);
  const media = mediaPanel(rec);
  parts.record.replaceWith(record);
  parts.media.replaceWith(media);
  parts.record = record;
  parts.media = media;
  refreshCallHead();
}

function downloadMessages() {
  if (!state.call || !state.call.data) return;
  const { call: rec, messages = [] } = state.call.data;
  const lines = messages.map((m, i) => [
    `===== #${i + 1} leg ${m.leg} ${m.dir === 'in' ? 'received' : 'sent'} ${m.transport} ${m.dir === 'in' ? `${m.peer} -> ${m.local}` : `${m.local} -> ${m.peer}`} at ${m.at}`,
    String(m.text ?? '').replace(/\r\n/g, '\n'),
    '',
  ].join('\n'));
  const blob = new Blob([`call ${rec.id} (A ${rec.aCallId}, B ${rec.bCallId ?? '-'})\n\n`, ...lines], { type: 'text/plain' });
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: `call-${String(rec.id).replace(/[^A-Za-z0-9._-]/g, '_')}.txt` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---------------------------------------------------------------------------------------------
// Start

buildOutcomeBoxes();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void signIn(saved);
else showSignin('');
