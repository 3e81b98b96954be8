// `npm run extensions -- <command>`: manage the SIP extensions Kamailio authenticates, in the
// SQLite file it shares with Kamailio (subscriber and location tables).
//
//   add 6001 --password secret123      add 6001 --generate
//   passwd 6001 --password ...          passwd 6001 --generate
//   remove 6001
//   list [--json]
//
// The database is --db, else $VAR_DIR/kamailio.sqlite (VAR_DIR defaults to "var"); the domain
// (digest realm) is --domain, else SIP_DOMAIN, SIP_ADVERTISED_ADDRESS, SIP_ADDRESS, 127.0.0.1,
// the same defaults `npm start` gives Kamailio. A .env file in the working directory is read
// as `npm start` reads it; the environment wins. Passwords are printed only when generated.
//
// Exit codes: 0 done, 1 refused (exists, not found, database problem), 2 bad usage or input.

import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { envWithDotenv } from '../lib/config/env';
import { ExtensionError, ExtensionStore, generatePassword, type ExtensionInfo } from '../lib/extensions';

export const EXTENSIONS_USAGE = `Usage: npm run extensions -- <command> [options]
       (or: node dist/app/extensions.js <command> [options])

Commands:
  add <extension> (--password <pw> | --generate)     create an extension (2-10 digits)
  passwd <extension> (--password <pw> | --generate)  set a new password
  remove <extension>                                 delete an extension
  list [--json]                                      extensions, registered or not, and contacts

Options:
  --password <pw>   at least 8 characters, no ':'
  --generate        make a random password and print it once
  --db <file>       SQLite file (default: $VAR_DIR/kamailio.sqlite, VAR_DIR default "var")
  --domain <host>   SIP domain and digest realm (default: $SIP_DOMAIN, else the SIP address, else 127.0.0.1)
  --json            list as JSON
  -h, --help        this text`;

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'E_USAGE';
}

type Command = 'add' | 'passwd' | 'remove' | 'list';

interface ParsedCommand {
  command: Command;
  extension?: string;
  password?: string;
  generate: boolean;
  json: boolean;
  db: string;
  domain: string;
  domainGiven: boolean;
}

function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, cwd: string): ParsedCommand | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        password: { type: 'string' },
        generate: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        db: { type: 'string' },
        domain: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  const [name, extension, ...rest] = positionals;
  if (name === undefined) throw new UsageError('a command is required: add, passwd, remove or list');
  if (name !== 'add' && name !== 'passwd' && name !== 'remove' && name !== 'list') {
    throw new UsageError(`unknown command "${name}" (expected add, passwd, remove or list)`);
  }
  const command: Command = name;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (command === 'list') {
    if (extension !== undefined) throw new UsageError(`list takes no extension (got "${extension}")`);
  } else if (extension === undefined) {
    throw new UsageError(`${command} needs an extension, e.g. ${command} 6001`);
  }
  const wantsPassword = command === 'add' || command === 'passwd';
  if (wantsPassword) {
    if (values.password !== undefined && values.generate) throw new UsageError('give either --password or --generate, not both');
    if (values.password === undefined && !values.generate) throw new UsageError(`${command} needs --password <pw> or --generate`);
  } else if (values.password !== undefined || values.generate) {
    throw new UsageError(`${command} takes no password`);
  }
  if (values.json && command !== 'list') throw new UsageError('--json goes with list');

  const raw = (key: string): string | undefined => {
    const v = env[key]?.trim();
    return v ? v : undefined;
  };
  const varDir = raw('VAR_DIR') ?? 'var';
  const db = values.db ?? join(isAbsolute(varDir) ? varDir : resolve(cwd, varDir), 'kamailio.sqlite');
  const envDomain = raw('SIP_DOMAIN') ?? raw('SIP_ADVERTISED_ADDRESS') ?? raw('SIP_ADDRESS');
  return {
    command,
    extension,
    password: values.password,
    generate: values.generate,
    json: values.json,
    db: isAbsolute(db) ? db : resolve(cwd, db),
    domain: values.domain ?? envDomain ?? '127.0.0.1',
    domainGiven: values.domain !== undefined || envDomain !== undefined,
  };
}

