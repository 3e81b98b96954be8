// The `npm run extensions` command (app/extensions.ts), run in-process with its own env and cwd.

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { runExtensionsCli } from '../../../app/extensions';

interface Run {
  code: number;
  out: string;
  err: string;
}

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}

/** A working directory for one test, with a runner bound to it and to `env`. */
function sandbox(tt: { teardown(fn: () => void): void }, env: Record<string, string> = {}): { cwd: string; run: (...argv: string[]) => Run } {
  const cwd = mkdtempSync(join(tmpdir(), 'extensions-cli-'));
  tt.teardown(() => rmSync(cwd, { recursive: true, force: true }));
  return {
    cwd,
    run: (...argv) => {
      let out = '';
      let err = '';
      const code = runExtensionsCli(argv, env, cwd, { out: (s) => { out += s; }, err: (s) => { err += s; } });
      return { code, out, err };
    },
  };
}

function ha1Of(file: string, ext: string): { domain: string; ha1: string } | undefined {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT domain, ha1 FROM subscriber WHERE username = ?').get(ext) as { domain: string; ha1: string } | undefined;
  } finally {
    db.close();
  }
}

t.test('add, list, passwd, remove with the default database under VAR_DIR', async (tt) => {
  const { cwd, run } = sandbox(tt, { VAR_DIR: 'state', SIP_DOMAIN: 'pbx.example.com' });
  const file = join(cwd, 'state', 'kamailio.sqlite');

  const add = run('add', '6001', '--password', 'secret123');
  tt.equal(add.code, 0, add.err);
  tt.match(add.out, /extension 6001 added \(domain pbx\.example\.com\)/);
  tt.notMatch(add.out + add.err, /secret123/, 'a given password is never printed');
  tt.ok(existsSync(file), 'the database is $VAR_DIR/kamailio.sqlite, relative to the working directory');
  tt.equal(ha1Of(file, '6001')?.ha1, md5('6001:pbx.example.com:secret123'), 'ha1 uses SIP_DOMAIN as realm');

  const list = run('list', '--json');
  tt.equal(list.code, 0);
  const parsed = JSON.parse(list.out) as Array<{ extension: string; domain: string; registered: boolean; contacts: unknown[] }>;
  tt.same(parsed, [{ extension: '6001', domain: 'pbx.example.com', registered: false, contacts: [] }]);
  const table = run('list');
  tt.match(table.out, /^EXTENSION\s+DOMAIN\s+REGISTERED/m, 'a table with a header');
  tt.match(table.out, /^6001\s+pbx\.example\.com\s+no\b/m);

  const passwd = run('passwd', '6001', '--generate');
  tt.equal(passwd.code, 0, passwd.err);
  const generated = /password: (\S+)/.exec(passwd.out)?.[1] ?? '';
  tt.equal(generated.length, 16, 'the generated password is printed once');
  tt.equal(ha1Of(file, '6001')?.ha1, md5(`6001:pbx.example.com:${generated}`), 'and is the one stored');

  const removed = run('remove', '6001');
  tt.equal(removed.code, 0);
  tt.match(removed.out, /extension 6001 removed/);
  tt.same(JSON.parse(run('list', '--json').out), []);
});

t.test('--db and --domain override the environment; add --generate prints the password', async (tt) => {
  const { cwd, run } = sandbox(tt, { SIP_DOMAIN: 'ignored.example.com' });
  const file = join(cwd, 'custom.sqlite');
  const add = run('add', '6002', '--generate', '--db', 'custom.sqlite', '--domain', '10.0.0.5');
  tt.equal(add.code, 0, add.err);
  const pw = /password: (\S+)/.exec(add.out)?.[1] ?? '';
  tt.equal(ha1Of(file, '6002')?.ha1, md5(`6002:10.0.0.5:${pw}`));
  tt.notOk(existsSync(join(cwd, 'var')), 'the default location was not touched');
});

t.test('domain defaults: SIP_ADVERTISED_ADDRESS, then SIP_ADDRESS, then 127.0.0.1; passwd keeps the stored one', async (tt) => {
  const adv = sandbox(tt, { SIP_ADVERTISED_ADDRESS: '203.0.113.7', SIP_ADDRESS: '10.0.0.5' });
  tt.match(adv.run('add', '6001', '--password', 'secret123').out, /domain 203\.0\.113\.7/);
  const addr = sandbox(tt, { SIP_ADDRESS: '10.0.0.5' });
  tt.match(addr.run('add', '6001', '--password', 'secret123').out, /domain 10\.0\.0\.5/);
  const none = sandbox(tt);
  tt.match(none.run('add', '6001', '--password', 'secret123').out, /domain 127\.0\.0\.1/);
  const stored = join(none.cwd, 'var', 'kamailio.sqlite');
  none.run('add', '6003', '--password', 'secret123', '--domain', 'pbx.example.com');
  tt.equal(none.run('passwd', '6003', '--password', 'another-one').code, 0);
  tt.same(ha1Of(stored, '6003'), { domain: 'pbx.example.com', ha1: md5('6003:pbx.example.com:another-one') }, 'without --domain or SIP_DOMAIN, passwd keeps the realm');
});

t.test('bad usage exits 2 with a message and the usage text', async (tt) => {
  const { run } = sandbox(tt);
  const cases: Array<[string[], RegExp]> = [
    [[], /a command is required/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['add'], /add needs an extension/],
    [['add', '6001'], /needs --password <pw> or --generate/],
    [['add', '6001', '--password', 'secret123', '--generate'], /either --password or --generate/],
    [['add', '6001', '--password'], /password/],
    [['add', '6001', '--password', 'secret123', '--colour'], /--colour/],
    [['remove', '6001', '--password', 'secret123'], /takes no password/],
    [['list', '6001'], /list takes no extension/],
    [['add', '6001', 'extra', '--generate'], /unexpected argument "extra"/],
    [['remove', '6001', '--json'], /--json goes with list/],
    [['add', '60a1', '--password', 'secret123'], /invalid extension "60a1"/],
    [['add', '6001', '--password', 'short'], /at least 8 characters/],
    [['add', '6001', '--password', 'secret123', '--domain', 'bad domain'], /invalid SIP domain/],
  ];
  for (const [argv, message] of cases) {
    const r = run(...argv);
    tt.equal(r.code, 2, `exit 2 for: ${argv.join(' ') || '(nothing)'}`);
    tt.match(r.err, message, `message for: ${argv.join(' ') || '(nothing)'}`);
  }
  tt.match(run().err, /Usage: npm run extensions/, 'usage follows a usage error');
  const help = run('--help');
  tt.equal(help.code, 0);
  tt.match(help.out, /Usage: npm run extensions/);
});

t.test('refusals exit 1: duplicate, unknown extension, missing database', async (tt) => {
  const { run } = sandbox(tt);
  tt.equal(run('add', '6001', '--password', 'secret123').code, 0);
  const dup = run('add', '6001', '--password', 'secret123');
  tt.equal(dup.code, 1);
  tt.match(dup.err, /extension 6001 already exists/);
  const missing = run('remove', '6999');
  tt.equal(missing.code, 1);
  tt.match(missing.err, /extension 6999 does not exist/);
  const noDb = run('passwd', '6001', '--password', 'secret123', '--db', 'nowhere/kamailio.sqlite');
  tt.equal(noDb.code, 1);
  tt.match(noDb.err, /does not exist/);
});
