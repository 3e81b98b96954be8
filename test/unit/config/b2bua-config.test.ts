import t from 'tap';
import { loadB2buaConfig } from '../../../lib/config/b2bua-config';
import { ConfigError } from '../../../lib/config/engine-args';
import { parseDotenv } from '../../../lib/config/env';

const base = { DRACHTIO_SECRET: 'cymru' };

t.test('defaults follow .env.example', async (tt) => {
  const c = loadB2buaConfig(base);
  tt.same(c.drachtio, { host: '127.0.0.1', port: 9022, secret: 'cymru' });
  tt.equal(c.kamailioUri, 'sip:127.0.0.1:5060');
  tt.same(c.dialPlan.patterns, ['6XXX']);
  tt.equal(c.media.kind, 'rtpengine');
  tt.equal(c.operator?.address, '127.0.0.1', 'the operator endpoint binds to loopback by default');
  tt.same(c.sessionTimer, { expires: 1800, minSE: 90 }, 'RFC 4028 session timers on, at the RFC\'s recommended 30 minutes');
  tt.same(loadB2buaConfig({ ...base, SESSION_EXPIRES: '0' }).sessionTimer.expires, 0, 'SESSION_EXPIRES=0 turns them off');
  tt.same(c.operator?.adminTokens, []);
  tt.same(c.callLog, {
    enabled: true,
    databaseUrl: undefined,
    sqlitePath: 'var/calls.db',
    retentionDays: 90,
    sipRetentionDays: 7,
    captureUrl: undefined,
    captureGraceMs: 1000,
    flushMs: 50,
  });
});

t.test('each bad setting stops start-up with a message naming the variable', async (tt) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{}, /DRACHTIO_SECRET/],
    [{ ...base, DRACHTIO_PORT: 'abc' }, /DRACHTIO_PORT/],
    [{ ...base, DRACHTIO_PORT: '70000' }, /DRACHTIO_PORT/],
    [{ ...base, DRACHTIO_HOST: 'bad host' }, /DRACHTIO_HOST/],
    [{ ...base, DIAL_PLAN: '6X?' }, /DIAL_PLAN/],
    [{ ...base, MAX_CALLS: '0' }, /MAX_CALLS/],
    [{ ...base, MAX_CALLS_PER_EXTENSION: '-1' }, /MAX_CALLS_PER_EXTENSION/],
    [{ ...base, MEDIA: 'kurento' }, /MEDIA/],
    [{ ...base, RTPENGINE_NG: '127.0.0.1' }, /RTPENGINE_NG/],
    [{ ...base, RTPENGINE_SELECTION: 'random' }, /RTPENGINE_SELECTION/],
    [{ ...base, KAMAILIO_SIP_URI: 'http://x' }, /KAMAILIO_SIP_URI/],
    [{ ...base, LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ ...base, OPERATOR_TOKENS: 'short' }, /OPERATOR_TOKENS/],
    [{ ...base, NO_ANSWER_TIMEOUT: '1.5' }, /NO_ANSWER_TIMEOUT/],
    [{ ...base, CALL_LOG: 'maybe' }, /CALL_LOG/],
    [{ ...base, DATABASE_URL: 'mysql://u:p@db/calls' }, /DATABASE_URL/],
    [{ ...base, DATABASE_URL: 'not a url' }, /DATABASE_URL/],
    [{ ...base, CALL_LOG_RETENTION_DAYS: '0' }, /CALL_LOG_RETENTION_DAYS/],
    [{ ...base, SIP_CAPTURE_RETENTION_DAYS: 'week' }, /SIP_CAPTURE_RETENTION_DAYS/],
    [{ ...base, ENGINE_CAPTURE_URL: 'ftp://x' }, /ENGINE_CAPTURE_URL/],
    [{ ...base, CAPTURE_GRACE_MS: '-1' }, /CAPTURE_GRACE_MS/],
    [{ ...base, SESSION_EXPIRES: '60' }, /SESSION_EXPIRES: 60 is below RFC 4028's minimum of 90/],
    [{ ...base, SESSION_EXPIRES: 'long' }, /SESSION_EXPIRES/],
    [{ ...base, SESSION_MIN_SE: '30' }, /SESSION_MIN_SE/],
    [{ ...base, SESSION_EXPIRES: '120', SESSION_MIN_SE: '300' }, /SESSION_MIN_SE: 300 is above SESSION_EXPIRES \(120\)/],
    [{ ...base, OVERLOAD_MEDIA_REQUESTS: '0' }, /OVERLOAD_MEDIA_REQUESTS/],
    [{ ...base, OVERLOAD_MEDIA_WAIT_MS: 'soon' }, /OVERLOAD_MEDIA_WAIT_MS/],
    [{ ...base, OVERLOAD_MEDIA_WAIT_MS: '1500' }, /OVERLOAD_MEDIA_WAIT_MS: 1500 ms must be below RTPENGINE_TIMEOUT_MS \(1500 ms\)/],
  ];
  for (const [env, message] of cases) {
    tt.throws(() => loadB2buaConfig(env), ConfigError, JSON.stringify(env));
    tt.throws(() => loadB2buaConfig(env), message);
  }
});

