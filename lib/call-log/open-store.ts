/**
 * Picks the call log's store from the settings: PostgreSQL when DATABASE_URL is a postgres:// or
 * postgresql:// URL, else the SQLite file. Nothing here prints a password: URLs in messages go
 * through redactUrl().
 */
import type { CallStore } from './call-record';
import { PostgresCallStore, redactUrl, type PostgresCallStoreOptions } from './postgres-store';
import { SqliteCallStore } from './sqlite-store';

export { redactUrl };

export interface OpenCallStoreOptions {
  /** DATABASE_URL; unset or empty means SQLite. */
  databaseUrl?: string;
  /** The SQLite file used when there is no DATABASE_URL. */
  sqlitePath: string;
  /** Passed to the PostgreSQL store. */
  postgres?: PostgresCallStoreOptions;
}

/** Which store a DATABASE_URL selects; throws an Error naming DATABASE_URL for anything else. */
export function callStoreKind(databaseUrl: string | undefined): CallStore['kind'] {
  if (databaseUrl === undefined || databaseUrl.trim() === '') return 'sqlite';
  if (/^postgres(ql)?:\/\//i.test(databaseUrl.trim())) return 'postgres';
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(databaseUrl.trim())?.[1];
  throw new Error(
    scheme === undefined
      ? 'DATABASE_URL is not a URL: expected postgres://user:password@host:5432/database (or leave it unset to use SQLite)'
      : `DATABASE_URL has scheme "${scheme}:", which the call log does not support: expected postgres:// or postgresql:// (or leave it unset to use SQLite)`,
  );
}

/** Opens (and migrates) the configured call store. */
export async function openCallStore(options: OpenCallStoreOptions): Promise<CallStore> {
  if (callStoreKind(options.databaseUrl) === 'postgres') {
    return PostgresCallStore.open(options.databaseUrl!.trim(), options.postgres);
  }
  // WAL checkpoints on a worker thread: the B2BUA's event loop never waits for an fsync.
  return SqliteCallStore.open(options.sqlitePath, { checkpoint: 'worker' });
}
