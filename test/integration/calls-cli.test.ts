// The `calls` operator CLI (the compiled dist/app/calls.js) against a real stack: SIPp phones
// place an answered call and a busy call through Kamailio, the engine, the B2BUA and RTPEngine;
// then `list`, `show`, `export --csv` and `tail` read them back through the operator API with a
// read token given by OPERATOR_URL/OPERATOR_TOKEN. Every process started here is stopped by PID.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import type { CallRecordJson } from '../../lib/operator/api-schemas';
import { received, sippHeader, type SippResult } from '../support/sipp';
import { call, expectSippOk, finalCall, stackSuite, startCallee, type TestStack } from '../support/stack';
import { waitUntil } from '../support/wait';

const CLI = resolve(__dirname, '..', '..', 'dist', 'app', 'calls.js');

const stack = stackSuite(t, { b2buaEnv: { NO_ANSWER_TIMEOUT: '2' } });

/** A working directory without .env or var/, so only the variables given here count. */
const cwd = mkdtempSync(join(tmpdir(), 'calls-cli-it-'));
t.teardown(() => rmSync(cwd, { recursive: true, force: true }));

function cliEnv(s: TestStack, token = s.readToken): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', OPERATOR_URL: `http://127.0.0.1:${s.operatorPort}`, OPERATOR_TOKEN: token };
}

interface CliRun {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the CLI to its end (killed by PID after 30 s if it hangs). */
function runCli(s: TestStack, args: string[], token?: string): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: cliEnv(s, token), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 30_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, out, err });
    });
  });
}

/** The B2BUA's call id, from the X-Call-ID the callee received. */
function xCallId(callee: SippResult): string {
  const inv = received(callee, { method: 'INVITE' })[0];
  return (inv ? sippHeader(inv, 'X-Call-ID') : undefined) ?? '';
}

/** The ladder's rows split into the two lanes: which leg carried which label, in order. */
function ladderLanes(text: string): { a: string[]; b: string[] } {
  const a: string[] = [];
  const b: string[] = [];
  for (const line of text.split('\n')) {
    if (!/^ +\+\d+\.\d{3} +│/.test(line)) continue;
    const [, laneA = '', laneB = ''] = line.split('│');
    const label = (lane: string): string => lane.replace(/[─◀▶]/g, '').trim();
    if (laneA.trim() !== '') a.push(label(laneA));
    if (laneB.trim() !== '') b.push(label(laneB));
  }
  return { a, b };
}

function hasAll(tt: Parameters<Parameters<typeof t.test>[0]>[0], labels: string[], wanted: RegExp[], leg: string): void {
  for (const w of wanted) tt.ok(labels.some((l) => w.test(l)), `leg ${leg} shows ${w.source}${labels.some((l) => w.test(l)) ? '' : ` (got ${labels.join(' | ')})`}`);
}

let answeredId = '';
let busyId = '';

t.test('place an answered call and a busy call', async (tt) => {
  const s = stack();
  const callee = await startCallee(s, '6002', 'uas-ext-answer');
  const r = await call(s, '6001', '6002', 'uac-ext-audio', { holdMs: 1500 });
  const c = await callee.finish();
  expectSippOk(tt, r, 'answered caller');
  expectSippOk(tt, c, 'answered callee');
  answeredId = xCallId(c);
  tt.match(answeredId, /^[0-9a-f-]{36}$/, 'the answered call has an id');

  const busyCallee = await startCallee(s, '6002', 'uas-ext-busy');
  const rb = await call(s, '6001', '6002', 'uac-ext-fail');
  const cb = await busyCallee.finish();
  expectSippOk(tt, rb, 'busy caller');
  expectSippOk(tt, cb, 'busy callee');
  busyId = xCallId(cb);
  tt.match(busyId, /^[0-9a-f-]{36}$/, 'the busy call has an id');
  await s.settled();
  // Both records final, with their SIP messages stored, before the CLI reads them.
  await finalCall(s, answeredId);
  await finalCall(s, busyId);
});

