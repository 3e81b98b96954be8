// The extension store: schema and migrations, add / list / remove / passwd, digest secrets,
// input validation and its errors.

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import {
  DatabaseMissingError,
  digestHa1,
  ensureExtensionSchema,
  ExtensionExistsError,
  ExtensionNotFoundError,
  ExtensionStore,
  generatePassword,
  InvalidDomainError,
  InvalidExtensionError,
  InvalidPasswordError,
  KAMAILIO_TABLE_VERSIONS,
  SCHEMA_VERSION,
  SchemaMismatchError,
  validatePassword,
} from '../../../lib/extensions';

const DOMAIN = '127.0.0.1';
const PASSWORD = 'secret123';

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}

/** A fresh directory for one test, removed at its end. */
function tempDir(tt: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'extensions-test-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a store in a fresh directory; closed at the end of the test. */
function freshStore(tt: { teardown(fn: () => void): void }): ExtensionStore {
  const store = ExtensionStore.open(join(tempDir(tt), 'var', 'kamailio.sqlite'));
  tt.teardown(() => store.close());
  return store;
}

/** The error `fn` throws, or undefined. */
function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

/** A Julian day number as db_sqlite writes DATETIME values. */
function julian(date: Date): number {
  return date.getTime() / 86_400_000 + 2440587.5;
}

t.test('schema: created with the directory, in WAL mode, with Kamailio 5.6 table versions', async (tt) => {
  const file = join(tempDir(tt), 'nested', 'dir', 'kamailio.sqlite');
  ensureExtensionSchema(file);
  tt.ok(existsSync(file), 'the file and its directories exist');
  tt.equal(statSync(file).mode & 0o777, 0o600, 'the file holding digest secrets is readable by its owner only');
  const db = new Database(file, { readonly: true });
  tt.teardown(() => db.close());
  tt.equal(db.pragma('journal_mode', { simple: true }), 'wal', 'WAL journal');
  tt.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'user_version counts our migrations');
  const versions = Object.fromEntries(
    (db.prepare('SELECT table_name, table_version FROM version').all() as Array<{ table_name: string; table_version: number }>).map((r) => [r.table_name, r.table_version]),
  );
  tt.same(versions, { version: 1, subscriber: 7, location: 9, location_attrs: 1 }, 'version rows Kamailio 5.6 checks');
  tt.same(versions, KAMAILIO_TABLE_VERSIONS);
  const columns = (table: string): string[] => (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);
  tt.same(columns('subscriber'), ['id', 'username', 'domain', 'password', 'ha1', 'ha1b']);
  tt.same(columns('location'), [
    'id', 'ruid', 'username', 'domain', 'contact', 'received', 'path', 'expires', 'q', 'callid', 'cseq', 'last_modified',
    'flags', 'cflags', 'user_agent', 'socket', 'methods', 'instance', 'reg_id', 'server_id', 'connection_id', 'keepalive', 'partition',
  ], 'every column usrloc 5.6 writes');
  const types = Object.fromEntries((db.prepare('PRAGMA table_info(location)').all() as Array<{ name: string; type: string }>).map((c) => [c.name, c.type]));
  tt.match(types.expires, /TIME|DATE/, 'expires is declared as a time, so db_sqlite reads it back as one');
  tt.match(types.q, /REAL|FLOA|DOUB/, 'q is declared as a double');
});

t.test('schema: opening again is idempotent and keeps the data', async (tt) => {
  const file = join(tempDir(tt), 'kamailio.sqlite');
  const first = ExtensionStore.open(file);
  first.addExtension('6001', PASSWORD, DOMAIN);
  first.close();
  ensureExtensionSchema(file);
  const again = ExtensionStore.open(file);
  tt.teardown(() => again.close());
  tt.same(again.listExtensions().map((e) => e.extension), ['6001'], 'the extension is still there');
  const db = new Database(file, { readonly: true });
  tt.teardown(() => db.close());
  tt.equal((db.prepare('SELECT count(*) AS n FROM version').get() as { n: number }).n, 4, 'no duplicated version rows');
});

const KAMAILIO_SQL = ['standard-create.sql', 'auth_db-create.sql', 'usrloc-create.sql'].map((f) => join('/usr/share/kamailio/db_sqlite', f));
const haveKamailioSql = KAMAILIO_SQL.every((f) => existsSync(f));

t.test('schema: a database made from Kamailio\'s own SQL files is adopted', { skip: haveKamailioSql ? false : 'kamailio-sqlite-modules SQL files not installed' }, async (tt) => {
  const files = KAMAILIO_SQL;
  const file = join(tempDir(tt), 'kamailio.sqlite');
  const db = new Database(file);
  for (const f of files) db.exec(readFileSync(f, 'utf8'));
  db.close();
  const store = ExtensionStore.open(file);
  tt.teardown(() => store.close());
  store.addExtension('6001', PASSWORD, DOMAIN);
  tt.equal(store.listExtensions().length, 1, 'usable, migrated to our version');
});

