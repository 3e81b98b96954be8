import type { TransportName } from '../engine/transport/transport';
import type { SipListen } from '../engine/engine-options';

/** The engine's command line: drachtio-server's options, plus a few of its config-file settings. */
export interface EngineArgs {
  sip: SipListen[];
  address: string;
  port: number;
  secret: string;
  loglevel: 'error' | 'warn' | 'info' | 'debug';
  status: { host: string; port: number } | undefined;
  capture: boolean;
  captureMaxCalls: number;
  t1: number;
  t2: number;
  t4: number;
  maxMessageSize: number;
  tcpStallSeconds: number;
  help: boolean;
  version: boolean;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'ECONFIG';
}

export const ENGINE_USAGE = `Usage: npm run engine -- [options]   (or: node dist/app/engine.js [options])

A drachtio server in TypeScript: SIP over UDP and TCP, the drachtio wire protocol for applications.

  -c, --contact <uri>        SIP address to listen on, repeatable, e.g.
                             "sip:127.0.0.1:5060;transport=udp,tcp" (default transports: udp,tcp)
  -x, --external-ip <ip>     address advertised in Via/Contact/Record-Route for the preceding --contact
      --address <ip>         address applications connect to (default 127.0.0.1)
  -p, --port <n>             port applications connect to (default 9022)
      --secret <s>           shared secret applications authenticate with (env DRACHTIO_SECRET;
                             required)
  -l, --loglevel <level>     notice|error|warning|info|debug (default info)
      --prometheus-scrape-port [host:]port
                             HTTP /metrics, /status and /capture/<Call-ID> (host default 127.0.0.1)
      --capture              keep each call's SIP messages in memory for /capture/<Call-ID>
      --capture-max-calls <n>  calls kept in the capture (default 1000)
      --sip-t1 <ms>          RFC 3261 T1 (default 500); --sip-t2 <ms> (4000); --sip-t4 <ms> (5000)
      --max-message-size <n> bytes; larger requests get 513 (default 65535)
      --tcp-stall-timeout <s>  cut off a TCP peer holding a partial message this long (default 10)
  -v, --version              print the version
  -h, --help                 this text

Options of drachtio-server that this engine does not implement (TLS, WebSockets, HEP, HTTP
routing, Redis blacklists) stop start-up with a message naming them.`;

const UNSUPPORTED = new Set([
  '--tls-port', '--key-file', '--cert-file', '--chain-file', '--dh-param', '--min-tls-version', '--tls-cipherlist',
  '--homer', '--homer-id', '--http-handler', '--http-method', '--dns-name', '--local-net', '-n', '--mtu',
  '--blacklist-redis-address', '--blacklist-redis-port', '--blacklist-redis-key', '--blacklist-redis-sentinels',
  '--blacklist-redis-master', '--blacklist-redis-password', '--blacklist-refresh-secs', '-f', '--file', '-u', '--user',
]);
/** accepted for script compatibility, with no effect here */
const IGNORED_FLAGS = new Set(['--stdout', '--noconfig', '--daemon', '--memory-debug', '--globally-readable-logs']);

function int(name: string, v: string | undefined, min: number, max: number): number {
  if (v === undefined || !/^\d+$/.test(v)) throw new ConfigError(`${name} needs a whole number, got ${JSON.stringify(v ?? '')}`);
  const n = Number(v);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** `sip:HOST[:PORT][;transport=udp,tcp]` */
export function parseContact(uri: string): SipListen {
  const m = /^sips?:(\[[^\]]+\]|[^:;]+)(?::(\d+))?((?:;[^;]*)*)$/i.exec(uri.trim());
  if (!m) throw new ConfigError(`--contact ${JSON.stringify(uri)} is not a SIP URI like sip:127.0.0.1:5060;transport=udp,tcp`);
  const host = m[1] === '*' ? '0.0.0.0' : m[1]!.replace(/^\[|\]$/g, '');
  const port = m[2] !== undefined ? int('--contact port', m[2], 1, 65535) : 5060;
  let transports: TransportName[] = ['udp', 'tcp'];
  const tp = /;transport=([^;]+)/i.exec(m[3] ?? '');
  if (tp) {
    const list = tp[1]!.toLowerCase().split(',').map((s) => s.trim());
    for (const t of list) {
      if (t !== 'udp' && t !== 'tcp') throw new ConfigError(`--contact transport ${JSON.stringify(t)} is not supported (udp, tcp)`);
    }
    transports = list as TransportName[];
  }
  return { host, port, transports };
}