t.test('list: a table and JSON, with filters', async (tt) => {
  const s = stack();
  const json = await runCli(s, ['list', '--json', '--callee', '6002', '--from', '-1h']);
  tt.equal(json.code, 0, json.err);
  const { calls } = JSON.parse(json.out) as { calls: CallRecordJson[] };
  const answered = calls.find((c) => c.id === answeredId);
  const busy = calls.find((c) => c.id === busyId);
  tt.match(answered, { outcome: 'answered', hangupBy: 'caller', aStatus: 200, bStatus: 200, callerUser: '6001', callee: '6002', live: false });
  tt.match(busy, { outcome: 'busy', hangupBy: 'callee', aStatus: 486, bStatus: 486, live: false });
  tt.ok(calls.indexOf(busy as CallRecordJson) < calls.indexOf(answered as CallRecordJson), 'newest first');

  const table = await runCli(s, ['list']);
  tt.equal(table.code, 0, table.err);
  const lines = table.out.trimEnd().split('\n');
  tt.match(lines[0] ?? '', /^TIME \(UTC\) +ID +CALLER +CALLEE +OUTCOME +A\/B +HANGUP +DURATION +PDD +RTP PKTS +MOS$/);
  const row = (id: string): string => lines.find((l) => l.includes(` ${id.slice(0, 8)} `)) ?? '';
  tt.match(row(answeredId), / 6001 +6002 +answered +200\/200 +caller +\d+\.\ds +\d+ms +[1-9]\d*\/[1-9]\d* /, 'the answered call, with RTP packets both ways');
  tt.match(row(busyId), / 6001 +6002 +busy +486\/486 +callee /, 'the busy call');

  const onlyBusy = await runCli(s, ['list', '--json', '--outcome', 'busy']);
  const ids = (JSON.parse(onlyBusy.out) as { calls: CallRecordJson[] }).calls.map((c) => c.id);
  tt.ok(ids.includes(busyId) && !ids.includes(answeredId), '--outcome filters');

  const paged = await runCli(s, ['list', '--json', '--limit', '1', '--all']);
  const all = (JSON.parse(paged.out) as { calls: CallRecordJson[] }).calls.map((c) => c.id);
  tt.ok(all.includes(busyId) && all.includes(answeredId), '--all follows the cursor across one-call pages');
});

t.test('show: every field, media both ways, and a ladder of both legs', async (tt) => {
  const s = stack();
  const text = await runCli(s, ['show', answeredId]);
  tt.equal(text.code, 0, text.err);
  tt.match(text.out, new RegExp(`^call ${answeredId}\\n`));
  tt.match(text.out, /outcome +answered, hung up by caller/);
  tt.match(text.out, /A leg +Call-ID \S+ +final 200 OK/);
  tt.match(text.out, /B leg +Call-ID \S+ +final 200 OK/);
  const media = /caller -> callee +(\d+) +(\d+)[\s\S]*callee -> caller +(\d+) +(\d+)/.exec(text.out);
  tt.ok(Number(media?.[1]) > 0 && Number(media?.[3]) > 0, `RTP packets both ways (${media?.[1]}, ${media?.[3]})`);
  const { a, b } = ladderLanes(text.out);
  hasAll(tt, a, [/^INVITE sip:/, /^180 /, /^200 OK/, /^ACK /, /^BYE /], 'a');
  hasAll(tt, b, [/^INVITE sip:/, /^180 /, /^200 OK/, /^ACK /, /^BYE /], 'b');
  tt.ok(a.findIndex((l) => l.startsWith('INVITE')) < a.findIndex((l) => l.startsWith('BYE')), 'in time order');

  const json = await runCli(s, ['show', answeredId, '--json']);
  const view = JSON.parse(json.out) as { call: CallRecordJson; messages: unknown[] };
  tt.ok((view.call.media?.callerToCallee.packets ?? 0) > 0, 'JSON media caller -> callee');
  tt.ok((view.call.media?.calleeToCaller.packets ?? 0) > 0, 'JSON media callee -> caller');
  const byCallId = await runCli(s, ['show', view.call.aCallId]);
  tt.match(byCallId.out, new RegExp(`^call ${answeredId}\\n`), 'found by the A leg\'s SIP Call-ID too');

  const busy = await runCli(s, ['show', busyId, '--ascii']);
  tt.equal(busy.code, 0, busy.err);
  tt.match(busy.out, /outcome +busy, hung up by callee/);
  tt.match(busy.out, /A leg +Call-ID \S+ +final 486 Busy Here/);
  tt.match(busy.out, /\|<-+ 486 Busy Here --\|/, 'the 486 in the ASCII ladder');
});

