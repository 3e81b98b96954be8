// Errors of the extension store. Each has a `name` and a stable `code` that callers (the CLI,
// the operator API) switch on; messages name the bad input but never contain a password.

export type ExtensionErrorCode =
  | 'E_EXTENSION_INVALID'
  | 'E_PASSWORD_INVALID'
  | 'E_DOMAIN_INVALID'
  | 'E_EXTENSION_EXISTS'
  | 'E_EXTENSION_NOT_FOUND'
  | 'E_SCHEMA_MISMATCH'
  | 'E_DATABASE_MISSING';

export abstract class ExtensionError extends Error {
  abstract readonly code: ExtensionErrorCode;
}

/** The extension is not 2 to 10 digits. */
export class InvalidExtensionError extends ExtensionError {
  override readonly name = 'InvalidExtensionError';
  readonly code = 'E_EXTENSION_INVALID';
  constructor(readonly extension: string) {
    super(`invalid extension ${JSON.stringify(extension)}: expected 2 to 10 digits`);
  }
}

/** The password is too short, too long or contains a forbidden character. The value is never kept. */
export class InvalidPasswordError extends ExtensionError {
  override readonly name = 'InvalidPasswordError';
  readonly code = 'E_PASSWORD_INVALID';
  constructor(reason: string) {
    super(`invalid password: ${reason}`);
  }
}

/** The SIP domain (digest realm) is empty or not a plain host name or address. */
export class InvalidDomainError extends ExtensionError {
  override readonly name = 'InvalidDomainError';
  readonly code = 'E_DOMAIN_INVALID';
  constructor(readonly domain: string, reason: string) {
    super(`invalid SIP domain ${JSON.stringify(domain)}: ${reason}`);
  }
}

export class ExtensionExistsError extends ExtensionError {
  override readonly name = 'ExtensionExistsError';
  readonly code = 'E_EXTENSION_EXISTS';
  constructor(readonly extension: string) {
    super(`extension ${extension} already exists`);
  }
}

export class ExtensionNotFoundError extends ExtensionError {
  override readonly name = 'ExtensionNotFoundError';
  readonly code = 'E_EXTENSION_NOT_FOUND';
  constructor(readonly extension: string) {
    super(`extension ${extension} does not exist`);
  }
}

/**
 * The database was written by a newer version of this project, or holds Kamailio tables of a
 * version Kamailio 5.6 would refuse.
 */
export class SchemaMismatchError extends ExtensionError {
  override readonly name = 'SchemaMismatchError';
  readonly code = 'E_SCHEMA_MISMATCH';
  constructor(readonly file: string, detail: string) {
    super(`${file}: ${detail}`);
  }
}

/** The database file does not exist and was not to be created. */
export class DatabaseMissingError extends ExtensionError {
  override readonly name = 'DatabaseMissingError';
  readonly code = 'E_DATABASE_MISSING';
  constructor(readonly file: string) {
    super(`${file} does not exist (no extension was ever added there)`);
  }
}