export function parseEngineArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): EngineArgs {
  const a: EngineArgs = {
    sip: [],
    address: env['DRACHTIO_ADMIN_ADDRESS'] ?? '127.0.0.1',
    port: env['DRACHTIO_ADMIN_TCP_PORT'] !== undefined ? int('DRACHTIO_ADMIN_TCP_PORT', env['DRACHTIO_ADMIN_TCP_PORT'], 1, 65535) : 9022,
    secret: env['DRACHTIO_SECRET'] ?? '',
    loglevel: 'info',
    status: undefined,
    capture: false,
    captureMaxCalls: 1000,
    t1: 500,
    t2: 4000,
    t4: 5000,
    maxMessageSize: 65535,
    tcpStallSeconds: 10,
    help: false,
    version: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const opt = eq > 0 ? raw.slice(0, eq) : raw;
    const inline = eq > 0 ? raw.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new ConfigError(`${opt} needs a value`);
      return v;
    };
    switch (opt) {
      case '-c':
      case '--contact':
        a.sip.push(parseContact(value()));
        break;
      case '-x':
      case '--external-ip': {
        const last = a.sip.pop();
        if (!last) throw new ConfigError('--external-ip must follow the --contact it applies to');
        a.sip.push({ ...last, externalIp: value() });
        break;
      }
      case '--address':
        a.address = value();
        break;
      case '-p':
      case '--port':
        a.port = int('--port', value(), 1, 65535);
        break;
      case '--secret':
        a.secret = value();
        break;
      case '-l':
      case '--loglevel': {
        const v = value().toLowerCase();
        const map: Record<string, EngineArgs['loglevel']> = { notice: 'info', info: 'info', error: 'error', warning: 'warn', warn: 'warn', debug: 'debug' };
        const lv = map[v];
        if (!lv) throw new ConfigError(`--loglevel ${JSON.stringify(v)} is not one of notice, error, warning, info, debug`);
        a.loglevel = lv;
        break;
      }
      case '--prometheus-scrape-port': {
        const v = value();
        const colon = v.lastIndexOf(':');
        a.status = colon < 0 ? { host: '127.0.0.1', port: int('--prometheus-scrape-port', v, 1, 65535) } : { host: v.slice(0, colon), port: int('--prometheus-scrape-port', v.slice(colon + 1), 1, 65535) };
        break;
      }
      case '--capture':
        a.capture = true;
        break;
      case '--capture-max-calls':
        a.captureMaxCalls = int('--capture-max-calls', value(), 1, 1_000_000);
        break;
      case '--sip-t1':
        a.t1 = int('--sip-t1', value(), 10, 60000);
        break;
      case '--sip-t2':
        a.t2 = int('--sip-t2', value(), 10, 600000);
        break;
      case '--sip-t4':
        a.t4 = int('--sip-t4', value(), 0, 600000);
        break;
      case '--max-message-size':
        a.maxMessageSize = int('--max-message-size', value(), 1024, 1_048_576);
        break;
      case '--tcp-stall-timeout':
        a.tcpStallSeconds = int('--tcp-stall-timeout', value(), 1, 3600);
        break;
      case '-h':
      case '--help':
        a.help = true;
        break;
      case '-v':
      case '--version':
        a.version = true;
        break;
      default:
        if (IGNORED_FLAGS.has(opt)) break;
        if (UNSUPPORTED.has(opt)) throw new ConfigError(`${opt} is a drachtio-server option this engine does not implement`);
        throw new ConfigError(`unknown option ${JSON.stringify(raw)} (see --help)`);
    }
  }
  if (a.help || a.version) return a;
  if (a.sip.length === 0) a.sip.push({ host: '127.0.0.1', port: 5060, transports: ['udp', 'tcp'] });
  if (a.secret === '') throw new ConfigError('--secret (or DRACHTIO_SECRET) is required: applications authenticate with it');
  if (a.t2 < a.t1) throw new ConfigError(`--sip-t2 (${a.t2}) must not be below --sip-t1 (${a.t1})`);
  return a;
}
