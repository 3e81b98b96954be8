// The operator web page in a real browser against the real stack: Debian's Chromium driven by
// playwright-core signs in with the stack's tokens, reads the history of calls placed by SIPp
// phones, opens a call's page (record, media figures, SIP ladder, message text), follows live
// calls over the event stream, and hangs one up with an admin token.
//
// Chromium is required: when /usr/bin/chromium is missing the file fails and says what to install.

import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import t from 'tap';
import { runSipp, SCENARIO_DIR, sippHeader, type SippResult } from '../support/sipp';
import { call, expectSippOk, finalCall, stackSuite, startCallee, type TestStack } from '../support/stack';
import { waitUntil } from '../support/wait';

const CHROMIUM = '/usr/bin/chromium';
// The flags Chromium needs on these machines: root, no GPU, and a closed network (no background
// fetches to Google's hosts).
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const NO_ANSWER_TIMEOUT_SEC = 4;
/** A display name a page that used innerHTML would turn into a script. */
const HOSTILE_NAME = '<img src=x onerror=window.__xss=1>';

const ok = expectSippOk;

/** What a PNG holds, decoded by hand (8-bit RGB or RGBA, not interlaced: what Chromium writes). */
function pngSummary(png: Buffer): { width: number; height: number; colours: number; dominantShare: number } {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (png.length < 8 || !png.subarray(0, 8).equals(signature)) throw new Error('not a PNG (bad signature)');
  let offset = 8;
  let width = 0;
  let height = 0;
  let depth = 0;
  let colourType = 0;
  let interlace = 0;
  const idat: Buffer[] = [];
  while (offset + 8 <= png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8] ?? 0;
      colourType = data[9] ?? 0;
      interlace = data[12] ?? 0;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    offset += 12 + length;
  }
  if (depth !== 8 || interlace !== 0 || (colourType !== 2 && colourType !== 6)) {
    throw new Error(`unsupported PNG: bit depth ${depth}, colour type ${colourType}, interlace ${interlace}`);
  }
  const bpp = colourType === 6 ? 4 : 3;
  const stride = width * bpp;
  const raw = inflateSync(Buffer.concat(idat));
  if (raw.length < height * (stride + 1)) throw new Error(`PNG data too short: ${raw.length} bytes for ${width}x${height}`);
  let prev = Buffer.alloc(stride);
  let cur = Buffer.alloc(stride);
  const counts = new Map<number, number>();
  for (let y = 0; y < height; y += 1) {
    const base = y * (stride + 1);
    const filter = raw[base] ?? 0;
    for (let x = 0; x < stride; x += 1) {
      const value = raw[base + 1 + x] ?? 0;
      const a = x >= bpp ? (cur[x - bpp] ?? 0) : 0;
      const b = prev[x] ?? 0;
      const c = x >= bpp ? (prev[x - bpp] ?? 0) : 0;
      let predicted: number;
      switch (filter) {
        case 0: predicted = 0; break;
        case 1: predicted = a; break;
        case 2: predicted = b; break;
        case 3: predicted = (a + b) >> 1; break;
        case 4: {
          // Paeth (PNG spec, 9.4)
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`bad PNG filter ${filter} on row ${y}`);
      }
      cur[x] = (value + predicted) & 0xff;
    }
    for (let x = 0; x < stride; x += bpp) {
      const rgb = ((cur[x] ?? 0) << 16) | ((cur[x + 1] ?? 0) << 8) | (cur[x + 2] ?? 0);
      counts.set(rgb, (counts.get(rgb) ?? 0) + 1);
    }
    [prev, cur] = [cur, prev];
  }
  const dominant = Math.max(0, ...counts.values());
  return { width, height, colours: counts.size, dominantShare: width * height > 0 ? dominant / (width * height) : 1 };
}

