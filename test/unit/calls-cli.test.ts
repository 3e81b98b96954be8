// The `calls` operator CLI (lib/operator/calls-cli.ts) and its pure parts: the SIP ladder
// (ladder-text.ts), CSV (csv.ts), argument and time parsing, settings, error messages. The HTTP
// side runs against a scripted fetch (the real API is exercised by
// test/integration/calls-cli.test.ts); "connection refused" uses a real free port.

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { CallRecordJson } from '../../lib/operator/api-schemas';
import {
  CallsUsageError,
  formatCallRecord,
  formatCallsTable,
  formatDuration,
  formatTailLine,
  parseCallsArgs,
  parseTimeArg,
  resolveSettings,
  runCallsCli,
  SseParser,
  type CallsDeps,
  type FetchLike,
} from '../../lib/operator/calls-cli';
import { CALL_CSV_COLUMNS, callCsvRow, callsCsvHeader, csvField, csvRow } from '../../lib/operator/csv';
import { arrow, renderLadder, summarizeMessage, type LadderMessage } from '../../lib/operator/ladder-text';
import { freePorts, releasePorts } from '../support/ports';

const NOW = new Date('2024-05-01T12:00:00.000Z');
const TOKEN = 'tok-0123456789abcdef-secret';

function record(over: Partial<CallRecordJson> = {}): CallRecordJson {
  return {
    id: '3f2a9c1e-0000-4000-8000-000000000001',
    live: false,
    instance: 'b2bua-1',
    aCallId: 'a-call@10.0.0.5',
    bCallId: 'b-call-1',
    callerUser: '6001',
    callerName: 'Alice',
    callerAddress: '10.0.0.5',
    callerPort: 5062,
    callee: '6002',
    state: 'ended',
    receivedAt: '2024-05-01T10:00:00.000Z',
    ringingAt: '2024-05-01T10:00:00.120Z',
    answeredAt: '2024-05-01T10:00:02.000Z',
    endedAt: '2024-05-01T10:01:05.500Z',
    postDialDelayMs: 120,
    durationSec: 65.5,
    billableSec: 64,
    outcome: 'answered',
    hangupBy: 'caller',
    aStatus: 200,
    aReason: 'OK',
    bStatus: 200,
    bReason: 'OK',
    transfers: [],
    media: {
      callerToCallee: { packets: 3200, bytes: 550400, packetsLost: 2, jitterMs: 1.25, mos: 4.3 },
      calleeToCaller: { packets: 3190, bytes: 548680, packetsLost: null, jitterMs: null, mos: null },
      engine: '127.0.0.1:22222',
    },
    updatedAt: '2024-05-01T10:01:05.600Z',
    ...over,
  };
}

// ---------------------------------------------------------------------------------------------
// ladder

function msg(leg: 'a' | 'b', dir: 'in' | 'out', atMs: number, text: string, peer = '127.0.0.1:5060'): LadderMessage {
  return { leg, dir, at: new Date(Date.parse('2024-05-01T10:00:00.000Z') + atMs).toISOString(), transport: 'udp', peer, local: '127.0.0.2:5080', text };
}
const invite = (uri: string, cseq = 1): string => `INVITE ${uri} SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nCSeq: ${cseq} INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\r\n`;
const response = (status: string, method = 'INVITE', cseq = 1): string => `SIP/2.0 ${status}\r\nCSeq: ${cseq} ${method}\r\nContent-Length: 0\r\n\r\n`;
const request = (method: string, cseq: number): string => `${method} sip:x@127.0.0.2 SIP/2.0\r\nCSeq: ${cseq} ${method}\r\n\r\n`;

t.test('summarizeMessage reads the start line, CSeq and SDP', async (tt) => {
  tt.same(summarizeMessage(invite('sip:6002@h')), { label: 'INVITE sip:6002@h', method: 'INVITE', status: undefined, cseq: '1 INVITE', sdp: true });
  tt.same(summarizeMessage(response('486 Busy Here')), { label: '486 Busy Here', method: undefined, status: 486, cseq: '1 INVITE', sdp: false });
  tt.equal(summarizeMessage('SIP/2.0 200\r\ncseq: 7 BYE\r\n\r\n').label, '200', 'a status without a reason phrase');
  tt.equal(summarizeMessage('SIP/2.0 200\r\ncseq: 7 BYE\r\n\r\n').cseq, '7 BYE', 'header names are case-insensitive');
  tt.equal(summarizeMessage('ACK sip:a SIP/2.0\nc: application/sdp\n\nv=0\n').sdp, true, 'compact Content-Type and bare LF');
  tt.equal(summarizeMessage('garbage line\r\n\r\n').label, 'garbage line', 'an unparsable start line is shown as it is');
  tt.equal(summarizeMessage('').label, '(empty message)');
});

t.test('arrow() fills its lane exactly, clipping long labels', async (tt) => {
  tt.equal(arrow('BYE', 'right', 12), '── BYE ────▶');
  tt.equal(arrow('200 OK', 'left', 14), '◀─── 200 OK ──');
  tt.equal(arrow('INVITE sip:a-very-long-uri@example.com', 'right', 20), '── INVITE sip:a-… ─▶', 'clipped, one dash kept before the head');
  tt.equal(arrow('INVITE sip:a-very-long-uri@example.com', 'left', 20), '◀─ INVITE sip:a-… ──');
  tt.equal(arrow('INVITE sip:a-very-long-uri@example.com', 'right', 20, true), '-- INVITE sip:a-~ ->', 'ASCII mode');
  for (const w of [16, 20, 36]) tt.equal(arrow('x'.repeat(50), 'right', w).length, w, `exactly ${w} wide`);
});

