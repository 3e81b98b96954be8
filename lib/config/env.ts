import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from './engine-args';

/** Environment-like input: process.env in app/, a plain object in tests. */
export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Parses a .env file: `NAME=value` lines, `#` comments, optional `export `, values optionally in
 * single or double quotes (double quotes understand \n, \" and \\). Bad lines are reported by
 * line number; nothing is evaluated or interpolated.
 */
export function parseDotenv(text: string, fileName = '.env'): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new ConfigError(`${fileName} line ${i + 1}: expected NAME=value`);
    const name = m[1] as string;
    let value = m[2] as string;
    if (value.startsWith('"')) {
      const end = value.lastIndexOf('"');
      if (end === 0) throw new ConfigError(`${fileName} line ${i + 1}: ${name} has an unterminated quote`);
      value = value.slice(1, end).replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    } else if (value.startsWith("'")) {
      const end = value.lastIndexOf("'");
      if (end === 0) throw new ConfigError(`${fileName} line ${i + 1}: ${name} has an unterminated quote`);
      value = value.slice(1, end);
    } else {
      value = value.replace(/\s+#.*$/, '').trim();
    }
    out[name] = value;
  });
  return out;
}

/**
 * A process's settings: the .env file `file` (when it exists) under `processEnv`, which wins.
 * Called from app/ with process.env; nothing below app/ reads the environment itself.
 */
export function envWithDotenv(file: string, processEnv: Env): Record<string, string | undefined> {
  const fromFile = existsSync(file) ? parseDotenv(readFileSync(file, 'utf8'), file) : {};
  return { ...fromFile, ...processEnv };
}

/** Reads typed settings from an Env; every failure is a ConfigError naming the variable. */
export class EnvReader {
  readonly #env: Env;
  constructor(env: Env) {
    this.#env = env;
  }

  /** The raw value, or undefined when unset or empty. */
  raw(name: string): string | undefined {
    const v = this.#env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  string(name: string, fallback?: string): string {
    const v = this.raw(name) ?? fallback;
    if (v === undefined) throw new ConfigError(`${name} is required`);
    return v;
  }

  optionalString(name: string): string | undefined {
    return this.raw(name);
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    if (!/^-?\d+$/.test(v)) throw new ConfigError(`${name} must be a whole number, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const found = allowed.find((a) => a === v.toLowerCase());
    if (found === undefined) throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got "${v}"`);
    return found;
  }

  /** A TCP/UDP port number. */
  port(name: string, fallback: number): number {
    return this.integer(name, fallback, 1, 65535);
  }

  /** An IPv4 address or a host name (letters, digits, dots, dashes). */
  host(name: string, fallback?: string): string {
    const v = this.string(name, fallback);
    if (!isHost(v)) throw new ConfigError(`${name} must be an IPv4 address or a host name, got "${v}"`);
    return v;
  }

  optionalHost(name: string): string | undefined {
    const v = this.raw(name);
    if (v !== undefined && !isHost(v)) throw new ConfigError(`${name} must be an IPv4 address or a host name, got "${v}"`);
    return v;
  }

  /** Comma-separated host:port list. */
  hostPorts(name: string, fallback: string): Array<{ host: string; port: number }> {
    const v = this.raw(name) ?? fallback;
    const items = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (items.length === 0) throw new ConfigError(`${name} must list at least one host:port`);
    return items.map((item) => {
      const m = /^([^:\s]+):(\d{1,5})$/.exec(item);
      const port = m ? Number(m[2]) : 0;
      if (!m || !isHost(m[1] as string) || port < 1 || port > 65535) {
        throw new ConfigError(`${name}: "${item}" is not host:port`);
      }
      return { host: m[1] as string, port };
    });
  }

  /** A sip: URI with a host (user part optional). */
  sipUri(name: string, fallback: string): string {
    const v = this.raw(name) ?? fallback;
    if (!/^sips?:([^@\s]+@)?[A-Za-z0-9.-]+(:\d{1,5})?(;[^\s]*)?$/.test(v)) throw new ConfigError(`${name} must be a SIP URI like sip:10.0.0.1:5060, got "${v}"`);
    return v;
  }
}

export function isHost(v: string): boolean {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(v)) return v.split('.').every((p) => Number(p) <= 255);
  return /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(v);
}
