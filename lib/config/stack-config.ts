import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './engine-args';
import { EnvReader, type Env } from './env';

/** What `npm start` runs, where (see .env.example, second part). */
export interface StackConfig {
  /** Kamailio, where phones register and call (UDP and TCP on one port). */
  readonly sip: { readonly address: string; readonly port: number; readonly advertised: string | undefined; readonly domain: string };
  /** The engine's SIP side (Kamailio trusts this address) and its wire side (the B2BUA connects here). */
  readonly engine: { readonly sipAddress: string; readonly sipPort: number; readonly wireAddress: string; readonly wirePort: number; readonly statusPort: number };
  /**
   * RTPEngine: `instances` processes (default 1), NG ports ngPort, ngPort+1, ..., each with an equal
   * share of portMin-portMax. One RTPEngine holds about 4,900 calls (4 sockets per call under a
   * 20,000 open-file limit); more instances hold more, and the B2BUA spreads calls over them.
   */
  readonly rtpengine: {
    readonly ngPort: number;
    readonly portMin: number;
    readonly portMax: number;
    readonly mediaAddress: string;
    readonly instances?: number;
    /** NG port of each instance, when they are not ngPort, ngPort+1, ... (tests and the bench pick free ones). */
    readonly ngPorts?: readonly number[];
    /** Syslog level 0-7 (default 5, notice: nothing per call; 6 logs ~25 lines per call). */
    readonly logLevel?: number;
  };
  /** Kamailio's memory, workers and log level (the cfg's defaults when unset). */
  readonly kamailio?: {
    readonly sharedMemoryMb?: number;
    readonly children?: number;
    readonly debugLevel?: number;
  };
  readonly media: 'rtpengine' | 'off';
  readonly varDir: string;
  /** Kamailio pike density (requests per source per 2 s) when antiflood is on; undefined when off. */
  readonly antiflood: { readonly density: number } | undefined;
}

export function loadStackConfig(env: Env, cwd: string): StackConfig {
  const r = new EnvReader(env);
  const sipAddress = r.host('SIP_ADDRESS', '127.0.0.1');
  const advertised = r.optionalHost('SIP_ADVERTISED_ADDRESS');
  const engineSipAddress = r.host('ENGINE_SIP_ADDRESS', '127.0.0.2');
  if (engineSipAddress === sipAddress) {
    throw new ConfigError('ENGINE_SIP_ADDRESS must differ from SIP_ADDRESS: Kamailio trusts X-Call-ID/X-From-App by source address');
  }
  const portMin = r.port('RTPENGINE_PORT_MIN', 30000);
  const portMax = r.port('RTPENGINE_PORT_MAX', 40000);
  if (portMax - portMin < 16) throw new ConfigError(`RTPENGINE_PORT_MAX must be at least RTPENGINE_PORT_MIN + 16, got ${portMin}-${portMax}`);
  const instances = r.integer('RTPENGINE_INSTANCES', 1, 1, 16);
  if (Math.floor((portMax - portMin + 1) / instances) < 16) {
    throw new ConfigError(`RTPENGINE_INSTANCES=${instances} leaves fewer than 16 ports each in RTPENGINE_PORT_MIN-RTPENGINE_PORT_MAX (${portMin}-${portMax})`);
  }
  const varDir = r.string('VAR_DIR', 'var');
  const kamailioChildren = r.raw('KAMAILIO_CHILDREN') === undefined ? undefined : r.integer('KAMAILIO_CHILDREN', 4, 1, 256);
  const kamailioDebug = r.raw('KAMAILIO_DEBUG_LEVEL') === undefined ? undefined : r.integer('KAMAILIO_DEBUG_LEVEL', 2, -5, 3);
  return {
    sip: { address: sipAddress, port: r.port('SIP_PORT', 5060), advertised, domain: r.string('SIP_DOMAIN', advertised ?? sipAddress) },
    engine: {
      sipAddress: engineSipAddress,
      sipPort: r.port('ENGINE_SIP_PORT', 5080),
      wireAddress: r.host('DRACHTIO_HOST', '127.0.0.1'),
      wirePort: r.port('DRACHTIO_PORT', 9022),
      statusPort: r.port('ENGINE_STATUS_PORT', 9023),
    },
    rtpengine: {
      ngPort: r.port('RTPENGINE_NG_PORT', 22222),
      portMin,
      portMax,
      mediaAddress: r.host('RTPENGINE_MEDIA_ADDRESS', sipAddress),
      instances,
      logLevel: r.integer('RTPENGINE_LOG_LEVEL', 5, 0, 7),
    },
    kamailio: { sharedMemoryMb: r.integer('KAMAILIO_SHM_MB', 256, 16, 65536), children: kamailioChildren, debugLevel: kamailioDebug },
    media: r.oneOf('MEDIA', ['rtpengine', 'off'] as const, 'rtpengine'),
    varDir: isAbsolute(varDir) ? varDir : resolve(cwd, varDir),
    antiflood: r.oneOf('ANTIFLOOD', ['on', 'off'] as const, 'on') === 'on' ? { density: r.integer('PIKE_DENSITY', 64, 1, 100_000) } : undefined,
  };
}