t.test('renderLadder draws both legs in time order with directions, times, CSeq and notes', async (tt) => {
  // Given out of order on purpose: the ladder sorts by capture time, keeping order for equal times.
  const messages = [
    msg('b', 'out', 4, invite('sip:6002@127.0.0.1:5070')),
    msg('a', 'in', 0, invite('sip:6002@127.0.0.2')),
    msg('b', 'in', 9, response('180 Ringing')),
    msg('a', 'out', 10, response('180 Ringing')),
    msg('b', 'in', 1200, response('200 OK')),
    msg('a', 'out', 1210, response('200 OK')),
    msg('a', 'in', 1220, request('ACK', 1)),
    msg('b', 'out', 1221, request('ACK', 1)),
    msg('b', 'in', 1300, response('200 OK'), '127.0.0.1:5070'),
    msg('a', 'in', 3000, request('BYE', 2)),
    msg('a', 'in', 3500, request('BYE', 2)),
  ];
  const lines = renderLadder(messages, { laneWidth: 36 });
  tt.match(lines[0] ?? '', /caller side · leg a \(udp\).*engine \(B2BUA\).*callee side · leg b \(udp\)/, 'the three lifelines are named');
  tt.match(lines[1] ?? '', /Kamailio 127\.0\.0\.1:5060 .*127\.0\.0\.2:5080 .*Kamailio 127\.0\.0\.1:5060/, 'with their addresses');
  tt.match(lines[2] ?? '', /^ time \(s\) {3}│ {36}│ {36}│$/, 'then the time heading and bare lifelines');
  const rows = lines.slice(3);
  tt.equal(rows.length, messages.length, 'one line per message');
  for (const row of rows) {
    tt.equal(row.indexOf('│'), 12, 'the caller-side lifeline stays in its column');
    tt.equal(row[12 + 37], '│', 'so does the engine');
    tt.equal(row[12 + 74], '│', 'and the callee side');
  }
  tt.match(rows[0] ?? '', /^ {3}\+0\.000 {3}│── INVITE sip:6002@127\.0\.0\.2 ─+▶│ {36}│ {2}CSeq 1 INVITE · sdp$/, 'A leg INVITE: caller side to engine');
  tt.match(rows[1] ?? '', /^ {3}\+0\.004 {3}│ {36}│── INVITE sip:6002@127\.0\.0\.1:5070 ─+▶│ {2}CSeq 1 INVITE · sdp$/, 'B leg INVITE: engine to callee side');
  tt.match(rows[2] ?? '', /^ {3}\+0\.009 {3}│ {36}│◀─+ 180 Ringing ──│ {2}CSeq 1 INVITE$/, 'B leg 180: callee side to engine');
  tt.match(rows[3] ?? '', /^ {3}\+0\.010 {3}│◀─+ 180 Ringing ──│ {36}│ {2}CSeq 1 INVITE$/, 'A leg 180: engine to caller side');
  tt.match(rows[4] ?? '', /^ {3}\+1\.200 /, 'times are seconds since the first message, to the millisecond');
  tt.match(rows[8] ?? '', /200 OK.*CSeq 1 INVITE · from 127\.0\.0\.1:5070$/, 'a message from an unusual peer names it');
  tt.notMatch(rows[9] ?? '', /retransmission/, 'the first BYE is not a retransmission');
  tt.match(rows[10] ?? '', /BYE.*CSeq 2 BYE · retransmission$/, 'the identical second BYE is');
});

t.test('renderLadder in ASCII, narrow lanes, and without messages', async (tt) => {
  const lines = renderLadder([msg('a', 'in', 0, invite('sip:6002@127.0.0.2')), msg('a', 'out', 5, response('100 Trying'))], { ascii: true, laneWidth: 20 });
  tt.match(lines[0] ?? '', /caller side - leg a/);
  tt.match(lines[3] ?? '', /^ {3}\+0\.000 {3}\|-- INVITE sip:60~ ->\| {20}\| {2}CSeq 1 INVITE - sdp$/);
  tt.match(lines[4] ?? '', /^ {3}\+0\.005 {3}\|<-+ 100 Trying --\| {20}\| {2}CSeq 1 INVITE$/);
  tt.ok(lines.every((l) => /^[\x20-\x7e]*$/.test(l)), 'only printable ASCII');
  tt.same(renderLadder([]), ['(no SIP messages stored for this call)']);
  tt.equal(renderLadder([msg('a', 'in', 0, 'x')], { laneWidth: 3 })[2]?.length, 12 + 3 + 2 * 16, 'lanes are at least 16 wide');
});

// ---------------------------------------------------------------------------------------------
// CSV

