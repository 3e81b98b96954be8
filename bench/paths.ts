// The paths under test, each started fresh on free 127.0.0.1 ports:
//   baseline       phone -> Kamailio -> phone: the project's kamailio.cfg with initial INVITEs
//                  from phones routed to the callee (record-routed) instead of the engine
//   chain          phone -> Kamailio -> engine -> B2BUA (RTPEngine, call log) -> Kamailio -> phone,
//                  started by lib/stack's Stack exactly as `npm start` does
//   chain-nolog    the same with CALL_LOG=off
//   chain-nomedia  the same with MEDIA=off
// Phones are SIPp: callee UASes registered through Kamailio with digest auth, and callers that
// authenticate every INVITE (bench/sipp-load.ts).

import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { StackConfig } from '../lib/config/stack-config';
import { ExtensionStore, generatePassword } from '../lib/extensions';
import { startKamailio } from '../lib/stack/kamailio';
import type { NativeProcess } from '../lib/stack/native-process';
import { Stack } from '../lib/stack/stack';
import { cpuMicros, freePorts, reapedChildrenCpuMicros, rssKb, treeCpuMicros } from './proc';
import type { HopPorts } from './hop-latency';
import type { BenchSettings, PathName } from './settings';
import { registerPhones, SIP_PORT_HIGH, SIP_PORT_LOW, startUas, uasStat, type Phone, type Uas } from './sipp-load';

export const PHONE_IP = '127.0.0.1';
/** The engine's SIP address: Kamailio trusts it by source address, so it must differ from the phones'. */
export const ENGINE_IP = '127.0.0.2';
const DOMAIN = PHONE_IP;

/** The kamailio.cfg define that routes phone -> phone (the baseline): no engine, no B2BUA. */
export const DIRECT_CALLS_DEFINE = 'WITH_DIRECT_CALLS';

/** What went wrong in the processes' own logs, counted (Kamailio errors, B2BUA warnings and errors). */
export interface LogEvents {
  kamailioErrors: number;
  kamailioFirst: string;
  b2buaWarnings: number;
  b2buaFirst: string;
}

export interface RunningPath {
  readonly name: PathName;
  /** Kamailio as phones reach it, "127.0.0.1:port". */
  readonly target: string;
  readonly callers: readonly Phone[];
  readonly callees: readonly string[];
  readonly stack: Stack | undefined;
  /** The chain's ports for the per-hop breakdown (BENCH_HOPS); undefined on the baseline. */
  readonly hopPorts: HopPorts | undefined;
  /** CPU microseconds used so far, per process (Kamailio summed over its workers; sipp = every SIPp). */
  cpu(): Record<string, number>;
  /** Resident memory in KB of the processes under test. */
  rss(): Record<string, number>;
  pid(name: 'kamailio' | 'rtpengine' | 'engine' | 'b2bua'): number | undefined;
  /** Calls held: engine dialogs (two per bridged call) and B2BUA sessions; undefined on the baseline. */
  held(): Promise<{ engineDialogs: number; sessions: number } | undefined>;
  /** The callee UASes' calls so far (from their statistics, up to a second old): still open, completed, failed. */
  calleeCalls(): { open: number; successful: number; failed: number };
  /** Subscribes to the B2BUA's JSON log lines; returns the unsubscribe. */
  onB2buaLine(fn: (line: Record<string, unknown>) => void): () => void;
  events(): LogEvents;
  /** A process of the path that is no longer running, if any. */
  dead(): string | undefined;
  /** The open-file limit each RTPEngine runs with (its sockets bound how many calls it anchors). */
  rtpengineFileLimit(): number | undefined;
  /** RTPEngine processes running (0 without media). */
  rtpengineInstances(): number;
  /** File descriptors a process has open now (every RTPEngine summed). */
  openFiles(name: 'kamailio' | 'rtpengine' | 'engine' | 'b2bua'): number | undefined;
  stop(): Promise<void>;
}

