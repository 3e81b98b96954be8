// Starting Kamailio (Debian's kamailio 5.6 package) with kamailio/kamailio.cfg as a supervised
// child process: in the foreground (-DD, so the PID we hold is the main process), logging to
// stderr (-E), with its own runtime directory (-Y), configured only by -l and -A defines.
// Ready when its UDP and TCP SIP sockets are bound.
//
// The defines are the contract kamailio.cfg documents: DBURL, ENGINE_IP, ENGINE_URI, SIP_DOMAIN,
// WITH_ANTIFLOOD, PIKE_DENSITY, and the optional CHILDREN and DEBUG_LEVEL.

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { ensureExtensionSchema } from '../extensions/store';
import { isListening, NativeProcess, NativeProcessError, waitForSockets } from './native-process';

export interface KamailioOptions {
  /** The executable (default "kamailio" from PATH). */
  binary?: string;
  /** Default: kamailio/kamailio.cfg of this repository. */
  configFile?: string;
  /** Where phones reach Kamailio, UDP and TCP on one port; `advertise` ("host" or "host:port") goes into Via and Record-Route instead. */
  listen: { address: string; port: number; advertise?: string };
  /** The SIP engine: initial INVITEs from phones go there, and only its address is trusted. */
  engine: { address: string; port: number; transport?: 'udp' | 'tcp' };
  /** The SQLite file of subscribers and registrations; created with its schema when missing. */
  dbFile: string;
  /** SIP domain and digest realm. */
  domain: string;
  /** Runtime directory (-Y): pid file, ctl socket. Created when missing. */
  runDir: string;
  /** Shared memory in MB (-m, default 256). */
  sharedMemoryMb?: number;
  /** Private memory per process in MB (-M, default 8). */
  privateMemoryMb?: number;
  /** Worker processes per UDP socket and TCP workers (default: the config's, 4). */
  children?: number;
  /** Flood protection: pike with `density` requests per 2 s per source address, or off (default). */
  antiflood?: { density: number } | false;
  logger: Logger;
  /** Kamailio's debug level, -1 (alert) to 3 (debug); default 2 (info). */
  debugLevel?: number;
  /**
   * Extra boolean defines (-A NAME) the config tests with #!ifdef, e.g. ["WITH_DIRECT_CALLS"] for
   * the benchmark baseline. Names only: valued defines have their own options above.
   */
  defines?: readonly string[];
  /** Append Kamailio's output to this file as well. */
  logFile?: string;
  /** How long start-up may take (default 15 s). */
  readyTimeoutMs?: number;
}

/** Options that cannot make a working Kamailio command line. */
export class KamailioOptionsError extends Error {
  override readonly name = 'KamailioOptionsError';
  readonly code = 'E_KAMAILIO_OPTIONS';
}

/** kamailio/kamailio.cfg, found from here upwards (this file runs from lib/stack or dist/lib/stack). */
export function defaultKamailioConfig(start: string = __dirname): string {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    const candidate = join(dir, 'kamailio', 'kamailio.cfg');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) throw new KamailioOptionsError(`kamailio/kamailio.cfg not found above ${start}`);
  }
}