/** An RFC 4180 reader, to check that what csv.ts writes reads back to the same fields. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  return rows;
}

t.test('csvField quotes per RFC 4180', async (tt) => {
  tt.equal(csvField('plain'), 'plain');
  tt.equal(csvField('a,b'), '"a,b"', 'a comma');
  tt.equal(csvField('say "hi"'), '"say ""hi"""', 'quotes doubled');
  tt.equal(csvField('two\r\nlines'), '"two\r\nlines"', 'CRLF');
  tt.equal(csvField('lf\nonly'), '"lf\nonly"', 'a bare LF');
  tt.equal(csvField(null), '');
  tt.equal(csvField(undefined), '');
  tt.equal(csvField(''), '');
  tt.equal(csvField(4.25), '4.25');
  tt.equal(csvField(-3), '-3', 'numbers are never guarded');
  tt.equal(csvField(Number.NaN), '');
  tt.equal(csvField(true), 'true');
  tt.equal(csvField('=HYPERLINK("http://evil")'), '"\'=HYPERLINK(""http://evil"")"', 'formula text is defused and quoted');
  tt.equal(csvField('+1 555'), "'+1 555");
  tt.equal(csvField('@SUM(A1)', { guardFormulas: false }), '@SUM(A1)', 'the guard can be turned off');
  tt.equal(csvRow(['a', 1, null, 'x,y']), 'a,1,,"x,y"\r\n', 'rows end with CRLF');
});

t.test('call records export one column per field, media flattened, ISO times', async (tt) => {
  const header = parseCsv(callsCsvHeader())[0] ?? [];
  tt.equal(header.length, CALL_CSV_COLUMNS.length);
  for (const name of ['id', 'live', 'state', 'outcome', 'hangupBy', 'callerUser', 'callerName', 'callerAddress', 'callerPort', 'callee', 'aCallId', 'bCallId', 'receivedAt', 'ringingAt', 'answeredAt', 'endedAt', 'postDialDelayMs', 'durationSec', 'billableSec', 'aStatus', 'aReason', 'bStatus', 'bReason', 'transfers', 'mediaEngine', 'callerToCalleePackets', 'callerToCalleeBytes', 'callerToCalleePacketsLost', 'callerToCalleeJitterMs', 'callerToCalleeMos', 'calleeToCallerPackets', 'calleeToCallerMos', 'instance', 'updatedAt']) {
    tt.ok(header.includes(name), `column ${name}`);
  }
  const weird = record({ callerName: 'Bob, "the builder"\r\nJr', receivedAt: '2024-05-01T12:00:00+02:00', transfers: ['6003', '6004'], aReason: '=cmd' });
  const [row] = parseCsv(callCsvRow(weird));
  const get = (name: string): string | undefined => row?.[header.indexOf(name)];
  tt.equal(row?.length, header.length, 'as many fields as columns');
  tt.equal(get('callerName'), 'Bob, "the builder"\r\nJr', 'quotes, commas and line breaks survive a round trip');
  tt.equal(get('receivedAt'), '2024-05-01T10:00:00.000Z', 'times are ISO-8601 UTC');
  tt.equal(get('answeredAt'), '2024-05-01T10:00:02.000Z');
  tt.equal(get('transfers'), '6003 6004');
  tt.equal(get('aReason'), "'=cmd");
  tt.equal(get('callerToCalleePackets'), '3200');
  tt.equal(get('callerToCalleeJitterMs'), '1.25');
  tt.equal(get('calleeToCallerMos'), '', 'null figures are empty');
  tt.equal(get('live'), 'false');
  const [bare] = parseCsv(callCsvRow(record({ media: null, ringingAt: null, bCallId: null })));
  tt.equal(bare?.[header.indexOf('mediaEngine')], '');
  tt.equal(bare?.[header.indexOf('callerToCalleePackets')], '');
  tt.equal(bare?.[header.indexOf('ringingAt')], '');
});

// ---------------------------------------------------------------------------------------------
// arguments and times

t.test('parseTimeArg: relative times, ISO forms, and a clear error', async (tt) => {
  tt.equal(parseTimeArg('-1h', NOW).toISOString(), '2024-05-01T11:00:00.000Z');
  tt.equal(parseTimeArg('-30m', NOW).toISOString(), '2024-05-01T11:30:00.000Z');
  tt.equal(parseTimeArg('-2d', NOW).toISOString(), '2024-04-29T12:00:00.000Z');
  tt.equal(parseTimeArg('-45s', NOW).toISOString(), '2024-05-01T11:59:15.000Z');
  tt.equal(parseTimeArg('-1w', NOW).toISOString(), '2024-04-24T12:00:00.000Z');
  tt.equal(parseTimeArg('-1.5h', NOW).toISOString(), '2024-05-01T10:30:00.000Z');
  tt.equal(parseTimeArg('now', NOW).toISOString(), NOW.toISOString());
  tt.equal(parseTimeArg('2024-04-30', NOW).toISOString(), '2024-04-30T00:00:00.000Z', 'a date is UTC midnight');
  tt.equal(parseTimeArg('2024-04-30T08:15:00Z', NOW).toISOString(), '2024-04-30T08:15:00.000Z');
  tt.equal(parseTimeArg('2024-04-30T08:15:00.250+02:00', NOW).toISOString(), '2024-04-30T06:15:00.250Z');
  tt.equal(parseTimeArg('2024-04-30T08:15', NOW).getTime(), new Date(2024, 3, 30, 8, 15).getTime(), 'no zone: local time');
  for (const bad of ['yesterday', '1h', '-1y', '-h', '2024-13-45', '2024-05-01T25:00Z', '']) {
    tt.throws(() => parseTimeArg(bad, NOW, '--to'), { name: 'CallsUsageError', message: new RegExp(`^--to "${bad}" is not a time`) }, `"${bad}" refused`);
  }
});

t.test('parseCallsArgs: commands, options, values', async (tt) => {
  const list = parseCallsArgs(['list', '--caller', '6001', '--outcome', 'busy,answered,busy', '--from', '-1h', '--to=now', '--q', 'alice', '--limit', '20', '--json'], NOW);
  tt.same(list.command, {
    name: 'list',
    filters: { caller: '6001', q: 'alice', outcomes: ['busy', 'answered'], from: new Date('2024-05-01T11:00:00.000Z'), to: NOW },
    limit: 20,
    all: false,
    json: true,
  });
  tt.equal((parseCallsArgs(['list'], NOW).command as { limit: number }).limit, 50, 'default page size');
  tt.equal((parseCallsArgs(['list', '--all'], NOW).command as { limit: number }).limit, 500, 'bigger pages with --all');
  tt.same(parseCallsArgs(['--url', 'http://h:1', 'show', 'abc', '--token-file', 'f', '--ascii'], NOW), {
    url: 'http://h:1',
    tokenFile: 'f',
    command: { name: 'show', key: 'abc', json: false, ascii: true },
  }, 'settings before or after the command');
  tt.same(parseCallsArgs(['--from=-2d', 'export', '--csv', '--out', 'x.csv', '--callee', '6002'], NOW).command, {
    name: 'export',
    filters: { callee: '6002', from: new Date('2024-04-29T12:00:00.000Z') },
    out: 'x.csv',
  });
  tt.same(parseCallsArgs(['tail', '--json'], NOW).command, { name: 'tail', json: true });
  tt.same(parseCallsArgs(['show', '--', '-odd-call-id@host'], NOW).command, { name: 'show', key: '-odd-call-id@host', json: false, ascii: false }, '"--" ends the options');
  tt.same(parseCallsArgs(['--help'], NOW).command, { name: 'help', topic: undefined });
  tt.same(parseCallsArgs(['-h'], NOW).command, { name: 'help', topic: undefined });
  tt.same(parseCallsArgs(['list', '--help'], NOW).command, { name: 'help', topic: 'list' });
  tt.same(parseCallsArgs(['help', 'export'], NOW).command, { name: 'help', topic: 'export' });
});

t.test('parseCallsArgs refuses bad usage with a message naming the problem', async (tt) => {
  const refused = (argv: string[], message: RegExp, why: string): void => {
    tt.throws(() => parseCallsArgs(argv, NOW), { name: 'CallsUsageError', message }, why);
  };
  refused([], /a command is required: list, show, tail, export/, 'no command');
  refused(['frob'], /unknown command "frob" \(expected list, show, tail, export\)/, 'unknown command');
  refused(['help', 'frob'], /unknown command "frob"/, 'help on an unknown command');
  refused(['list', '--bogus', '-x', '--also=1'], /unknown options --bogus, -x, --also/, 'every unknown option is named');
  refused(['tail', '--csv', '--out', 'f'], /options --csv, --out not valid for tail/, 'options of another command');
  refused(['--json'], /option --json not valid without a command/, 'a command option without a command');
  refused(['list', '--outcome', 'busy,lost,gone'], /unknown outcomes "lost", "gone" \(expected answered, busy/, 'bad outcomes are named');
  refused(['list', '--outcome', ','], /--outcome needs at least one outcome/, 'empty outcome list');
  refused(['list', '--limit', '0'], /--limit must be from 1 to 500, got 0/, 'limit too small');
  refused(['list', '--limit', '501'], /--limit must be from 1 to 500, got 501/, 'limit too large');
  refused(['list', '--limit', 'ten'], /--limit must be a whole number/, 'limit not a number');
  refused(['list', '--from', '-1h', '--to', '-2h'], /--from \(.*\) must be before --to/, 'from after to');
  refused(['list', '--from', 'tomorrow'], /--from "tomorrow" is not a time/, 'a bad time');
  refused(['list', '--caller'], /--caller needs a value/, 'a missing value');
  refused(['list', '--caller', ' '], /--caller needs a non-empty value/, 'an empty value');
  refused(['list', '--json=yes'], /--json takes no value/, 'a value for a flag');
  refused(['list', 'extra'], /unexpected argument "extra"/, 'a stray argument');
  refused(['show'], /show needs a call id/, 'show without a key');
  refused(['show', 'a', 'b'], /unexpected argument "b"/, 'show with two keys');
  refused(['export'], /export needs --csv/, 'export without a format');
  refused(['export', '--csv', '--out='], /--out needs a file name/, 'an empty --out');
});

// ---------------------------------------------------------------------------------------------
// settings

t.test('resolveSettings: URL and token sources in order', async (tt) => {
  const cwd = mkdtempSync(join(tmpdir(), 'calls-cli-'));
  tt.teardown(() => rmSync(cwd, { recursive: true, force: true }));
  tt.equal(resolveSettings({}, { OPERATOR_TOKEN: TOKEN }, cwd).url, 'http://127.0.0.1:8080/', 'the default URL');
  tt.equal(resolveSettings({}, { OPERATOR_TOKEN: TOKEN, OPERATOR_ADDRESS: '10.1.2.3', OPERATOR_PORT: '9000' }, cwd).url, 'http://10.1.2.3:9000/', 'from OPERATOR_ADDRESS/PORT');
  tt.equal(resolveSettings({}, { OPERATOR_TOKEN: TOKEN, OPERATOR_ADDRESS: '0.0.0.0', OPERATOR_PORT: '9000' }, cwd).url, 'http://127.0.0.1:9000/', 'a wildcard bind is reached on loopback');
  tt.equal(resolveSettings({}, { OPERATOR_TOKEN: TOKEN, OPERATOR_URL: 'https://ops.example.com/b2bua', OPERATOR_PORT: '9000' }, cwd).url, 'https://ops.example.com/b2bua/', 'OPERATOR_URL wins over the parts');
  tt.equal(resolveSettings({ url: 'http://h:1234' }, { OPERATOR_TOKEN: TOKEN, OPERATOR_URL: 'http://other:1' }, cwd).url, 'http://h:1234/', '--url wins over all');
  tt.throws(() => resolveSettings({}, { OPERATOR_TOKEN: TOKEN, OPERATOR_PORT: '0' }, cwd), /the operator endpoint is off \(OPERATOR_PORT=0\)/);
  tt.throws(() => resolveSettings({}, { OPERATOR_TOKEN: TOKEN, OPERATOR_PORT: 'http' }, cwd), /OPERATOR_PORT must be a whole number/);
  tt.throws(() => resolveSettings({ url: 'ftp://h' }, { OPERATOR_TOKEN: TOKEN }, cwd), /--url must be an http:\/\/ or https:\/\/ URL/);
  tt.throws(() => resolveSettings({ url: 'not a url' }, { OPERATOR_TOKEN: TOKEN }, cwd), /--url "not a url" is not a URL/);
  tt.throws(() => resolveSettings({}, { OPERATOR_TOKEN: TOKEN, OPERATOR_URL: 'http://u:pw@h:1' }, cwd), /OPERATOR_URL must not hold a user or password/);

  tt.throws(() => resolveSettings({}, {}, cwd), { name: 'CallsUsageError', message: /no operator token: use --token-file <file>, set OPERATOR_TOKEN, or start the stack with `npm start`/ });
  tt.same(
    (({ token, tokenSource }) => ({ token, tokenSource }))(resolveSettings({}, { OPERATOR_TOKENS: `read-token-0123456789, ${TOKEN}` }, cwd)),
    { token: 'read-token-0123456789', tokenSource: 'OPERATOR_TOKENS' },
    'the first read token as the last resort',
  );
  writeFileSync(join(cwd, 'var-token'), `${TOKEN}-file\n`);
  const varDir = mkdtempSync(join(cwd, 'var-'));
  writeFileSync(join(varDir, 'operator-token'), 'from-npm-start-0123456789\n');
  const env = { VAR_DIR: varDir.slice(cwd.length + 1), OPERATOR_TOKENS: 'read-token-0123456789' };
  tt.equal(resolveSettings({}, env, cwd).token, 'from-npm-start-0123456789', '$VAR_DIR/operator-token (relative VAR_DIR) before OPERATOR_TOKENS');
  tt.equal(resolveSettings({}, { ...env, OPERATOR_ADMIN_TOKENS: 'admin-token-0123456789' }, cwd).token, 'admin-token-0123456789', 'configured admin tokens before the file npm start then does not write');
  tt.equal(resolveSettings({}, { ...env, OPERATOR_ADMIN_TOKENS: 'admin-token-0123456789', OPERATOR_TOKEN: TOKEN }, cwd).token, TOKEN, 'OPERATOR_TOKEN before those');
  const fromFile = resolveSettings({ tokenFile: 'var-token' }, { ...env, OPERATOR_TOKEN: TOKEN }, cwd);
  tt.same([fromFile.token, fromFile.tokenSource], [`${TOKEN}-file`, 'var-token'], '--token-file first, relative to the working directory, trimmed');
  tt.throws(() => resolveSettings({ tokenFile: 'missing' }, {}, cwd), /cannot read the token file missing \(ENOENT\)/);
  writeFileSync(join(cwd, 'empty'), '\n');
  tt.throws(() => resolveSettings({ tokenFile: 'empty' }, {}, cwd), /the token file empty is empty/);
  writeFileSync(join(cwd, 'spaced'), 'two words\n');
  tt.throws(() => resolveSettings({ tokenFile: 'spaced' }, {}, cwd), /the token from spaced has spaces/);
  try {
    resolveSettings({ tokenFile: 'spaced' }, {}, cwd);
  } catch (err) {
    tt.notMatch((err as Error).message, /two words/, 'the token itself is not in the message');
  }
});

// ---------------------------------------------------------------------------------------------
// formatting

t.test('the list table, the record and tail lines', async (tt) => {
  tt.equal(formatDuration(null), '-');
  tt.equal(formatDuration(0.027), '0.0s');
  tt.equal(formatDuration(12.34), '12.3s');
  tt.equal(formatDuration(65.5), '1:06');
  tt.equal(formatDuration(3723), '1:02:03');

  const table = formatCallsTable([
    record(),
    record({ id: '99999999-aaaa', outcome: 'busy', state: 'failed', hangupBy: 'callee', aStatus: 486, bStatus: 486, answeredAt: null, durationSec: 0.4, media: null }),
    record({ id: '77777777-bbbb', live: true, outcome: null, state: 'proceeding', hangupBy: null, aStatus: null, bStatus: null, durationSec: null, postDialDelayMs: null, media: null }),
  ]);
  tt.match(table[0] ?? '', /^TIME \(UTC\) +ID +CALLER +CALLEE +OUTCOME +A\/B +HANGUP +DURATION +PDD +RTP PKTS +MOS$/);
  tt.match(table[1] ?? '', /^2024-05-01 10:00:00 +3f2a9c1e +6001 +6002 +answered +200\/200 +caller +1:06 +120ms +3200\/3190 +4\.3\/-$/);
  tt.match(table[2] ?? '', /^2024-05-01 10:00:00 +99999999 +6001 +6002 +busy +486\/486 +callee +0\.4s +120ms +- +-$/);
  tt.match(table[3] ?? '', /77777777 +6001 +6002 +live proceeding +-\/- +- +- +- +- +-$/);
  tt.equal(table[1]?.indexOf('6001'), table[0]?.indexOf('CALLER'), 'columns line up');

  const lines = formatCallRecord(record({ transfers: ['6003'], extraField: 'x' } as Partial<CallRecordJson>)).join('\n');
  for (const re of [
    /^call 3f2a9c1e-0000-4000-8000-000000000001$/m,
    /instance +b2bua-1/,
    /state +ended$/m,
    /outcome +answered, hung up by caller/,
    /caller +6001 "Alice" from 10\.0\.0\.5:5062/,
    /callee +6002/,
    /A leg +Call-ID a-call@10\.0\.0\.5 +final 200 OK/,
    /B leg +Call-ID b-call-1 +final 200 OK/,
    /received +2024-05-01T10:00:00\.000Z/,
    /ringing +2024-05-01T10:00:00\.120Z +\(\+0\.120 s\)/,
    /answered +2024-05-01T10:00:02\.000Z +\(\+2\.000 s\)/,
    /ended +2024-05-01T10:01:05\.500Z +\(\+65\.500 s\)/,
    /post-dial delay +120 ms/,
    /duration +65\.500 s/,
    /billable +64 s/,
    /transfers +6003/,
    /updated +2024-05-01T10:01:05\.600Z/,
    /extraField +x/,
    /media +RTPEngine 127\.0\.0\.1:22222/,
    /direction +packets +bytes +lost +jitter +MOS/,
    /caller -> callee +3200 +550400 +2 +1\.3 ms +4\.3/,
    /callee -> caller +3190 +548680 +- +- +-/,
  ]) {
    tt.match(lines, re, `record shows ${re.source}`);
  }
  tt.match(formatCallRecord(record({ live: true, state: 'answered', media: null })).join('\n'), /state +answered \(live\)[\s\S]*media +none/);

  tt.equal(formatTailLine('call', record({ state: 'proceeding', updatedAt: '2024-05-01T10:00:00.120Z' })), '10:00:00.120Z  3f2a9c1e  6001 -> 6002  proceeding');
  tt.equal(formatTailLine('end', record()), '10:01:05.500Z  3f2a9c1e  6001 -> 6002  end answered · A 200 / B 200 · hung up by caller · 1:06 · MOS 4.3/-');
  tt.equal(
    formatTailLine('end', record({ outcome: 'busy', aStatus: 486, bStatus: 486, hangupBy: null, durationSec: 0.3, media: null })),
    '10:01:05.500Z  3f2a9c1e  6001 -> 6002  end busy · A 486 / B 486 · no hang-up side · 0.3s',
  );
});

t.test('SseParser: events, comments, multi-line data, split chunks and CRLF', async (tt) => {
  const p = new SseParser();
  tt.same(p.push(': connected\n\n'), [], 'comments are not events');
  tt.same(p.push('event: call\ndata: {"a"'), [], 'nothing until the blank line');
  tt.same(p.push(':1}\n\n'), [{ event: 'call', data: '{"a":1}', id: undefined }]);
  tt.same(p.push('data: one\r\ndata:two\r\nid: 7\r'), []);
  tt.same(p.push('\n\r\n'), [{ event: 'message', data: 'one\ntwo', id: '7' }], 'a CRLF split between chunks; default event "message"');
  tt.equal(p.lastEventId, '7');
  tt.same(p.push('event: end\rdata: x\r\r'), [], 'a CR at the end of a chunk may be half a CRLF');
  tt.same(p.push(': ping\n'), [{ event: 'end', data: 'x', id: '7' }], 'bare CR line ends');
  tt.same(p.push('retry: 3000\nevent: ignored\n\n'), [], 'an event without data is not dispatched');
  tt.equal(p.retryMs, 3000);
});

// ---------------------------------------------------------------------------------------------
// running commands against a scripted API

interface Run {
  code: number;
  out: string;
  err: string;
}

interface Route {
  status?: number;
  body?: unknown;
  /** An event stream body instead: chunks, then the stream stays open (until aborted) unless `close`. */
  sse?: { chunks: string[]; close: boolean };
}