t.test('export --csv: every call, one column per field', async (tt) => {
  const s = stack();
  const file = join(cwd, 'calls.csv');
  const r = await runCli(s, ['export', '--csv', '--callee', '6002', '--out', file]);
  tt.equal(r.code, 0, r.err);
  tt.match(r.err, /exported \d+ calls to /);
  const rows = readFileSync(file, 'utf8').split('\r\n').filter((l) => l !== '').map((l) => l.split(','));
  const header = rows[0] ?? [];
  const get = (id: string, col: string): string | undefined => rows.find((rw) => rw[0] === id)?.[header.indexOf(col)];
  tt.equal(get(answeredId, 'outcome'), 'answered');
  tt.equal(get(answeredId, 'hangupBy'), 'caller');
  tt.equal(get(answeredId, 'aStatus'), '200');
  tt.ok(Number(get(answeredId, 'callerToCalleePackets')) > 0 && Number(get(answeredId, 'calleeToCallerPackets')) > 0, 'media figures');
  tt.match(get(answeredId, 'answeredAt') ?? '', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'ISO times');
  tt.equal(get(busyId, 'outcome'), 'busy');
  tt.equal(get(busyId, 'bStatus'), '486');
  tt.equal(get(busyId, 'answeredAt'), '', 'null is empty');
});

t.test('errors from the real API: a bad token, an unknown call, bad input', async (tt) => {
  const s = stack();
  const bad = await runCli(s, ['list'], 'not-the-token-0123456789');
  tt.equal(bad.code, 1);
  tt.match(bad.err, /refused \/api\/calls: 401 unauthorized: a valid bearer token is required \(the token came from OPERATOR_TOKEN\)/);
  tt.notMatch(bad.out + bad.err, /not-the-token-0123456789/, 'the token is not printed');
  const missing = await runCli(s, ['show', 'no-such-call@nowhere']);
  tt.equal(missing.code, 1);
  tt.match(missing.err, /404 not-found: no call no-such-call@nowhere/);
  const badQ = await runCli(s, ['list', '--q', 'x'.repeat(101)]);
  tt.equal(badQ.code, 1);
  tt.match(badQ.err, /400 bad-request: /, 'the API\'s 400 reason is shown');
  const usage = await runCli(s, ['list', '--outcome', 'lost']);
  tt.equal(usage.code, 2);
  tt.match(usage.err, /unknown outcome "lost"/);
});

t.test('tail: one line per state change and the end, SIGTERM exits 0', async (tt) => {
  const s = stack();
  const child: ChildProcess = spawn(process.execPath, [CLI, 'tail'], { cwd, env: cliEnv(s), stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('exit', (code, signal) => done({ code, signal })));
  tt.teardown(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  await waitUntil(() => err, (e) => e.includes('following'), { timeoutMs: 10_000, description: 'tail connected to the event stream' });

  const callee = await startCallee(s, '6002', 'uas-ext-answer');
  const r = await call(s, '6001', '6002', 'uac-ext-audio', { holdMs: 500 });
  const c = await callee.finish();
  expectSippOk(tt, r, 'caller');
  expectSippOk(tt, c, 'callee');
  const short = xCallId(c).slice(0, 8);
  const lines = await waitUntil(
    () => out.split('\n').filter((l) => l.includes(`  ${short}  `)),
    (ls) => ls.some((l) => / end /.test(l)),
    { timeoutMs: 15_000, description: `the end line of call ${short}` },
  );
  tt.match(lines[0] ?? '', new RegExp(`^\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z  ${short}  6001 -> 6002  received$`), 'first the received state');
  tt.ok(lines.some((l) => / {2}answered$/.test(l)), 'then answered');
  tt.match(lines[lines.length - 1] ?? '', / end answered · A 200 \/ B 200 · hung up by caller · \d+\.\ds/, 'the end line');
  tt.equal(new Set(lines).size, lines.length, 'no line twice');

  process.kill(child.pid as number, 'SIGTERM');
  const { code, signal } = await exited;
  tt.equal(code, 0, `tail exits 0 on SIGTERM${err ? ` (stderr: ${err.trim()})` : ''}`);
  tt.equal(signal, null);
  await s.settled();
});