function formatExpiry(contactExpires: Date | null, now: Date): string {
  if (contactExpires === null) return 'permanent';
  return `${Math.max(0, Math.round((contactExpires.getTime() - now.getTime()) / 1000))} s`;
}

function formatList(extensions: readonly ExtensionInfo[], now: Date): string {
  if (extensions.length === 0) return 'no extensions (add one: npm run extensions -- add 6001 --generate)';
  const rows: string[][] = [['EXTENSION', 'DOMAIN', 'REGISTERED', 'CONTACT', 'EXPIRES IN', 'USER AGENT']];
  for (const ext of extensions) {
    if (ext.contacts.length === 0) {
      rows.push([ext.extension, ext.domain, 'no', '-', '-', '-']);
      continue;
    }
    ext.contacts.forEach((c, i) => {
      rows.push(i === 0 ? [ext.extension, ext.domain, 'yes'] : ['', '', '']);
      rows[rows.length - 1]?.push(c.contact, formatExpiry(c.expires, now), c.userAgent || '-');
    });
  }
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col] ?? 0))).join('  ')).join('\n');
}

/**
 * Runs one command and returns the exit code. `env` and `cwd` are passed in (process.env and
 * process.cwd() from main), so tests can run it in-process.
 */
export function runExtensionsCli(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
  io: CliIo,
): number {
  let cmd: ParsedCommand | 'help';
  try {
    cmd = parseCommand(argv, env, cwd);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`extensions: ${err.message}\n\n${EXTENSIONS_USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (cmd === 'help') {
    io.out(`${EXTENSIONS_USAGE}\n`);
    return 0;
  }
  let store: ExtensionStore | undefined;
  try {
    store = ExtensionStore.open(cmd.db, { mustExist: cmd.command === 'remove' || cmd.command === 'passwd' });
    const password = cmd.generate ? generatePassword() : cmd.password;
    const ext = cmd.extension ?? '';
    switch (cmd.command) {
      case 'add':
        store.addExtension(ext, password ?? '', cmd.domain);
        io.out(`extension ${ext} added (domain ${cmd.domain})\n`);
        break;
      case 'passwd':
        store.setPassword(ext, password ?? '', cmd.domainGiven ? cmd.domain : undefined);
        io.out(`password of extension ${ext} changed\n`);
        break;
      case 'remove':
        store.removeExtension(ext);
        io.out(`extension ${ext} removed\n`);
        break;
      case 'list': {
        const now = new Date();
        const list = store.listExtensions(now);
        io.out(cmd.json ? `${JSON.stringify(list, null, 2)}\n` : `${formatList(list, now)}\n`);
        break;
      }
      default: {
        const never: never = cmd.command;
        throw new Error(`unhandled command ${String(never)}`);
      }
    }
    if (cmd.generate && password !== undefined) io.out(`password: ${password}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ExtensionError) {
      io.err(`extensions: ${err.message}\n`);
      const badInput = err.code === 'E_EXTENSION_INVALID' || err.code === 'E_PASSWORD_INVALID' || err.code === 'E_DOMAIN_INVALID';
      return badInput ? 2 : 1;
    }
    // better-sqlite3's SqliteError carries SQLITE_* codes; fs errors carry errno names.
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && (e.code.startsWith('SQLITE_') || e.code === 'EACCES' || e.code === 'ENOENT' || e.code === 'ENOTDIR')) {
      io.err(`extensions: cannot use ${cmd.db}: ${e.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    store?.close();
  }
}

/** Reads .env (if any) under the environment, as `npm start` does. */
function loadEnv(cwd: string): Record<string, string | undefined> {
  return envWithDotenv(join(cwd, '.env'), process.env);
}

if (require.main === module) {
  const cwd = process.cwd();
  let env: Record<string, string | undefined>;
  try {
    env = loadEnv(cwd);
  } catch (err) {
    process.stderr.write(`extensions: ${(err as Error).message}\n`);
    process.exit(2);
  }
  process.exitCode = runExtensionsCli(process.argv.slice(2), env, cwd, {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  });
}