function scriptedFetch(handler: (url: URL, calls: number) => Route): { fetch: FetchLike; requests: Array<{ url: URL; auth: string | null }> } {
  const requests: Array<{ url: URL; auth: string | null }> = [];
  const fetchImpl: FetchLike = async (input, init) => {
    const url = new URL(input);
    const headers = new Headers(init?.headers);
    requests.push({ url, auth: headers.get('authorization') });
    const route = handler(url, requests.length);
    if (route.sse) {
      const { chunks, close } = route.sse;
      const signal = init?.signal ?? undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const c of chunks) controller.enqueue(new TextEncoder().encode(c));
          if (close) controller.close();
          else signal?.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')), { once: true });
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
    }
    return new Response(JSON.stringify(route.body ?? {}), { status: route.status ?? 200, headers: { 'content-type': 'application/json' } });
  };
  return { fetch: fetchImpl, requests };
}

async function run(argv: string[], deps: Partial<CallsDeps> & { onOut?: (text: string) => void } = {}): Promise<Run> {
  let out = '';
  let err = '';
  const code = await runCallsCli(argv, {
    env: { OPERATOR_URL: 'http://127.0.0.1:8080', OPERATOR_TOKEN: TOKEN },
    cwd: tmpdir(),
    now: () => NOW,
    ...deps,
    io: {
      out: (s) => {
        out += s;
        deps.onOut?.(s);
      },
      err: (s) => {
        err += s;
      },
    },
  });
  return { code, out, err };
}