/** An address as it goes in a URI or a -l socket: IPv6 in brackets. */
function hostPart(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

/** A -A string define: the value in double quotes, which it therefore must not contain. */
function stringDefine(name: string, value: string): string {
  if (/["\\\r\n]/.test(value)) throw new KamailioOptionsError(`${name} must not contain quotes, backslashes or line breaks: ${JSON.stringify(value)}`);
  return `${name}="${value}"`;
}

function checkPort(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new KamailioOptionsError(`${name} must be a port number 1-65535, got ${value}`);
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new KamailioOptionsError(`${name} must be an integer ${min}-${max}, got ${value}`);
}

function checkHost(name: string, value: string): void {
  if (!/^\[?[A-Za-z0-9.:-]+\]?$/.test(value)) throw new KamailioOptionsError(`${name} must be a host name or an IP address, got ${JSON.stringify(value)}`);
}

/** The command line for `opts` (without the binary). Throws KamailioOptionsError on a bad option. */
export function kamailioArgs(opts: KamailioOptions): string[] {
  checkHost('listen.address', opts.listen.address);
  checkPort('listen.port', opts.listen.port);
  checkHost('engine.address', opts.engine.address);
  checkPort('engine.port', opts.engine.port);
  if (opts.listen.advertise !== undefined) {
    if (!/^\[?[A-Za-z0-9.:-]+\]?(:[0-9]{1,5})?$/.test(opts.listen.advertise)) {
      throw new KamailioOptionsError(`listen.advertise must be host or host:port, got ${JSON.stringify(opts.listen.advertise)}`);
    }
  }
  if (!opts.domain) throw new KamailioOptionsError('domain is required');
  if (!opts.runDir) throw new KamailioOptionsError('runDir is required');
  const shm = opts.sharedMemoryMb ?? 256;
  const pkg = opts.privateMemoryMb ?? 8;
  checkInteger('sharedMemoryMb', shm, 16, 65536);
  checkInteger('privateMemoryMb', pkg, 2, 1024);

  const runDir = resolve(opts.runDir);
  const advertise = opts.listen.advertise ? `/${opts.listen.advertise}` : '';
  const socket = `${hostPart(opts.listen.address)}:${opts.listen.port}${advertise}`;
  const transport = opts.engine.transport ?? 'udp';
  const engineUri = `sip:${hostPart(opts.engine.address)}:${opts.engine.port}${transport === 'tcp' ? ';transport=tcp' : ''}`;
  const args = [
    '-f', resolve(opts.configFile ?? defaultKamailioConfig()),
    '-DD', '-E',
    '-Y', runDir,
    '-P', join(runDir, 'kamailio.pid'),
    '-m', String(shm),
    '-M', String(pkg),
    '-l', `udp:${socket}`,
    '-l', `tcp:${socket}`,
    // db_sqlite takes what follows "sqlite://" as the path: an absolute one makes three slashes.
    '-A', stringDefine('DBURL', `sqlite://${resolve(opts.dbFile)}`),
    '-A', stringDefine('ENGINE_IP', opts.engine.address.replace(/^\[|\]$/g, '')),
    '-A', stringDefine('ENGINE_URI', engineUri),
    '-A', stringDefine('SIP_DOMAIN', opts.domain),
  ];
  if (opts.antiflood) {
    checkInteger('antiflood.density', opts.antiflood.density, 1, 1_000_000);
    args.push('-A', 'WITH_ANTIFLOOD', '-A', `PIKE_DENSITY=${opts.antiflood.density}`);
  }
  if (opts.children !== undefined) {
    checkInteger('children', opts.children, 1, 256);
    args.push('-A', `CHILDREN=${opts.children}`);
  }
  if (opts.debugLevel !== undefined) {
    checkInteger('debugLevel', opts.debugLevel, -5, 5);
    args.push('-A', `DEBUG_LEVEL=${opts.debugLevel}`);
  }
  for (const name of opts.defines ?? []) {
    if (!/^[A-Z][A-Z0-9_]{0,63}$/.test(name)) throw new KamailioOptionsError(`defines: "${name}" is not a define name (A-Z, 0-9, _)`);
    args.push('-A', name);
  }
  return args;
}

/**
 * Makes sure the SQLite schema exists (lib/extensions), starts Kamailio and resolves once its UDP
 * and TCP sockets are bound. Stop it with `stop()` on the returned process (SIGTERM by PID: the
 * main process stops its workers and removes its pid file and ctl socket).
 */
export async function startKamailio(opts: KamailioOptions): Promise<NativeProcess> {
  const args = kamailioArgs(opts);
  ensureExtensionSchema(resolve(opts.dbFile));
  await mkdir(resolve(opts.runDir), { recursive: true });
  const host = opts.listen.address.replace(/^\[|\]$/g, '');
  // Readiness is "the sockets are bound": a socket someone else already holds would fake it.
  for (const protocol of ['udp', 'tcp'] as const) {
    if (isListening(opts.listen.port, protocol, host)) {
      throw new NativeProcessError('kamailio', `${protocol}/${hostPart(host)}:${opts.listen.port} is already in use`, []);
    }
  }
  const proc = await NativeProcess.start({
    name: 'kamailio',
    command: opts.binary ?? 'kamailio',
    args,
    logger: opts.logger,
    logFile: opts.logFile,
    readyTimeoutMs: opts.readyTimeoutMs,
    ready: (p) =>
      waitForSockets(
        [
          { port: opts.listen.port, protocol: 'udp', host },
          { port: opts.listen.port, protocol: 'tcp', host },
        ],
        opts.readyTimeoutMs ?? 15_000,
      ).then(() => {
        if (!p.running) throw new Error('exited while binding its sockets');
      }),
  });
  opts.logger.info(
    {
      proc: 'kamailio',
      pid: proc.pid,
      sip: `udp+tcp/${hostPart(host)}:${opts.listen.port}${opts.listen.advertise ? ` (advertised ${opts.listen.advertise})` : ''}`,
      engine: `${opts.engine.transport ?? 'udp'}/${hostPart(opts.engine.address)}:${opts.engine.port}`,
      antiflood: opts.antiflood ? opts.antiflood.density : 'off',
    },
    'kamailio ready',
  );
  return proc;
}
