// The call log: record types, the store interface and its SQLite and PostgreSQL implementations.
export * from './call-record';
export { CallLogSchemaError, MIGRATIONS, SCHEMA_VERSION, type Migration, type SqlDialect } from './migrations';
export { SqliteCallStore, type SqliteCallStoreOptions } from './sqlite-store';
export type { CheckpointResult } from './sqlite-checkpointer';
export { PostgresCallStore, type PostgresCallStoreOptions } from './postgres-store';
export { callStoreKind, openCallStore, redactUrl, type OpenCallStoreOptions } from './open-store';