t.test('help and usage errors exit 0 and 2 without touching the API', async (tt) => {
  const api = scriptedFetch(() => ({ status: 500 }));
  const help = await run(['--help'], { fetch: api.fetch });
  tt.equal(help.code, 0);
  tt.match(help.out, /Usage: npm run calls -- <command>[\s\S]*list[\s\S]*show[\s\S]*tail[\s\S]*export/);
  for (const cmd of ['list', 'show', 'tail', 'export']) {
    const h = await run([cmd, '--help'], { fetch: api.fetch });
    tt.equal(h.code, 0, `${cmd} --help`);
    tt.match(h.out, new RegExp(`^Usage: npm run calls -- ${cmd}`), `${cmd} has its own usage`);
    tt.match(h.out, /--token-file/, 'with the settings');
  }
  const bad = await run(['list', '--frobnicate'], { fetch: api.fetch });
  tt.equal(bad.code, 2);
  tt.match(bad.err, /^calls: unknown option --frobnicate\n/);
  const unknown = await run(['purge'], { fetch: api.fetch });
  tt.equal(unknown.code, 2);
  tt.match(unknown.err, /unknown command "purge"/);
  const noToken = await runCallsCli(['list'], { env: {}, cwd: mkdtempSync(join(tmpdir(), 'calls-cli-')), io: { out: () => undefined, err: () => undefined }, fetch: api.fetch });
  tt.equal(noToken, 2, 'no token is a settings error');
  tt.equal(api.requests.length, 0, 'no request was made');
});