t.test('schema: a newer schema or a foreign table version is refused', async (tt) => {
  const dir = tempDir(tt);
  const newer = join(dir, 'newer.sqlite');
  ensureExtensionSchema(newer);
  const db = new Database(newer);
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  tt.throws(() => ExtensionStore.open(newer), { name: 'SchemaMismatchError', code: 'E_SCHEMA_MISMATCH' }, 'newer user_version');

  const foreign = join(dir, 'foreign.sqlite');
  ensureExtensionSchema(foreign);
  const db2 = new Database(foreign);
  db2.prepare("UPDATE version SET table_version = 6 WHERE table_name = 'subscriber'").run();
  db2.close();
  const err = caught(() => ExtensionStore.open(foreign));
  tt.type(err, SchemaMismatchError, 'subscriber version 6 is refused');
  tt.match((err as Error).message, /subscriber has version 6; Kamailio 5\.6 needs 7/);
});

t.test('open with mustExist on a missing file throws DatabaseMissingError and creates nothing', async (tt) => {
  const file = join(tempDir(tt), 'absent', 'kamailio.sqlite');
  tt.throws(() => ExtensionStore.open(file, { mustExist: true }), { name: 'DatabaseMissingError', code: 'E_DATABASE_MISSING' });
  tt.type(caught(() => ExtensionStore.open(file, { mustExist: true })), DatabaseMissingError);
  tt.notOk(existsSync(file), 'no file was created');
});

t.test('addExtension stores ha1 and ha1b, never the password', async (tt) => {
  const store = freshStore(tt);
  const info = store.addExtension('6001', PASSWORD, DOMAIN);
  tt.same(info, { extension: '6001', domain: DOMAIN, registered: false, contacts: [] });
  const db = new Database(store.file, { readonly: true });
  tt.teardown(() => db.close());
  const row = db.prepare('SELECT username, domain, password, ha1, ha1b FROM subscriber').get() as Record<string, string>;
  tt.equal(row.ha1, md5(`6001:${DOMAIN}:${PASSWORD}`), 'ha1 = md5(user:realm:password)');
  tt.equal(row.ha1b, md5(`6001@${DOMAIN}:${DOMAIN}:${PASSWORD}`), 'ha1b = md5(user@domain:realm:password)');
  tt.equal(row.password, '', 'no plaintext password');
  tt.same(digestHa1('6001', DOMAIN, PASSWORD), { ha1: row.ha1, ha1b: row.ha1b });
  // RFC 2617 3.5's example: Mufasa / testrealm@host.com / Circle Of Life.
  tt.equal(digestHa1('Mufasa', 'testrealm@host.com', 'Circle Of Life').ha1, '939e7578ed9e3c518a452acee763bce9', 'RFC 2617 example HA1');
});

t.test('addExtension refuses a number already taken, in any domain', async (tt) => {
  const store = freshStore(tt);
  store.addExtension('6001', PASSWORD, DOMAIN);
  tt.throws(() => store.addExtension('6001', 'another-pass', DOMAIN), { name: 'ExtensionExistsError', code: 'E_EXTENSION_EXISTS' });
  tt.throws(() => store.addExtension('6001', 'another-pass', 'pbx.example.com'), ExtensionExistsError, 'usernames are unique across domains (use_domain=0)');
});

t.test('listExtensions: numeric order, registration from location, expired contacts left out', async (tt) => {
  const store = freshStore(tt);
  for (const ext of ['6002', '10', '600', '6001']) store.addExtension(ext, PASSWORD, DOMAIN);
  const now = new Date('2026-01-01T12:00:00Z');
  const db = new Database(store.file);
  tt.teardown(() => db.close());
  const insert = db.prepare('INSERT INTO location (ruid, username, contact, expires, user_agent, socket) VALUES (?, ?, ?, ?, ?, ?)');
  insert.run('r1', '6001', 'sip:6001@192.0.2.10:5060', julian(new Date(now.getTime() + 600_000)), 'Yealink', 'udp:127.0.0.1:5060');
  insert.run('r2', '6001', 'sip:6001@192.0.2.11:5060', julian(new Date(now.getTime() + 60_000)), 'Linphone', 'tcp:127.0.0.1:5060');
  insert.run('r3', '6002', 'sip:6002@192.0.2.12:5060', julian(new Date(now.getTime() - 1000)), 'Old', 'udp:127.0.0.1:5060');
  insert.run('r4', '600', 'sip:600@192.0.2.13:5060', julian(new Date(0)), 'Static', null);

  const list = store.listExtensions(now);
  tt.same(list.map((e) => e.extension), ['10', '600', '6001', '6002'], 'shorter numbers first, then in order');
  const byExt = Object.fromEntries(list.map((e) => [e.extension, e]));
  tt.equal(byExt['10']?.registered, false, 'no location row: not registered');
  tt.equal(byExt['6002']?.registered, false, 'only an expired contact: not registered');
  tt.equal(byExt['600']?.registered, true, 'a permanent binding (expires 0) counts');
  tt.equal(byExt['600']?.contacts[0]?.expires, null, 'and has no expiry');
  tt.equal(byExt['6001']?.registered, true);
  tt.same(byExt['6001']?.contacts.map((c) => c.contact), ['sip:6001@192.0.2.10:5060', 'sip:6001@192.0.2.11:5060'], 'latest expiry first');
  tt.equal(byExt['6001']?.contacts[0]?.expires?.toISOString(), new Date(now.getTime() + 600_000).toISOString(), 'expiry read from the Julian day number');
  tt.equal(byExt['6001']?.contacts[1]?.socket, 'tcp:127.0.0.1:5060');
  tt.equal(byExt['6001']?.contacts[1]?.userAgent, 'Linphone');
  tt.same(store.getExtension('6001', now), byExt['6001'], 'getExtension agrees with the list');
  tt.equal(store.getExtension('6999', now), undefined, 'getExtension of an unknown number');
});

