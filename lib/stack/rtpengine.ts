// Starting RTPEngine (Debian's rtpengine-daemon) as a supervised child process: userspace
// forwarding only, in the foreground, no config file, logging to stderr. Ready when its NG control
// port answers a ping.

import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { NativeProcess } from './native-process';

export interface RtpEngineOptions {
  /** The process name in logs and errors (default "rtpengine"; "rtpengine-2" for a second instance). */
  name?: string;
  /** The executable (default "rtpengine" from PATH). */
  binary?: string;
  /** Where media is relayed; `advertise` is written into SDP instead of `address` (NAT). */
  interface: { address: string; advertise?: string };
  /** The NG control socket (UDP). */
  ng: { address: string; port: number };
  /** Media port range (RTP on even ports, RTCP on the next odd one). */
  portMin: number;
  portMax: number;
  /** RTPEngine writes it; it does not remove it, so this module does once the process has exited. */
  pidFile: string;
  logger: Logger;
  /** Syslog level 0-7 for --log-level (RTPEngine's default 6 logs every call). */
  logLevel?: number;
  /** Append RTPEngine's output lines to this file too (e.g. var/log/rtpengine.log). */
  logFile?: string;
  /** How long start-up may take (default 15 s). */
  readyTimeoutMs?: number;
}

/** The command line for `opts` (without the binary). */
export function rtpEngineArgs(opts: RtpEngineOptions): string[] {
  const iface = opts.interface.advertise ? `${opts.interface.address}!${opts.interface.advertise}` : opts.interface.address;
  const args = [
    '--config-file=none',
    '--table=-1',
    '--foreground',
    '--log-stderr',
    `--interface=${iface}`,
    `--listen-ng=${opts.ng.address}:${opts.ng.port}`,
    `--port-min=${opts.portMin}`,
    `--port-max=${opts.portMax}`,
    `--pidfile=${opts.pidFile}`,
  ];
  if (opts.logLevel !== undefined) args.push(`--log-level=${opts.logLevel}`);
  return args;
}

function validate(opts: RtpEngineOptions): void {
  const port = (name: string, value: number): void => {
    if (!Number.isInteger(value) || value < 1 || value > 65535) throw new RangeError(`startRtpEngine: ${name} must be a port number 1-65535, got ${value}`);
  };
  if (!opts.interface.address) throw new RangeError('startRtpEngine: interface.address is required');
  if (!opts.ng.address) throw new RangeError('startRtpEngine: ng.address is required');
  port('ng.port', opts.ng.port);
  port('portMin', opts.portMin);
  port('portMax', opts.portMax);
  if (opts.portMin > opts.portMax) throw new RangeError(`startRtpEngine: portMin (${opts.portMin}) is above portMax (${opts.portMax})`);
  if (!opts.pidFile) throw new RangeError('startRtpEngine: pidFile is required');
  if (opts.logLevel !== undefined && (!Number.isInteger(opts.logLevel) || opts.logLevel < 0 || opts.logLevel > 7)) {
    throw new RangeError(`startRtpEngine: logLevel must be 0-7, got ${opts.logLevel}`);
  }
}

/**
 * Starts RTPEngine and resolves once its NG port answers a ping. Stop it with `stop()` on the
 * returned process (SIGTERM, by PID); its pid file is removed when it has exited, however it ends.
 */
export async function startRtpEngine(opts: RtpEngineOptions): Promise<NativeProcess> {
  validate(opts);
  await mkdir(dirname(opts.pidFile), { recursive: true });
  const removePidFile = (): Promise<void> => rm(opts.pidFile, { force: true }).catch(() => undefined);
  let proc: NativeProcess;
  try {
    proc = await NativeProcess.start({
      name: opts.name ?? 'rtpengine',
      command: opts.binary ?? 'rtpengine',
      args: rtpEngineArgs(opts),
      logger: opts.logger,
      logFile: opts.logFile,
      readyTimeoutMs: opts.readyTimeoutMs,
      ready: async (p) => {
        while (p.running) {
          if ((await ngPing(opts.ng.address, opts.ng.port, 250)) && p.running) return;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      },
    });
  } catch (err) {
    await removePidFile();
    throw err;
  }
  void proc.exited.then(removePidFile);
  opts.logger.info({ proc: opts.name ?? 'rtpengine', pid: proc.pid, ng: `${opts.ng.address}:${opts.ng.port}`, media: opts.interface.address }, 'rtpengine ready');
  return proc;
}

/**
 * One NG ping over UDP: true when `{result: "pong"}` comes back with our cookie within timeoutMs.
 * Never rejects.
 */
export function ngPing(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const cookie = randomBytes(8).toString('hex');
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('error', () => finish(false));
    socket.on('message', (msg) => {
      const text = msg.toString('latin1');
      // "<cookie> d6:result4:ponge"
      if (text.startsWith(`${cookie} `) && text.slice(cookie.length + 1).includes('6:result4:pong')) finish(true);
    });
    socket.send(`${cookie} d7:command4:pinge`, port, host, (err) => {
      if (err) finish(false);
    });
  });
}