function lineWatcher(): { events: LogEvents; kamailio: (l: string) => void; b2bua: (l: string) => void } {
  const events: LogEvents = { kamailioErrors: 0, kamailioFirst: '', b2buaWarnings: 0, b2buaFirst: '' };
  return {
    events,
    kamailio: (l) => {
      if (!/ERROR|CRITICAL|out of memory|no more shm/i.test(l)) return;
      events.kamailioErrors++;
      events.kamailioFirst ||= l.slice(0, 300);
    },
    b2bua: (l) => {
      if (!l.startsWith('{')) return;
      const level = /"level":(\d+)/.exec(l);
      if (!level || Number(level[1]) < 40) return;
      events.b2buaWarnings++;
      if (events.b2buaFirst) return;
      try {
        const j = JSON.parse(l) as { msg?: unknown; err?: unknown; command?: unknown };
        const err = typeof j.err === 'string' ? j.err : typeof j.err === 'object' && j.err !== null ? String((j.err as { message?: unknown }).message) : '';
        events.b2buaFirst = `"${String(j.msg)}"${typeof j.command === 'string' ? ` (${j.command})` : ''}${err ? `: ${err}` : ''}`.slice(0, 300);
      } catch {
        events.b2buaFirst = l.slice(0, 300);
      }
    },
  };
}

function provision(dbFile: string, callers: number, callees: number): { callers: Phone[]; callees: Phone[] } {
  const store = ExtensionStore.open(dbFile);
  try {
    const make = (ext: string): Phone => {
      const password = generatePassword(16);
      store.addExtension(ext, password, DOMAIN);
      return { ext, password };
    };
    return {
      callers: Array.from({ length: callers }, (_, i) => make(String(6000 + i))),
      callees: Array.from({ length: callees }, (_, i) => make(String(6100 + i))),
    };
  } finally {
    store.close();
  }
}