t.test('removeExtension and setPassword', async (tt) => {
  const store = freshStore(tt);
  store.addExtension('6001', PASSWORD, DOMAIN);
  store.addExtension('6002', PASSWORD, DOMAIN);
  const db = new Database(store.file, { readonly: true });
  tt.teardown(() => db.close());
  const row = (ext: string): Record<string, string> | undefined => db.prepare('SELECT domain, ha1, ha1b FROM subscriber WHERE username = ?').get(ext) as Record<string, string> | undefined;

  store.setPassword('6001', 'new-password-1');
  tt.equal(row('6001')?.ha1, md5(`6001:${DOMAIN}:new-password-1`), 'ha1 of the new password, same realm');
  store.setPassword('6001', 'new-password-2', 'pbx.example.com');
  tt.same(row('6001'), {
    domain: 'pbx.example.com',
    ha1: md5('6001:pbx.example.com:new-password-2'),
    ha1b: md5('6001@pbx.example.com:pbx.example.com:new-password-2'),
  }, 'with a domain, the extension moves to that realm');
  tt.throws(() => store.setPassword('6999', 'whatever-pass'), { name: 'ExtensionNotFoundError', code: 'E_EXTENSION_NOT_FOUND' });

  store.removeExtension('6002');
  tt.equal(row('6002'), undefined, 'removed');
  tt.same(store.listExtensions().map((e) => e.extension), ['6001']);
  tt.throws(() => store.removeExtension('6002'), ExtensionNotFoundError, 'removing twice');
});

t.test('bad input is refused with named, coded errors that never contain the password', async (tt) => {
  const store = freshStore(tt);
  for (const ext of ['', '1', '12345678901', 'abc', '60 01', '６００１', '+6001']) {
    tt.throws(() => store.addExtension(ext, PASSWORD, DOMAIN), { name: 'InvalidExtensionError', code: 'E_EXTENSION_INVALID' }, `extension ${JSON.stringify(ext)}`);
  }
  tt.doesNotThrow(() => store.addExtension('12', PASSWORD, DOMAIN), '2 digits is enough');
  tt.doesNotThrow(() => store.addExtension('1234567890', PASSWORD, DOMAIN), '10 digits is the most');
  const badPasswords: Array<[string, RegExp]> = [
    ['short12', /at least 8/],
    ['has:colon1', /":"/],
    ['tab\there12', /control/],
    [' leading-space', /spaces/],
    ['x'.repeat(129), /at most 128/],
  ];
  for (const [pw, reason] of badPasswords) {
    const err = caught(() => store.addExtension('6001', pw, DOMAIN));
    tt.type(err, InvalidPasswordError, `password refused: ${reason}`);
    tt.equal((err as InvalidPasswordError).code, 'E_PASSWORD_INVALID');
    tt.match((err as Error).message, reason);
    tt.notOk((err as Error).message.includes(pw), 'the message does not contain the password');
  }
  tt.throws(() => store.setPassword('6001x', PASSWORD), InvalidExtensionError, 'setPassword validates the extension');
  for (const domain of ['', 'a b', 'host:5060', 'abc:5060', '"x"', 'sip:pbx', 'a'.repeat(65)]) {
    tt.throws(() => store.addExtension('6001', PASSWORD, domain), { name: 'InvalidDomainError', code: 'E_DOMAIN_INVALID' }, `domain ${JSON.stringify(domain)}`);
  }
  tt.type(caught(() => store.addExtension('6001', PASSWORD, '')), InvalidDomainError);
  for (const domain of ['127.0.0.1', 'pbx.example.com', 'localhost', '::1', '[2001:db8::10]']) {
    tt.doesNotThrow(() => store.setPassword('12', PASSWORD, domain), `domain ${domain} is accepted`);
  }
  tt.same(store.listExtensions().map((e) => e.extension), ['12', '1234567890'], 'nothing bad was stored');
});

t.test('generatePassword makes valid, distinct passwords', async (tt) => {
  const seen = new Set<string>();
  for (let i = 0; i < 50; i += 1) {
    const pw = generatePassword();
    tt.equal(pw.length, 16);
    tt.equal(validatePassword(pw), pw);
    tt.match(pw, /^[A-Za-z2-9]+$/);
    tt.notMatch(pw, /[01lIO]/, 'no look-alike characters');
    seen.add(pw);
  }
  tt.equal(seen.size, 50, 'no repeats');
  tt.equal(generatePassword(12).length, 12);
  tt.throws(() => generatePassword(4), RangeError);
});