t.test('API errors print the API\'s reason and exit 1; the token is never printed', async (tt) => {
  const cases: Array<[number, string, string, RegExp]> = [
    [401, 'unauthorized', 'a valid bearer token is required', /refused \/api\/calls: 401 unauthorized: a valid bearer token is required \(the token came from OPERATOR_TOKEN\)/],
    [403, 'forbidden', 'this action needs an admin token', /403 forbidden: this action needs an admin token/],
    [400, 'bad-request', 'querystring/from must match format "date-time"', /400 bad-request: querystring\/from must match format "date-time"/],
    [503, 'call-log-off', 'the call log is off', /503 call-log-off: the call log is off/],
  ];
  for (const [status, error, reason, expected] of cases) {
    const api = scriptedFetch(() => ({ status, body: { error, reason } }));
    const r = await run(['list'], { fetch: api.fetch });
    tt.equal(r.code, 1, `HTTP ${status} exits 1`);
    tt.match(r.err, expected);
    tt.notMatch(r.out + r.err, new RegExp(TOKEN), 'the token is not printed');
  }
  const api = scriptedFetch(() => ({ status: 404, body: { error: 'not-found', reason: 'no call nope@host' } }));
  const r = await run(['show', 'nope@host'], { fetch: api.fetch });
  tt.equal(r.code, 1);
  tt.match(r.err, /calls: the operator API refused \/api\/calls\/nope%40host: 404 not-found: no call nope@host/);
  tt.equal(api.requests[0]?.url.pathname, '/api/calls/nope%40host', 'the key is URL-encoded');
  tt.equal(api.requests[0]?.auth, `Bearer ${TOKEN}`, 'the token goes in the Authorization header');

  const html = await run(['list'], { fetch: async () => new Response('<html></html>', { status: 200 }) });
  tt.equal(html.code, 1, 'a non-JSON answer is an error, not a crash');
  tt.match(html.err, /answered api\/calls with something other than JSON \(HTTP 200\); is --url the operator API\?/);
  const shapeless = await run(['list'], { fetch: async () => new Response('{"rows":[]}', { status: 200 }) });
  tt.equal(shapeless.code, 1);
  tt.match(shapeless.err, /the answer to \/api\/calls has no "calls" list/);
});

