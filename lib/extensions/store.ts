// The extension store: Kamailio's subscriber and location tables in one SQLite file, shared
// with a running Kamailio (auth_db reads subscriber, usrloc writes location).
//
// The file is opened in WAL mode so Kamailio's readers and this process never block each other;
// writes here are single short statements. Kamailio 5.6's db_sqlite sets no busy timeout, so
// keeping our write transactions tiny is what keeps its registrations from failing.

import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { DatabaseMissingError, ExtensionExistsError, ExtensionNotFoundError, SchemaMismatchError } from './errors';
import { KAMAILIO_TABLE_VERSIONS, MIGRATIONS, SCHEMA_VERSION } from './schema';
import { digestHa1, validateDomain, validateExtension, validatePassword } from './validate';

/** One registered contact of an extension, from usrloc's location table. */
export interface ExtensionContact {
  /** The Contact URI the phone registered. */
  readonly contact: string;
  /** When the binding ends; null for a permanent binding. */
  readonly expires: Date | null;
  /** Source address the REGISTER came from, when usrloc recorded one (NAT). */
  readonly received: string | null;
  /** Kamailio's socket the REGISTER arrived on, e.g. "udp:127.0.0.1:5060". */
  readonly socket: string | null;
  readonly userAgent: string;
}

export interface ExtensionInfo {
  readonly extension: string;
  readonly domain: string;
  /** True when at least one contact has not expired. */
  readonly registered: boolean;
  /** Contacts not yet expired: permanent ones first, then the latest expiry first. */
  readonly contacts: readonly ExtensionContact[];
}

export interface OpenExtensionStoreOptions {
  /** Fail instead of creating a missing file (default false: create it and its directory). */
  readonly mustExist?: boolean;
}

interface SubscriberRow {
  username: string;
  domain: string;
}

interface LocationRow {
  username: string;
  contact: string;
  expires: number | string | null;
  received: string | null;
  socket: string | null;
  user_agent: string | null;
}

/** Unix epoch as a Julian day number, the form db_sqlite stores DATETIME values in. */
const JULIAN_UNIX_EPOCH = 2440587.5;

/** A usrloc timestamp (Julian day number, or text from another writer) as a Date; null = never. */
function usrlocTime(value: number | string | null): Date | null {
  if (value === null) return null;
  if (typeof value === 'number') {
    const seconds = Math.round((value - JULIAN_UNIX_EPOCH) * 86400);
    // usrloc writes expires=0 for a permanent binding.
    return seconds <= 0 ? null : new Date(seconds * 1000);
  }
  const parsed = Date.parse(value.replace(' ', 'T'));
  return Number.isNaN(parsed) ? null : new Date(parsed);
}

/**
 * Opens (creating when needed) the SQLite file and brings its schema up to date: PRAGMA
 * user_version counts this project's migrations; Kamailio's `version` rows are checked against
 * what Kamailio 5.6 requires. Safe to call from several processes at once.
 */
function openDatabase(file: string, options: OpenExtensionStoreOptions): Database.Database {
  const created = !existsSync(file);
  if (created && options.mustExist) throw new DatabaseMissingError(file);
  if (created) mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file, { fileMustExist: options.mustExist ?? false, timeout: 5000 });
  try {
    // The file holds digest secrets: readable by its owner only.
    if (created) chmodSync(file, 0o600);
    db.pragma('journal_mode = WAL');
    migrate(db, file);
    checkKamailioVersions(db, file);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function userVersion(db: Database.Database): number {
  return Number(db.pragma('user_version', { simple: true }));
}

function migrate(db: Database.Database, file: string): void {
  if (userVersion(db) === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Read again under the write lock: another process may have migrated meanwhile.
    const current = userVersion(db);
    if (current > SCHEMA_VERSION) {
      throw new SchemaMismatchError(file, `schema version ${current} is newer than this program's ${SCHEMA_VERSION}`);
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= current) continue;
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
    }
  }).immediate();
}

function checkKamailioVersions(db: Database.Database, file: string): void {
  const rows = db.prepare('SELECT table_name, table_version FROM version').all() as Array<{ table_name: string; table_version: number }>;
  for (const row of rows) {
    const wanted = KAMAILIO_TABLE_VERSIONS[row.table_name];
    if (wanted !== undefined && row.table_version !== wanted) {
      throw new SchemaMismatchError(file, `table ${row.table_name} has version ${row.table_version}; Kamailio 5.6 needs ${wanted}`);
    }
  }
}

/**
 * Extensions (SIP accounts) and their registrations. Kamailio runs with use_domain=0, so an
 * extension is unique by its number alone; its domain is the digest realm its secrets were
 * computed with.
 */
