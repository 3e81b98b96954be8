// The SQLite schema Kamailio 5.6 reads and writes (auth_db: subscriber; usrloc: location), and
// this project's own numbered migrations of it.
//
// Kamailio checks the `version` table at start-up and refuses a table whose version differs from
// the one it was built for: subscriber 7, location 9, location_attrs 1 in 5.6. Our migrations are
// counted separately, in SQLite's `PRAGMA user_version`, so they never disturb Kamailio's rows.
//
// Column types matter beyond SQL: db_sqlite picks the C type of each value from the declared type
// (a name containing INT is an integer, CHAR or TEXT a string, REAL/FLOAT/DOUBLE a double,
// TIME or DATE a timestamp stored as a Julian day number). So strings are VARCHAR, times
// DATETIME, and `q` is REAL, as usrloc expects when it loads registrations back.

/** The table versions Kamailio 5.6 requires. */
export const KAMAILIO_TABLE_VERSIONS: Readonly<Record<string, number>> = {
  version: 1,
  subscriber: 7,
  location: 9,
  location_attrs: 1,
};

export interface Migration {
  /** Becomes PRAGMA user_version once applied. Strictly increasing from 1. */
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

const KAMAILIO_TABLES = `
CREATE TABLE IF NOT EXISTS version (
  id            INTEGER PRIMARY KEY NOT NULL,
  table_name    VARCHAR(32) NOT NULL,
  table_version INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT version_table_name_idx UNIQUE (table_name)
);

-- auth_db: one row per extension. ha1 = md5(user:realm:password), ha1b =
-- md5(user@domain:realm:password). The plaintext password column exists because auth_db's
-- schema has it; this project leaves it empty.
CREATE TABLE IF NOT EXISTS subscriber (
  id       INTEGER PRIMARY KEY NOT NULL,
  username VARCHAR(64)  NOT NULL DEFAULT '',
  domain   VARCHAR(64)  NOT NULL DEFAULT '',
  password VARCHAR(64)  NOT NULL DEFAULT '',
  ha1      VARCHAR(128) NOT NULL DEFAULT '',
  ha1b     VARCHAR(128) NOT NULL DEFAULT '',
  CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
);
CREATE INDEX IF NOT EXISTS subscriber_username_idx ON subscriber (username);

-- usrloc (db_mode 1 writes each binding as it changes): one row per registered contact,
-- keyed by ruid. expires and last_modified are Julian day numbers written by db_sqlite.
CREATE TABLE IF NOT EXISTS location (
  id            INTEGER PRIMARY KEY NOT NULL,
  ruid          VARCHAR(64)  NOT NULL DEFAULT '',
  username      VARCHAR(64)  NOT NULL DEFAULT '',
  domain        VARCHAR(64)  DEFAULT NULL,
  contact       VARCHAR(512) NOT NULL DEFAULT '',
  received      VARCHAR(128) DEFAULT NULL,
  path          VARCHAR(512) DEFAULT NULL,
  expires       DATETIME     NOT NULL DEFAULT '2030-05-28 21:32:15',
  q             REAL         NOT NULL DEFAULT 1.0,
  callid        VARCHAR(255) NOT NULL DEFAULT 'Default-Call-ID',
  cseq          INTEGER      NOT NULL DEFAULT 1,
  last_modified DATETIME     NOT NULL DEFAULT '2000-01-01 00:00:01',
  flags         INTEGER      NOT NULL DEFAULT 0,
  cflags        INTEGER      NOT NULL DEFAULT 0,
  user_agent    VARCHAR(255) NOT NULL DEFAULT '',
  socket        VARCHAR(64)  DEFAULT NULL,
  methods       INTEGER      DEFAULT NULL,
  instance      VARCHAR(255) DEFAULT NULL,
  reg_id        INTEGER      NOT NULL DEFAULT 0,
  server_id     INTEGER      NOT NULL DEFAULT 0,
  connection_id INTEGER      NOT NULL DEFAULT 0,
  keepalive     INTEGER      NOT NULL DEFAULT 0,
  partition     INTEGER      NOT NULL DEFAULT 0,
  CONSTRAINT location_ruid_idx UNIQUE (ruid)
);
CREATE INDEX IF NOT EXISTS location_account_contact_idx ON location (username, domain, contact);
CREATE INDEX IF NOT EXISTS location_expires_idx ON location (expires);
CREATE INDEX IF NOT EXISTS location_tcpcon_idx ON location (connection_id);
CREATE INDEX IF NOT EXISTS location_connection_idx ON location (server_id, connection_id);

-- usrloc's per-contact attributes (only written when xavp_contact is configured).
CREATE TABLE IF NOT EXISTS location_attrs (
  id            INTEGER PRIMARY KEY NOT NULL,
  ruid          VARCHAR(64)  NOT NULL DEFAULT '',
  username      VARCHAR(64)  NOT NULL DEFAULT '',
  domain        VARCHAR(64)  DEFAULT NULL,
  aname         VARCHAR(64)  NOT NULL DEFAULT '',
  atype         INTEGER      NOT NULL DEFAULT 0,
  avalue        VARCHAR(512) NOT NULL DEFAULT '',
  last_modified DATETIME     NOT NULL DEFAULT '2000-01-01 00:00:01'
);
CREATE INDEX IF NOT EXISTS location_attrs_account_record_idx ON location_attrs (username, domain, ruid);
CREATE INDEX IF NOT EXISTS location_attrs_last_modified_idx ON location_attrs (last_modified);

INSERT OR IGNORE INTO version (table_name, table_version) VALUES
  ('version', 1), ('subscriber', 7), ('location', 9), ('location_attrs', 1);
`;

/** Every migration, oldest first. Append only: never edit one that has shipped. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'Kamailio 5.6 tables: version, subscriber (7), location (9), location_attrs (1)', sql: KAMAILIO_TABLES },
];

/** The schema version this code writes (PRAGMA user_version after every migration). */
export const SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