t.test('a refused connection names the URL that was unreachable', async (tt) => {
  const [port] = await freePorts(1);
  tt.teardown(() => releasePorts([port as number]));
  const r = await run(['list'], { env: { OPERATOR_URL: `http://127.0.0.1:${port}/`, OPERATOR_TOKEN: TOKEN } });
  tt.equal(r.code, 1);
  tt.match(r.err, new RegExp(`^calls: cannot reach the operator API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED: connection refused\\); is the B2BUA running\\? Set --url or OPERATOR_URL\\n$`));
  const tail = await run(['tail'], { env: { OPERATOR_URL: `http://127.0.0.1:${port}/`, OPERATOR_TOKEN: TOKEN } });
  tt.equal(tail.code, 1, 'tail gives up when the first connection is refused');
  tt.match(tail.err, /cannot reach the operator API at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED/);
});

t.test('list: one page, or every page with --all; filters reach the query', async (tt) => {
  const pages: Record<string, { calls: CallRecordJson[]; nextCursor: string | null }> = {
    '': { calls: [record({ id: 'aaaaaaaa-1' }), record({ id: 'bbbbbbbb-2' })], nextCursor: 'c1' },
    c1: { calls: [record({ id: 'cccccccc-3' })], nextCursor: 'c2' },
    c2: { calls: [record({ id: 'dddddddd-4' })], nextCursor: null },
  };
  const api = scriptedFetch((url) => ({ body: pages[url.searchParams.get('cursor') ?? ''] }));
  const one = await run(['list', '--caller', '6001', '--outcome', 'answered,busy', '--from', '-1h', '--limit', '2'], { fetch: api.fetch });
  tt.equal(one.code, 0);
  const q = api.requests[0]?.url.searchParams;
  tt.same(
    Object.fromEntries(q ?? []),
    { caller: '6001', outcome: 'answered,busy', from: '2024-05-01T11:00:00.000Z', limit: '2' },
    'only the filters given are sent, times as ISO',
  );
  tt.equal(one.out.split('\n').filter((l) => l !== '').length, 3, 'header and two calls');
  tt.match(one.err, /showing the newest 2; more match/);

  const all = await run(['list', '--all', '--json'], { fetch: api.fetch });
  tt.equal(all.code, 0);
  const body = JSON.parse(all.out) as { calls: CallRecordJson[]; nextCursor: string | null };
  tt.same(body.calls.map((c) => c.id), ['aaaaaaaa-1', 'bbbbbbbb-2', 'cccccccc-3', 'dddddddd-4'], 'pages followed in order');
  tt.equal(body.nextCursor, null);
  tt.same(api.requests.slice(1).map((r) => r.url.searchParams.get('cursor')), [null, 'c1', 'c2']);

  const loop = scriptedFetch(() => ({ body: { calls: [record()], nextCursor: 'same' } }));
  const looped = await run(['list', '--all'], { fetch: loop.fetch });
  tt.equal(looped.code, 0);
  tt.equal(loop.requests.length, 2, 'a cursor that does not move stops the paging');

  const none = scriptedFetch(() => ({ body: { calls: [], nextCursor: null } }));
  const empty = await run(['list'], { fetch: none.fetch });
  tt.same([empty.code, empty.out, empty.err], [0, '', 'calls: no call matches\n']);
});

t.test('show prints the record and the ladder; --json the API answer', async (tt) => {
  const detail = {
    call: record(),
    messages: [msg('a', 'in', 0, invite('sip:6002@127.0.0.2')), msg('b', 'out', 3, invite('sip:6002@127.0.0.1:5070'))],
    truncated: true,
  };
  const api = scriptedFetch(() => ({ body: detail }));
  const text = await run(['show', 'a-call@10.0.0.5'], { fetch: api.fetch });
  tt.equal(text.code, 0);
  tt.match(text.out, /^call 3f2a9c1e-0000-4000-8000-000000000001\n/);
  tt.match(text.out, /SIP messages \(2, truncated: the oldest are shown\):\n/);
  tt.match(text.out, /\+0\.000 +│── INVITE sip:6002@127\.0\.0\.2 ─+▶│/);
  tt.match(text.out, /\+0\.003 +│ +│── INVITE sip:6002@127\.0\.0\.1:5070 ─+▶│/);
  const json = await run(['show', 'x', '--json'], { fetch: api.fetch });
  tt.same(JSON.parse(json.out), detail);
});