export class ExtensionStore {
  readonly file: string;
  readonly #db: Database.Database;
  #closed = false;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.#db = db;
  }

  /** Opens the store at `file`, creating the file, its directory and the schema as needed. */
  static open(file: string, options: OpenExtensionStoreOptions = {}): ExtensionStore {
    const absolute = resolve(file);
    return new ExtensionStore(absolute, openDatabase(absolute, options));
  }

  /** Adds an extension. Throws on bad input or when the number is already taken. */
  addExtension(extension: string, password: string, domain: string): ExtensionInfo {
    validateExtension(extension);
    validatePassword(password);
    validateDomain(domain);
    const { ha1, ha1b } = digestHa1(extension, domain, password);
    this.#db.transaction(() => {
      if (this.#subscriberRows(extension).length > 0) throw new ExtensionExistsError(extension);
      this.#db
        .prepare("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, '', ?, ?)")
        .run(extension, domain, ha1, ha1b);
    }).immediate();
    return { extension, domain, registered: false, contacts: [] };
  }

  /**
   * Replaces the extension's digest secrets. With `domain`, the extension moves to that realm;
   * without, it keeps its own.
   */
  setPassword(extension: string, password: string, domain?: string): void {
    validateExtension(extension);
    validatePassword(password);
    if (domain !== undefined) validateDomain(domain);
    this.#db.transaction(() => {
      const rows = this.#subscriberRows(extension);
      const first = rows[0];
      if (!first) throw new ExtensionNotFoundError(extension);
      const realm = domain ?? first.domain;
      const { ha1, ha1b } = digestHa1(extension, realm, password);
      this.#db
        .prepare("UPDATE subscriber SET domain = ?, password = '', ha1 = ?, ha1b = ? WHERE username = ?")
        .run(realm, ha1, ha1b, extension);
    }).immediate();
  }

  /**
   * Removes the extension. Calls to it get 404 at once; a registration it still holds stays in
   * Kamailio's memory until it expires (its next REGISTER is refused).
   */
  removeExtension(extension: string): void {
    validateExtension(extension);
    const result = this.#db.prepare('DELETE FROM subscriber WHERE username = ?').run(extension);
    if (result.changes === 0) throw new ExtensionNotFoundError(extension);
  }

  /** One extension with its live contacts, or undefined. */
  getExtension(extension: string, now: Date = new Date()): ExtensionInfo | undefined {
    validateExtension(extension);
    const row = this.#subscriberRows(extension)[0];
    if (!row) return undefined;
    const locations = this.#db
      .prepare('SELECT username, contact, expires, received, socket, user_agent FROM location WHERE username = ?')
      .all(extension) as LocationRow[];
    return this.#info(row, locations, now);
  }

  /** Every extension, in numeric order, with its live contacts. */
  listExtensions(now: Date = new Date()): ExtensionInfo[] {
    const subscribers = this.#db
      .prepare('SELECT username, domain FROM subscriber ORDER BY length(username), username, domain')
      .all() as SubscriberRow[];
    const locations = this.#db
      .prepare('SELECT username, contact, expires, received, socket, user_agent FROM location')
      .all() as LocationRow[];
    const byUser = new Map<string, LocationRow[]>();
    for (const loc of locations) {
      const list = byUser.get(loc.username) ?? [];
      list.push(loc);
      byUser.set(loc.username, list);
    }
    const seen = new Set<string>();
    const out: ExtensionInfo[] = [];
    for (const sub of subscribers) {
      if (seen.has(sub.username)) continue;
      seen.add(sub.username);
      out.push(this.#info(sub, byUser.get(sub.username) ?? [], now));
    }
    return out;
  }

  /** Closes the database. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #subscriberRows(extension: string): SubscriberRow[] {
    return this.#db.prepare('SELECT username, domain FROM subscriber WHERE username = ? ORDER BY id').all(extension) as SubscriberRow[];
  }

  #info(sub: SubscriberRow, locations: readonly LocationRow[], now: Date): ExtensionInfo {
    const contacts: ExtensionContact[] = [];
    for (const loc of locations) {
      const expires = usrlocTime(loc.expires);
      if (expires !== null && expires.getTime() <= now.getTime()) continue;
      contacts.push({
        contact: loc.contact,
        expires,
        received: loc.received,
        socket: loc.socket,
        userAgent: loc.user_agent ?? '',
      });
    }
    const until = (c: ExtensionContact): number => c.expires?.getTime() ?? Number.MAX_SAFE_INTEGER;
    contacts.sort((a, b) => until(b) - until(a));
    return { extension: sub.username, domain: sub.domain, registered: contacts.length > 0, contacts };
  }
}

/** Creates the file and schema when missing, or checks and migrates an existing one. */
export function ensureExtensionSchema(file: string): void {
  ExtensionStore.open(file).close();
}
