// Starting the real Kamailio (lib/stack/kamailio.ts with kamailio/kamailio.cfg) for tests: on
// 127.0.0.1 and a free port, with its SQLite file and run directory in a temporary directory,
// trusting 127.0.0.2 as the engine (a SIPp bound there plays it, on a port reserved here).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ExtensionStore } from '../../lib/extensions';
import { startKamailio, type KamailioOptions } from '../../lib/stack/kamailio';
import type { NativeProcess, ProcessExit } from '../../lib/stack/native-process';
import { freePorts, releasePorts } from './ports';
import type { SipTransport } from './sipp';

/** Kamailio listens here; phones (SIPp) run here too. */
export const KAMAILIO_ADDRESS = '127.0.0.1';
/** The address Kamailio trusts as the engine. */
export const ENGINE_ADDRESS = '127.0.0.2';
/** The SIP domain and digest realm of the tests. */
export const TEST_DOMAIN = '127.0.0.1';

export interface TestKamailioOptions {
  /** How Kamailio reaches the engine (ENGINE_URI transport), default udp. */
  engineTransport?: SipTransport;
  /** Flood protection, default off. */
  antiflood?: { density: number } | false;
}

export interface TestKamailio {
  /** Kamailio's SIP port (UDP and TCP). */
  readonly port: number;
  /** "127.0.0.1:port", the remote for SIPp. */
  readonly remote: string;
  /** The port reserved for the fake engine on ENGINE_ADDRESS (ENGINE_URI points there). */
  readonly enginePort: number;
  readonly dbFile: string;
  readonly options: KamailioOptions;
  /** The running process (changes on restart). */
  process(): NativeProcess;
  /** Kamailio's last output lines, for assertion messages. */
  outputTail(lines?: number): string;
  /** Adds an extension to the SQLite file Kamailio reads. */
  addExtension(extension: string, password: string): void;
  /** Runs `fn` with the extension store open. */
  withStore<T>(fn: (store: ExtensionStore) => T): T;
  /** Stops Kamailio (SIGTERM by PID) and starts it again on the same ports and files. */
  restart(): Promise<{ before: ProcessExit; oldPid: number; newPid: number }>;
  /** Stops Kamailio, removes the temporary directory and gives the ports back. Idempotent. */
  close(): Promise<ProcessExit | undefined>;
}

/** Starts Kamailio for a test file; `close()` it in a teardown. */
export async function startTestKamailio(options: TestKamailioOptions = {}): Promise<TestKamailio> {
  const dir = await mkdtemp(join(tmpdir(), 'kamailio-test-'));
  const ports = await freePorts(2);
  const [port, enginePort] = ports as [number, number];
  const logger = pino({ level: 'silent' });
  const kamailioOptions: KamailioOptions = {
    listen: { address: KAMAILIO_ADDRESS, port },
    engine: { address: ENGINE_ADDRESS, port: enginePort, transport: options.engineTransport ?? 'udp' },
    dbFile: join(dir, 'var', 'kamailio.sqlite'),
    domain: TEST_DOMAIN,
    runDir: join(dir, 'run'),
    sharedMemoryMb: 64,
    children: 2,
    antiflood: options.antiflood ?? false,
    logger,
  };
  let proc: NativeProcess;
  try {
    proc = await startKamailio(kamailioOptions);
  } catch (err) {
    releasePorts(ports);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let closed: Promise<ProcessExit | undefined> | undefined;

  const withStore = <T>(fn: (store: ExtensionStore) => T): T => {
    const store = ExtensionStore.open(kamailioOptions.dbFile, { mustExist: true });
    try {
      return fn(store);
    } finally {
      store.close();
    }
  };

  return {
    port,
    remote: `${KAMAILIO_ADDRESS}:${port}`,
    enginePort,
    dbFile: kamailioOptions.dbFile,
    options: kamailioOptions,
    process: () => proc,
    outputTail(lines = 40) {
      return proc.output().slice(-lines).join('\n');
    },
    addExtension(extension, password) {
      withStore((store) => store.addExtension(extension, password, TEST_DOMAIN));
    },
    withStore,
    async restart() {
      const oldPid = proc.pid;
      const before = await proc.stop();
      proc = await startKamailio(kamailioOptions);
      return { before, oldPid, newPid: proc.pid };
    },
    close() {
      closed ??= (async () => {
        const exit = await proc.stop();
        releasePorts(ports);
        await rm(dir, { recursive: true, force: true });
        return exit;
      })();
      return closed;
    },
  };
}