function fileLimit(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface StartPathOptions {
  readonly name: PathName;
  readonly settings: BenchSettings;
  readonly varDir: string;
  readonly logger: Logger;
  /** Caller extensions to provision (one per SIPp caller process needed at the highest rate). */
  readonly callers: number;
  /** Seconds the UASes may live (they are stopped with the path). */
  readonly limitSec: number;
  /** RTPEngine processes of a chain with media (default 1; the concurrency phase runs several). */
  readonly rtpengines?: number;
  /** Directory for V8 CPU profiles of the engine and the B2BUA (node --cpu-prof), if wanted. */
  readonly profileDir?: string;
}

/** Starts a path: its processes, its extensions, its callee UASes registered through Kamailio. */
export async function startPath(o: StartPathOptions): Promise<RunningPath> {
  const { settings } = o;
  const dir = join(o.varDir, o.name);
  mkdirSync(dir, { recursive: true });
  const dbFile = join(dir, 'kamailio.sqlite');
  const phones = provision(dbFile, o.callers, settings.callees);
  const watch = lineWatcher();
  const b2buaListeners = new Set<(line: Record<string, unknown>) => void>();
  const uases: Uas[] = [];
  const uasGone = new Set<number>();
  let stack: Stack | undefined;
  let kamailio: NativeProcess | undefined;
  const stopAll = async (): Promise<void> => {
    await Promise.all(uases.map((u) => u.process.stop()));
    await stack?.stop();
    await kamailio?.stop();
  };
  try {
    const rtpengines = o.name === 'baseline' || o.name === 'chain-nomedia' ? 1 : (o.rtpengines ?? 1);
    const [sipPort, engineSipPort, wirePort, statusPort, ngPort, operatorPort, ...extraNgPorts] = (await freePorts(5 + rtpengines, SIP_PORT_LOW, SIP_PORT_HIGH)) as [number, number, number, number, number, number, ...number[]];
    const readToken = randomBytes(16).toString('hex');
    let hopPorts: HopPorts | undefined;
    if (o.name === 'baseline') {
      // The project's kamailio.cfg with the options Stack gives it, plus WITH_DIRECT_CALLS: after
      // auth and record-route, an initial INVITE goes to the callee's registered Contact as a B leg
      // from the engine does, so Kamailio does exactly its chain work once.
      kamailio = await startKamailio({
        defines: [DIRECT_CALLS_DEFINE],
        sharedMemoryMb: settings.kamailioShmMb,
        listen: { address: PHONE_IP, port: sipPort },
        engine: { address: ENGINE_IP, port: engineSipPort },
        dbFile,
        domain: DOMAIN,
        runDir: join(dir, 'run', 'kamailio'),
        antiflood: false,
        logger: o.logger.child({ child: 'kamailio' }),
        logFile: join(dir, 'kamailio.log'),
      });
      kamailio.on('line', watch.kamailio);
    } else {
      const media = o.name === 'chain-nomedia' ? 'off' : 'rtpengine';
      // chain-drachtio: the same chain, on the drachtio server DRACHTIO_HOST/PORT/SECRET/SIP names.
      const external = o.name === 'chain-drachtio' ? settings.drachtio : undefined;
      if (o.name === 'chain-drachtio' && !external) throw new Error('chain-drachtio needs DRACHTIO_HOST, DRACHTIO_PORT, DRACHTIO_SECRET and DRACHTIO_SIP');
      hopPorts = {
        kamailio: sipPort,
        engineSip: external ? external.sip.port : engineSipPort,
        wire: external ? external.port : wirePort,
        ng: media === 'off' ? [] : [ngPort, ...extraNgPorts],
      };
      const config: StackConfig = {
        sip: { address: PHONE_IP, port: sipPort, advertised: undefined, domain: DOMAIN },
        engine: external
          ? { sipAddress: external.sip.address, sipPort: external.sip.port, wireAddress: external.host, wirePort: external.port, statusPort }
          : { sipAddress: ENGINE_IP, sipPort: engineSipPort, wireAddress: '127.0.0.1', wirePort, statusPort },
        rtpengine: { ngPort, ngPorts: [ngPort, ...extraNgPorts], portMin: settings.rtpPortMin, portMax: settings.rtpPortMax, mediaAddress: PHONE_IP, instances: rtpengines, logLevel: 5 },
        // The same Kamailio as the baseline's, but for the cfg's route to the engine.
        kamailio: { sharedMemoryMb: settings.kamailioShmMb },
        media,
        varDir: dir,
        // One source address offers all the load: pike would ban it (npm start has it on by default).
        antiflood: undefined,
      };
      // Node 20 refuses --cpu-prof in NODE_OPTIONS: a preloaded module profiles in-process instead.
      const profile = o.profileDir ? `--require ${join(__dirname, 'cpu-profile-preload.js')}` : undefined;
      // The engine inherits this process's environment (lib/stack/stack.ts); set only while it starts.
      const savedNodeOptions = process.env.NODE_OPTIONS;
      if (profile) {
        process.env.NODE_OPTIONS = `${savedNodeOptions ?? ''} ${profile}`.trim();
        process.env.BENCH_CPU_PROFILE_DIR = o.profileDir;
      }
      try {
        stack = await Stack.start({
          config,
          secret: external?.secret ?? randomBytes(12).toString('hex'),
          externalEngine: external !== undefined,
          logger: o.logger,
          supervise: false,
          b2buaEnv: {
            LOG_LEVEL: 'info',
            B2BUA_INSTANCE: `bench-${o.name}`,
            OPERATOR_PORT: String(operatorPort),
            OPERATOR_TOKENS: readToken,
            SHUTDOWN_TIMEOUT: '5',
            CALL_LOG: o.name === 'chain-nolog' ? 'off' : 'on',
            // The load comes from a few caller extensions and goes to a few callees.
            MAX_CALLS_PER_EXTENSION: '1000000',
            MAX_CALLS: String(Math.max(12_000, Math.ceil(settings.concurrencyMax * 1.2))),
            ...settings.b2buaEnv,
            ...(profile && o.profileDir ? { NODE_OPTIONS: profile, BENCH_CPU_PROFILE_DIR: o.profileDir } : {}),
          },
        });
      } finally {
        if (savedNodeOptions === undefined) delete process.env.NODE_OPTIONS;
        else process.env.NODE_OPTIONS = savedNodeOptions;
        delete process.env.BENCH_CPU_PROFILE_DIR;
      }
      kamailio = undefined;
      stack.process('kamailio')?.on('line', watch.kamailio);
      stack.process('b2bua')?.on('line', (l) => {
        watch.b2bua(l);
        if (b2buaListeners.size === 0 || !l.startsWith('{')) return;
        try {
          const parsed = JSON.parse(l) as Record<string, unknown>;
          for (const fn of b2buaListeners) fn(parsed);
        } catch {
          // not JSON
        }
      });
    }
    const target = `${PHONE_IP}:${sipPort}`;
    for (let i = 0; i < settings.uasCount; i++) {
      const uas = await startUas(join(dir, `uas-${i}`), o.limitSec);
      uases.push(uas);
      void uas.process.done.then(() => uasGone.add(uas.port));
    }
    await registerPhones(target, DOMAIN, phones.callees, (i) => (uases[i % uases.length] as Uas).port, dir);

    const pidOf = (name: 'kamailio' | 'rtpengine' | 'engine' | 'b2bua'): number | undefined =>
      name === 'kamailio' && kamailio ? kamailio.pid : stack?.process(name)?.pid;
    const names = ['kamailio', 'rtpengine', 'engine', 'b2bua'] as const;
    const rtpenginePids = (): number[] => (stack ? stack.rtpengines().map((p) => p.pid) : []);
    const sippRoots = uases.map((u) => u.process.pid);
    return {
      name: o.name,
      target,
      callers: phones.callers,
      callees: phones.callees.map((p) => p.ext),
      stack,
      hopPorts,
      pid: pidOf,
      cpu() {
        const out: Record<string, number> = {};
        for (const n of names) {
          const pid = pidOf(n);
          if (pid === undefined) continue;
          try {
            out[n] = n === 'kamailio' ? treeCpuMicros(pid) : n === 'rtpengine' ? rtpenginePids().reduce((a, p) => a + cpuMicros(p), 0) : cpuMicros(pid);
          } catch {
            // it ended; dead() says so
          }
        }
        out.sipp = reapedChildrenCpuMicros() + sippRoots.reduce((a, pid) => a + treeCpuMicros(pid), 0);
        out.bench = cpuMicros(process.pid);
        return out;
      },
      rss() {
        const out: Record<string, number> = {};
        for (const n of names) {
          const pid = pidOf(n);
          if (pid === undefined) continue;
          try {
            out[n] = n === 'rtpengine' ? rtpenginePids().reduce((a, p) => a + rssKb(p), 0) : rssKb(pid);
          } catch {
            // ended
          }
        }
        return out;
      },
      async held() {
        if (!stack) return undefined;
        const [engine, b2bua] = await Promise.all([
          // An external drachtio server's dialogs are not known here.
          o.name === 'chain-drachtio' ? Promise.resolve({ dialogs: undefined }) : fetch(`http://127.0.0.1:${statusPort}/status`).then((r) => r.json() as Promise<{ dialogs?: number }>),
          fetch(`http://127.0.0.1:${operatorPort}/api/status`, { headers: { authorization: `Bearer ${readToken}` } }).then((r) => r.json() as Promise<{ sessions?: number }>),
        ]);
        return { engineDialogs: Number(engine.dialogs ?? NaN), sessions: Number(b2bua.sessions ?? NaN) };
      },
      calleeCalls() {
        const out = { open: 0, successful: 0, failed: 0 };
        for (const u of uases) {
          const row = uasStat(u);
          if (!row) continue;
          out.open += Number.isFinite(row.currentCalls) ? row.currentCalls : 0;
          out.successful += Number.isFinite(row.successful) ? row.successful : 0;
          out.failed += Number.isFinite(row.failed) ? row.failed : 0;
        }
        return out;
      },
      onB2buaLine(fn) {
        b2buaListeners.add(fn);
        return () => b2buaListeners.delete(fn);
      },
      events: () => ({ ...watch.events }),
      dead() {
        if (uasGone.size > 0) return 'a SIPp UAS';
        if (kamailio && !kamailio.running) return 'kamailio';
        if (stack) for (const n of names) if (stack.process(n) && !stack.process(n)?.running) return n;
        return undefined;
      },
      rtpengineFileLimit: () => fileLimit(stack?.process('rtpengine')?.pid),
      rtpengineInstances: () => (stack ? stack.rtpengines().length : 0),
      openFiles(name) {
        const pid = pidOf(name);
        if (pid === undefined) return undefined;
        try {
          return (name === 'rtpengine' ? rtpenginePids() : [pid]).reduce((a, p) => a + readdirSync(`/proc/${p}/fd`).length, 0);
        } catch {
          return undefined;
        }
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