/** The Call-ID of the first INVITE a SIPp phone sent (the A leg's Call-ID). */
function sentCallId(r: SippResult): string {
  const invite = r.trace.find((m) => m.direction === 'sent' && m.method === 'INVITE');
  const id = invite ? sippHeader(invite, 'Call-ID') : undefined;
  if (!id) throw new Error(`the caller sent no INVITE with a Call-ID:\n${r.stdout.slice(-1000)}`);
  return id;
}

/** A phone that calls and stays in the call until the far side hangs up (the operator, here). */
function callUntilBye(s: TestStack, ext: string, target: string): Promise<SippResult> {
  return runSipp({
    scenario: 'uac-ext-expect-bye',
    remote: s.sip,
    service: target,
    keys: { caller: ext },
    recvTimeoutMs: 30_000,
    timeoutSec: 45,
    extraArgs: ['-au', ext, '-ap', s.passwords[ext] ?? ''],
  });
}

/** Waits for a selector; on timeout tells what the live panel, its event stream and the API showed. */
async function waitOrExplain(page: Page, s: TestStack, selector: string, options: { state?: 'visible' | 'detached'; timeout?: number } = {}): Promise<void> {
  try {
    await page.locator(selector).first().waitFor(options);
  } catch (err) {
    const live = await page.locator('[data-testid="live-body"]').evaluate((el) => el.outerHTML).catch((e: Error) => e.message);
    const stream = await page.locator('[data-testid="sse-status"]').evaluate((el) => `${el.getAttribute('data-state')}: ${el.getAttribute('title')}`).catch((e: Error) => e.message);
    const api = JSON.stringify((await s.api('/api/calls/live', { token: s.readToken })).body);
    throw new Error(`${(err as Error).message}\nlive panel: ${live}\nevent stream: ${stream}\n/api/calls/live: ${api}`);
  }
}