t.test('export --csv pages through every call; --out replaces the file only when complete', async (tt) => {
  const dir = mkdtempSync(join(tmpdir(), 'calls-export-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const api = scriptedFetch((url) =>
    url.searchParams.get('cursor') === null
      ? { body: { calls: [record({ id: 'one', callerName: 'A, "B"' })], nextCursor: 'p2' } }
      : { body: { calls: [record({ id: 'two' })], nextCursor: null } },
  );
  const toStdout = await run(['export', '--csv', '--callee', '6002'], { fetch: api.fetch });
  tt.equal(toStdout.code, 0);
  const rows = parseCsv(toStdout.out);
  tt.equal(rows.length, 3, 'a header and both pages');
  tt.same(rows.map((r) => r[0]), ['id', 'one', 'two']);
  tt.equal(rows[1]?.[rows[0]?.indexOf('callerName') ?? -1], 'A, "B"');
  tt.same(api.requests.map((r) => [r.url.searchParams.get('limit'), r.url.searchParams.get('callee')]), [['500', '6002'], ['500', '6002']]);
  tt.match(toStdout.err, /exported 2 calls/);

  const ok = await run(['export', '--csv', '--out', 'calls.csv'], { fetch: api.fetch, cwd: dir });
  tt.equal(ok.code, 0);
  tt.equal(readFileSync(join(dir, 'calls.csv'), 'utf8'), toStdout.out, 'the file holds the same CSV');
  tt.match(ok.err, /exported 2 calls to calls\.csv/);

  writeFileSync(join(dir, 'keep.csv'), 'old\r\n');
  const failing = scriptedFetch((url) =>
    url.searchParams.get('cursor') === null ? { body: { calls: [record()], nextCursor: 'p2' } } : { status: 500, body: { error: 'internal', reason: 'the request failed; see the B2BUA log' } },
  );
  const broken = await run(['export', '--csv', '--out', 'keep.csv'], { fetch: failing.fetch, cwd: dir });
  tt.equal(broken.code, 1);
  tt.match(broken.err, /500 internal: the request failed/);
  tt.equal(readFileSync(join(dir, 'keep.csv'), 'utf8'), 'old\r\n', 'a failed export leaves the old file alone');
  tt.same(readdirSync(dir).sort(), ['calls.csv', 'keep.csv'], 'and no partial file behind');

  const noDir = await run(['export', '--csv', '--out', join(dir, 'missing', 'x.csv')], { fetch: api.fetch });
  tt.equal(noDir.code, 1);
  tt.match(noDir.err, /cannot write .*missing\/x\.csv/);
  tt.notOk(existsSync(join(dir, 'missing')));
});

const sseCall = (c: CallRecordJson, event = 'call'): string => `event: ${event}\ndata: ${JSON.stringify(c)}\n\n`;

t.test('tail prints one line per state change, reconnects when the stream drops, stops on the signal', async (tt) => {
  const id = '5e5e5e5e-0000-4000-8000-000000000002';
  const live = (state: CallRecordJson['state']): CallRecordJson => record({ id, live: true, state, outcome: null, hangupBy: null, endedAt: null, updatedAt: '2024-05-01T10:00:00.500Z' });
  const first = `: connected\n\n${sseCall(live('received'))}${sseCall(live('proceeding'))}${sseCall(live('proceeding'))}`;
  const api = scriptedFetch((_url, n) =>
    n === 1
      ? // split mid-line, CRLF line ends: then the server goes away
        { sse: { chunks: [first.slice(0, 30), first.slice(30).replace(/\n/g, '\r\n')], close: true } }
      : n === 2
        ? { status: 503, body: { error: 'unavailable', reason: 'restarting' } }
        : { sse: { chunks: [': connected\n\n', sseCall(live('answered')), sseCall(live('ending')), sseCall(record({ id, state: 'ended' })), sseCall(record({ id }), 'end')], close: false } },
  );
  const controller = new AbortController();
  const r = await run(['tail'], {
    fetch: api.fetch,
    signal: controller.signal,
    backoffMs: [1, 2],
    onOut: (s) => {
      if (s.includes(' end ')) controller.abort();
    },
  });
  tt.equal(r.code, 0, 'a signal is the normal end of tail');
  tt.same(r.out.trimEnd().split('\n').map((l) => l.replace(/^\S+ {2}/, '')), [
    '5e5e5e5e  6001 -> 6002  received',
    '5e5e5e5e  6001 -> 6002  proceeding',
    '5e5e5e5e  6001 -> 6002  answered',
    '5e5e5e5e  6001 -> 6002  ending',
    '5e5e5e5e  6001 -> 6002  end answered · A 200 / B 200 · hung up by caller · 1:06 · MOS 4.3/-',
  ], 'repeated states are not printed; the final state is left to the end line');
  tt.match(r.err, /following http:\/\/127\.0\.0\.1:8080 events/);
  tt.match(r.err, /the stream ended; reconnecting in 1 ms/);
  tt.match(r.err, /HTTP 503; reconnecting in 2 ms/, 'back-off grows');
  tt.match(r.err, /reconnected/);
  tt.equal(api.requests.length, 3);
  tt.ok(api.requests.every((q) => q.url.pathname === '/api/events' && q.auth === `Bearer ${TOKEN}`), 'every attempt sends the token');
});

t.test('tail --json prints every event; a refused token stops it with the reason', async (tt) => {
  const controller = new AbortController();
  const api = scriptedFetch(() => ({ sse: { chunks: [sseCall(record({ state: 'answered', live: true })), sseCall(record({ state: 'answered', live: true })), sseCall(record(), 'end')], close: false } }));
  const r = await run(['tail', '--json'], { fetch: api.fetch, signal: controller.signal, onOut: (s) => s.includes('"end"') && controller.abort() });
  tt.equal(r.code, 0);
  const events = r.out.trimEnd().split('\n').map((l) => JSON.parse(l) as { event: string; call: CallRecordJson });
  tt.same(events.map((e) => [e.event, e.call.state]), [['call', 'answered'], ['call', 'answered'], ['end', 'ended']]);

  const refused = scriptedFetch(() => ({ status: 401, body: { error: 'unauthorized', reason: 'a valid bearer token is required' } }));
  const denied = await run(['tail'], { fetch: refused.fetch });
  tt.equal(denied.code, 1);
  tt.match(denied.err, /refused \/api\/events: 401 unauthorized: a valid bearer token is required/);
  tt.equal(refused.requests.length, 1, 'no retry with a refused token');
});

t.test('tail reconnects when the stream stalls (no data, not even a ping)', async (tt) => {
  const controller = new AbortController();
  const api = scriptedFetch((_u, n) => (n === 1 ? { sse: { chunks: [': connected\n\n'], close: false } } : { sse: { chunks: [sseCall(record(), 'end')], close: false } }));
  const r = await run(['tail'], { fetch: api.fetch, signal: controller.signal, backoffMs: [1], stallMs: 50, onOut: () => controller.abort() });
  tt.equal(r.code, 0);
  tt.match(r.err, /nothing received for 50 ms; reconnecting/);
  tt.equal(api.requests.length, 2);
});

t.test('CallsUsageError is the exported usage error', async (tt) => {
  tt.type(new CallsUsageError('x'), Error);
  tt.equal(new CallsUsageError('x').code, 'E_CALLS_USAGE');
});