t.test('overload protection: a sixth of the RTPEngine timeout by default, 0 turns it off', async (tt) => {
  const limits = (env: Record<string, string>): unknown => {
    const c = loadB2buaConfig({ ...base, ...env });
    return c.media.kind === 'rtpengine' ? c.media.overload : undefined;
  };
  tt.same(limits({}), { requests: 20, waitMs: 250 });
  tt.same(limits({ RTPENGINE_TIMEOUT_MS: '3000' }), { requests: 20, waitMs: 500 }, 'the default follows the timeout');
  tt.same(limits({ RTPENGINE_TIMEOUT_MS: '100' }), { requests: 20, waitMs: 16 }, 'rounded down');
  tt.same(limits({ OVERLOAD_MEDIA_REQUESTS: '50', OVERLOAD_MEDIA_WAIT_MS: '0' }), { requests: 50, waitMs: 0 });
});

t.test('several RTPEngines, media off, operator off', async (tt) => {
  const c = loadB2buaConfig({ ...base, RTPENGINE_NG: '10.0.0.1:22222, rtp2:2223', RTPENGINE_SELECTION: 'round-robin' });
  tt.same(c.media.kind === 'rtpengine' ? c.media.engines : [], [{ host: '10.0.0.1', port: 22222 }, { host: 'rtp2', port: 2223 }]);
  tt.equal(loadB2buaConfig({ ...base, MEDIA: 'off' }).media.kind, 'off');
  tt.equal(loadB2buaConfig({ ...base, OPERATOR_PORT: '0' }).operator, undefined);
});

t.test('call log on PostgreSQL, or off', async (tt) => {
  const pg = loadB2buaConfig({ ...base, DATABASE_URL: 'postgres://cdr:s3cret@db:5432/calls', ENGINE_CAPTURE_URL: 'http://127.0.0.1:9023/' });
  tt.equal(pg.callLog.databaseUrl, 'postgres://cdr:s3cret@db:5432/calls');
  tt.equal(pg.callLog.captureUrl, 'http://127.0.0.1:9023', 'trailing slash dropped');
  tt.equal(loadB2buaConfig({ ...base, CALL_LOG: 'off' }).callLog.enabled, false);
  tt.equal(loadB2buaConfig({ ...base, DATABASE_URL: '' }).callLog.databaseUrl, undefined, 'empty means SQLite');
  try {
    loadB2buaConfig({ ...base, DATABASE_URL: 'mysql://cdr:s3cret@db/calls' });
  } catch (err) {
    tt.notMatch((err as Error).message, /s3cret/, 'the password is not echoed in the error');
  }
});

t.test('.env parsing: comments, quotes, export, bad lines by number', async (tt) => {
  const env = parseDotenv('# c\nA=1\nexport B="two words"\nC=\'x # y\'\nD=plain # trailing\n\nE="a\\"b"\n');
  tt.same(env, { A: '1', B: 'two words', C: 'x # y', D: 'plain', E: 'a"b' });
  tt.throws(() => parseDotenv('A=1\nnot a setting\n'), /line 2/);
  tt.throws(() => parseDotenv('A="open\n'), /A has an unterminated quote/);
});
