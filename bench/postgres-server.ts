/**
 * A throwaway PostgreSQL server from Debian's package, for benchmarks and tests: initdb into a
 * fresh temporary directory, listen on 127.0.0.1:<port> (socket directory inside it as well),
 * trust authentication (loopback only), stopped by PID and deleted afterwards.
 *
 * initdb and postgres refuse to run as root, so under root they run as the `postgres` system user
 * (`runuser -u postgres --`), which then owns the directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';

export interface ThrowawayPostgresOptions {
  /** A free port on 127.0.0.1 (the caller picks it: tests and benchmarks have their own allocators). */
  port: number;
  /**
   * false (tests): fsync, synchronous_commit and full_page_writes off, for speed.
   * true (benchmarks): the server's durable defaults.
   */
  durable?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
  /** How long to wait for the first connection (default 30 s). */
  startTimeoutMs?: number;
}

export interface ThrowawayPostgres {
  /** postgresql://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  readonly port: number;
  /** The postmaster's PID. */
  readonly pid: number;
  /** A URL for a new empty database on this server. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (fast shutdown, then SIGKILL after a bound) and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

const STOP_TIMEOUT_MS = 10_000;
const OUTPUT_KEPT = 40;

/** /usr/lib/postgresql/<newest version>/bin, or an Error saying what to install. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, 'bin', 'postgres')) && existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`PostgreSQL server binaries not found under ${root}: apt-get install postgresql`);
  return join(root, versions[0]!, 'bin');
}

/** uid and gid of a system user, from /etc/passwd. */
function systemUser(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const fields = line?.split(':');
  if (fields === undefined || fields.length < 4) throw new Error(`system user ${name} not found (it comes with the postgresql package: apt-get install postgresql)`);
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** Runs as `postgres` when we are root; as ourselves otherwise. */
function asServerUser(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

async function canConnect(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startThrowawayPostgres(options: ThrowawayPostgresOptions): Promise<ThrowawayPostgres> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'b2bua-pg-'));
  const dataDir = join(dir, 'data');
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    if (process.getuid?.() === 0) {
      const { uid, gid } = systemUser('postgres');
      chownSync(dir, uid, gid);
    }
    const [initCommand, initArgs] = asServerUser(join(bin, 'initdb'), [
      '-D',
      dataDir,
      '--username=postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    const init = spawnSync(initCommand, initArgs, { encoding: 'utf8' });
    if (init.status !== 0) {
      throw new Error(`initdb failed (${init.error?.message ?? `exit ${init.status}`}):\n${`${init.stdout ?? ''}${init.stderr ?? ''}`.trim().split('\n').slice(-OUTPUT_KEPT).join('\n')}`);
    }
  } catch (err) {
    removeDir();
    throw err;
  }

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    port: String(options.port),
    unix_socket_directories: dir,
    ...(options.durable ? {} : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' }),
    ...options.settings,
  };
  const [command, args] = asServerUser(join(bin, 'postgres'), ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])]);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer): void => {
    output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    output.splice(0, Math.max(0, output.length - OUTPUT_KEPT));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const childExited = exited(child);

  let postmasterPid = 0;
  // If this process dies first, do not leave a server behind (synchronous: 'exit' allows no waiting).
  const killOnExit = (): void => {
    if (postmasterPid > 0 && isAlive(postmasterPid)) process.kill(postmasterPid, 'SIGKILL');
    removeDir();
  };
  process.once('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The postmaster itself (under root, `child` is runuser, which waits for it).
      const pid = postmasterPid > 0 ? postmasterPid : child.pid;
      if (pid !== undefined && isAlive(pid)) {
        // SIGINT is PostgreSQL's fast shutdown: it ends client sessions instead of waiting for
        // them (SIGTERM, "smart", would wait for every pool to close).
        process.kill(pid, 'SIGINT');
        const bound = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS).unref());
        if ((await Promise.race([childExited.then(() => 'exited' as const), bound])) === 'timeout' && isAlive(pid)) {
          process.kill(pid, 'SIGKILL');
          await childExited;
        }
      }
      process.removeListener('exit', killOnExit);
      removeDir();
    })();
    return stopping;
  };

  const url = `postgresql://postgres@127.0.0.1:${options.port}/postgres`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  let gone = false;
  void childExited.then(() => {
    gone = true;
  });
  try {
    for (;;) {
      if (postmasterPid === 0 && existsSync(join(dataDir, 'postmaster.pid'))) {
        postmasterPid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]) || 0;
      }
      if (postmasterPid > 0 && (await canConnect(url))) break;
      if (gone) throw new Error(`postgres exited before accepting connections:\n${output.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections on 127.0.0.1:${options.port} in time:\n${output.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url,
    port: options.port,
    pid: postmasterPid,
    async createDatabase(name: string): Promise<string> {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`createDatabase: ${JSON.stringify(name)} is not a plain lower-case identifier`);
      const client = new Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgresql://postgres@127.0.0.1:${options.port}/${name}`;
    },
    stop,
  };
}