if (!existsSync(CHROMIUM)) {
  t.fail(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y --no-install-recommends chromium) to run the operator web page test`);
} else {
  const stack = stackSuite(t, { b2buaEnv: { NO_ANSWER_TIMEOUT: String(NO_ANSWER_TIMEOUT_SEC) } });
  const dir = mkdtempSync(join(tmpdir(), 'web-page-test-'));
  let browser: Browser | undefined;

  t.before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });
  t.teardown(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  interface OpenPage {
    page: Page;
    context: BrowserContext;
    /** Uncaught exceptions and console errors (CSP violations among them). */
    problems: string[];
    close(): Promise<void>;
  }

  const open = async (s: TestStack): Promise<OpenPage> => {
    if (!browser) throw new Error('the browser is not started');
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1, colorScheme: 'light' });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      // A 401 or 404 answer is logged by Chromium itself; the page reports those on its own.
      if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) problems.push(`console: ${msg.text()}`);
    });
    await page.goto(`http://127.0.0.1:${s.operatorPort}/`);
    return { page, context, problems, close: () => context.close() };
  };

  const signIn = async (page: Page, token: string): Promise<void> => {
    await page.getByTestId('token-input').fill(token);
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('dashboard').waitFor({ state: 'visible' });
    await page.locator('[data-testid="sse-status"][data-state="open"]').waitFor();
    await page.locator('[data-testid="history-body"][data-loaded="true"]').waitFor({ state: 'attached' });
  };

  const text = async (page: Page, selector: string): Promise<string> => ((await page.locator(selector).first().textContent()) ?? '').trim();
  const count = (text: string): number => Number(text.replace(/[^0-9]/g, '') || 'NaN');

  t.test('sign-in: a wrong token is refused with the reason; the token lasts the tab; sign out', async (tt) => {
    const s = stack();
    const { page, problems, close } = await open(s);
    try {
      await page.getByTestId('signin').waitFor({ state: 'visible' });
      tt.equal(await page.getByTestId('token-input').getAttribute('type'), 'password', 'the token field is a password field');
      await page.getByTestId('token-input').fill('not-a-token');
      await page.getByTestId('signin-submit').click();
      await page.getByTestId('signin-error').waitFor({ state: 'visible' });
      tt.match(await text(page, '[data-testid="signin-error"]'), /valid bearer token/, 'the API\'s reason is shown');
      tt.ok(await page.getByTestId('dashboard').isHidden(), 'nothing else is shown');

      await signIn(page, s.readToken);
      tt.equal(await text(page, '[data-testid="access"]'), 'read');
      await page.reload();
      await page.getByTestId('dashboard').waitFor({ state: 'visible' });
      tt.pass('a reload keeps the session (sessionStorage)');
      await page.getByTestId('signout').click();
      await page.getByTestId('signin').waitFor({ state: 'visible' });
      tt.equal(await page.evaluate('sessionStorage.length'), 0, 'signing out forgets the token');
      tt.same(problems, [], 'no script errors');
    } finally {
      await close();
    }
  });

  t.test('history, filters, call page with record, media and SIP ladder (read token)', async (tt) => {
    const s = stack();
    // An answered call with audio both ways.
    const callee = await startCallee(s, '6002', 'uas-ext-answer');
    const r = await call(s, '6001', '6002', 'uac-ext-audio', { holdMs: 1500 });
    ok(tt, await callee.finish(), 'callee');
    ok(tt, r, 'caller');
    const answered = await finalCall(s, sentCallId(r));
    tt.equal(answered.call.outcome, 'answered');

    // A busy call whose caller puts markup in its display name.
    const hostile = join(dir, 'uac-ext-fail-hostile.xml');
    writeFileSync(hostile, readFileSync(join(SCENARIO_DIR, 'uac-ext-fail.xml'), 'latin1').replaceAll('"Ext [caller]"', `"${HOSTILE_NAME}"`), 'latin1');
    const busyCallee = await startCallee(s, '6002', 'uas-ext-busy');
    const rb = await call(s, '6001', '6002', hostile);
    ok(tt, await busyCallee.finish(), 'busy callee');
    ok(tt, rb, 'busy caller');
    const busy = await finalCall(s, sentCallId(rb));
    tt.equal(busy.call.outcome, 'busy');
    tt.equal(busy.call.callerName, HOSTILE_NAME, 'the B2BUA recorded the hostile display name as it came');

    const { page, problems, close } = await open(s);
    try {
      await signIn(page, s.readToken);
      const row = (id: string): string => `[data-testid="history-row"][data-call-id="${id}"]`;
      await page.locator(row(answered.call.id)).waitFor();
      await page.locator(row(busy.call.id)).waitFor();
      tt.equal(await text(page, `${row(answered.call.id)} [data-col="outcome"]`), 'answered', 'the answered call is listed as answered');
      tt.equal(await text(page, `${row(busy.call.id)} [data-col="outcome"]`), 'busy', 'the busy call as busy');
      tt.match(await text(page, `${row(busy.call.id)} [data-col="b-status"]`), /^486/, 'with the callee\'s 486');
      tt.match(await text(page, `${row(answered.call.id)} [data-col="hangup"]`), 'caller', 'the caller hung up the answered call');
      const ids = await page.locator('[data-testid="history-row"]').evaluateAll((rows) => rows.map((el) => el.getAttribute('data-call-id')));
      tt.ok(ids.indexOf(busy.call.id) < ids.indexOf(answered.call.id), 'newest first');

      // Markup from SIP is text, never HTML.
      tt.ok((await text(page, `${row(busy.call.id)} [data-col="caller"]`)).includes(HOSTILE_NAME), 'the hostile display name is shown literally');
      tt.equal(await page.locator('main img').count(), 0, 'and made no element');
      tt.equal(await page.evaluate('typeof window.__xss'), 'undefined', 'and ran nothing');

      // The summary strip.
      await page.locator('[data-testid="stat-calls"]').waitFor();
      tt.ok(count(await text(page, '[data-testid="stat-calls"] .stat-value')) >= 2, 'the stats count the calls');
      tt.match(await text(page, '[data-testid="stat-asr"]'), /%/, 'and show the ASR');
      tt.match(await text(page, '[data-testid="stat-capacity"]'), /\d/, 'and the capacity left');

      // Filters: outcome multi-select, then free text.
      await page.getByTestId('filter-outcome-busy').check();
      await page.getByTestId('filter-apply').click();
      await page.locator(row(answered.call.id)).waitFor({ state: 'detached' });
      const outcomes = await page.locator('[data-testid="history-row"]').evaluateAll((rows) => rows.map((el) => el.getAttribute('data-outcome')));
      tt.ok(outcomes.length >= 1 && outcomes.every((o) => o === 'busy'), `the busy filter lists busy calls only (${outcomes.join(',')})`);
      await page.getByTestId('filter-reset').click();
      await page.locator(row(answered.call.id)).waitFor();
      await page.getByTestId('filter-q').fill(answered.call.aCallId);
      await page.getByTestId('filter-apply').click();
      await page.locator(row(busy.call.id)).waitFor({ state: 'detached' });
      tt.equal(await page.locator('[data-testid="history-row"]').count(), 1, 'searching the A-leg Call-ID finds that call only');

      // The call page.
      await page.locator(`${row(answered.call.id)} [data-testid="call-link"]`).click();
      await page.getByTestId('call-page').waitFor({ state: 'visible' });
      await page.getByTestId('ladder').waitFor();
      tt.equal(new URL(page.url()).hash, `#/calls/${answered.call.id}`, 'the call page has its own address');
      const field = (name: string): Promise<string> => text(page, `[data-testid="field-${name}"]`);
      tt.equal(await field('outcome'), 'answered');
      tt.match(await field('aStatus'), /^200/, 'A status 200');
      tt.match(await field('bStatus'), /^200/, 'B status 200');
      tt.equal(await field('hangupBy'), 'caller');
      tt.equal(await field('aCallId'), answered.call.aCallId, 'the A-leg Call-ID');
      tt.equal(await field('bCallId'), answered.call.bCallId, 'the B-leg Call-ID');
      tt.match(await field('billable'), /^\d+ s$/, 'billable seconds');
      const packets = async (way: string): Promise<number> => count(await text(page, `[data-testid="media-table"] [data-metric="packets"] [data-dir="${way}"]`));
      tt.ok((await packets('callerToCallee')) > 0, 'media packets caller -> callee');
      tt.ok((await packets('calleeToCaller')) > 0, 'media packets callee -> caller');

      // The ladder: one arrow per message, every step of the call on both legs.
      const arrows = page.locator('[data-testid="ladder-arrow"]');
      tt.equal(await arrows.count(), answered.messages.length, 'one arrow per stored message');
      const arrow = (leg: string, kind: string, method: string, status?: number): string =>
        `[data-testid="ladder-arrow"][data-leg="${leg}"][data-kind="${kind}"][data-method="${method}"]${status ? `[data-status="${status}"]` : ''}`;
      for (const leg of ['a', 'b']) {
        const steps: Array<[string, string, string, number | undefined]> = [
          ['INVITE', 'request', 'INVITE', undefined],
          ['180', 'response', 'INVITE', 180],
          ['200 (INVITE)', 'response', 'INVITE', 200],
          ['ACK', 'request', 'ACK', undefined],
          ['BYE', 'request', 'BYE', undefined],
          ['200 (BYE)', 'response', 'BYE', 200],
        ];
        for (const [label, kind, method, status] of steps) {
          tt.ok((await page.locator(arrow(leg, kind, method, status)).count()) >= 1, `leg ${leg}: ${label}`);
        }
      }
      tt.equal(await page.locator(arrow('a', 'request', 'INVITE')).first().getAttribute('data-dir'), 'in', 'leg a INVITE comes into the engine');
      tt.equal(await page.locator(arrow('b', 'request', 'INVITE')).first().getAttribute('data-dir'), 'out', 'leg b INVITE goes out of it');

      // Clicking an arrow shows that message's text.
      const okB = page.locator(arrow('b', 'response', 'INVITE', 200)).first();
      await okB.click();
      await page.locator(`${arrow('b', 'response', 'INVITE', 200)}.selected`).first().waitFor();
      const message = (await page.getByTestId('message-text').textContent()) ?? '';
      tt.match(message, /^SIP\/2\.0 200/, 'the panel shows the 200 OK');
      tt.ok(answered.call.bCallId && message.includes(answered.call.bCallId), 'of the B leg (its Call-ID)');
      tt.match(message, /\n\r?\nv=0/, 'with its SDP body after a blank line');
      tt.ok(message.includes('<sip:'), 'angle brackets shown as text');
      tt.match(await text(page, '[data-testid="message-meta"]'), /leg b/);

      // A screenshot of the page, checked for being a real picture.
      const png = join(dir, 'call-page.png');
      await page.screenshot({ path: png, fullPage: true });
      const summary = pngSummary(readFileSync(png));
      tt.ok(summary.width >= 1000 && summary.height >= 600, `screenshot size ${summary.width}x${summary.height}`);
      tt.ok(summary.colours >= 16, `screenshot has ${summary.colours} colours`);
      tt.ok(summary.dominantShare < 0.97, `and is not blank (${(summary.dominantShare * 100).toFixed(1)} % one colour)`);
      if (process.env.WEB_PAGE_SCREENSHOT) copyFileSync(png, process.env.WEB_PAGE_SCREENSHOT);
      if (process.env.WEB_PAGE_SCREENSHOT_DIR) {
        await page.getByTestId('back').click();
        await page.getByTestId('dashboard').waitFor({ state: 'visible' });
        await page.screenshot({ path: join(process.env.WEB_PAGE_SCREENSHOT_DIR, 'dashboard.png'), fullPage: true });
        await page.goBack();
      }

      // The page's hand-written SSE parser, fed awkward chunking.
      const parsed = (await page.evaluate(`(async () => {
        const { SseParser } = await import('/ui/sse.js');
        const events = [];
        const comments = [];
        const parser = new SseParser((e) => events.push(e), (c) => comments.push(c));
        for (const chunk of [': ping\\r', '\\n', 'event: call\\r\\ndata: {"a"', ':1}\\r\\n\\r', '\\ndata: one\\ndata:two\\n\\nevent: x\\nid: 7\\n\\n', 'data\\n\\nevent: end\\rdata: {}\\r\\r']) parser.push(chunk);
        return { events, comments };
      })()`)) as { events: unknown[]; comments: string[] };
      tt.same(parsed.comments, ['ping'], 'SSE: comments');
      tt.same(parsed.events, [
        { event: 'call', data: '{"a":1}', id: '' },
        { event: 'message', data: 'one\ntwo', id: '' },
        { event: 'message', data: '', id: '7' },
        { event: 'end', data: '{}', id: '7' },
      ], 'SSE: CRLF/LF/CR line ends, split chunks, multi-line data, events without data dropped');

      tt.same(problems, [], 'no script errors or CSP violations');
    } finally {
      await close();
    }
  });

  t.test('live calls over the event stream; admins hang up, readers cannot', async (tt) => {
    const s = stack();
    const reader = await open(s);
    const admin = await open(s);
    try {
      await signIn(reader.page, s.readToken);
      await signIn(admin.page, s.adminToken);
      tt.equal(await text(admin.page, '[data-testid="access"]'), 'admin');

      // A call that rings, then ends when nobody answers: it comes and goes in the live panel.
      const ringing = await startCallee(s, '6002', 'uas-ext-ring');
      const unanswered = call(s, '6001', '6002', 'uac-ext-fail');
      const ringRow = reader.page.locator('[data-testid="live-row"]');
      await waitOrExplain(reader.page, s, '[data-testid="live-row"]');
      const ringId = (await ringRow.first().getAttribute('data-call-id')) ?? '';
      tt.match(await ringRow.first().getAttribute('data-state'), /^(received|proceeding|early)$/, 'the ringing call is live');
      tt.equal(await text(reader.page, '[data-testid="live-row"] [data-col="callee"]'), '6002');
      await waitOrExplain(reader.page, s, `[data-testid="live-row"][data-call-id="${ringId}"]`, { state: 'detached', timeout: (NO_ANSWER_TIMEOUT_SEC + 6) * 1000 });
      tt.pass('and leaves the live panel when it ends');
      ok(tt, await unanswered, 'unanswered caller');
      ok(tt, await ringing.finish(), 'ringing callee');
      await reader.page.locator(`[data-testid="history-row"][data-call-id="${ringId}"][data-outcome="no-answer"]`).waitFor();
      tt.pass('its end puts it at the top of the history as no-answer');
      await s.settled();

      // A call that lasts until the operator ends it.
      const callee = await startCallee(s, '6002', 'uas-ext-answer');
      const caller = callUntilBye(s, '6001', '6002');
      const liveRow = reader.page.locator('[data-testid="live-row"][data-state="answered"]');
      await waitOrExplain(reader.page, s, '[data-testid="live-row"][data-state="answered"]');
      const id = (await liveRow.getAttribute('data-call-id')) ?? '';
      tt.match(id, /^[0-9a-f-]{36}$/, 'the answered call is live in the reader\'s panel');
      tt.equal(await reader.page.getByTestId('hangup').count(), 0, 'a read token gets no Hang up button');
      const elapsed = await text(reader.page, `[data-testid="live-row"][data-call-id="${id}"] [data-testid="live-elapsed"]`);
      const elapsedNow = await waitUntil(
        () => text(reader.page, `[data-testid="live-row"][data-call-id="${id}"] [data-testid="live-elapsed"]`),
        (v) => v !== elapsed,
        { timeoutMs: 5000, description: 'the elapsed time to change' },
      );
      tt.pass(`the elapsed time ticks (${elapsed} -> ${elapsedNow})`);
      if (process.env.WEB_PAGE_SCREENSHOT_DIR) await admin.page.screenshot({ path: join(process.env.WEB_PAGE_SCREENSHOT_DIR, 'live.png'), fullPage: true });

      const button = admin.page.locator(`[data-testid="live-row"][data-call-id="${id}"] [data-testid="hangup"]`);
      await button.waitFor();
      let question = '';
      admin.page.once('dialog', (dialog) => {
        question = dialog.message();
        void dialog.accept();
      });
      await button.click();
      for (const { page } of [admin, reader]) await waitOrExplain(page, s, `[data-testid="live-row"][data-call-id="${id}"]`, { state: 'detached' });
      tt.match(question, /6001 → 6002/, 'the admin was asked to confirm');
      tt.pass('the call left both live panels');
      ok(tt, await caller, 'caller (got the BYE)');
      ok(tt, await callee.finish(), 'callee (got the BYE)');

      const final = await finalCall(s, id);
      tt.equal(final.call.hangupBy, 'operator', 'the record says the operator hung up');
      const top = admin.page.locator('[data-testid="history-row"]').first();
      await admin.page.locator(`[data-testid="history-row"][data-call-id="${id}"] [data-col="hangup"]`).filter({ hasText: 'operator' }).waitFor();
      tt.equal(await top.getAttribute('data-call-id'), id, 'the ended call tops the admin\'s history');
      tt.same(reader.problems, [], 'no script errors (reader)');
      tt.same(admin.problems, [], 'no script errors (admin)');
    } finally {
      await reader.close();
      await admin.close();
    }
  });
}
