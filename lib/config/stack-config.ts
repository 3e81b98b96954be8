import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from './engine-args';
import { EnvReader, type Env } from './env';

/** What `npm start` runs, where (see .env.example, second part). */
export interface StackConfig {
  /** Kamailio, where phones register and call (UDP and TCP on one port). */
  readonly sip: { readonly address: string; readonly port: number; readonly advertised: string | undefined; readonly domain: string };
  /** The engine's SIP side (Kamailio trusts this address) and its wire side (the B2BUA connects here). */
  readonly engine: { readonly sipAddress: string; readonly sipPort: number; readonly wireAddress: string; readonly wirePort: number; readonly statusPort: number };
  readonly rtpengine: { readonly ngPort: number; readonly portMin: number; readonly portMax: number; readonly mediaAddress: string };
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
  const varDir = r.string('VAR_DIR', 'var');
  return {
    sip: { address: sipAddress, port: r.port('SIP_PORT', 5060), advertised, domain: r.string('SIP_DOMAIN', advertised ?? sipAddress) },
    engine: {
      sipAddress: engineSipAddress,
      sipPort: r.port('ENGINE_SIP_PORT', 5080),
      wireAddress: r.host('DRACHTIO_HOST', '127.0.0.1'),
      wirePort: r.port('DRACHTIO_PORT', 9022),
      statusPort: r.port('ENGINE_STATUS_PORT', 9023),
    },
    rtpengine: { ngPort: r.port('RTPENGINE_NG_PORT', 22222), portMin, portMax, mediaAddress: r.host('RTPENGINE_MEDIA_ADDRESS', sipAddress) },
    media: r.oneOf('MEDIA', ['rtpengine', 'off'] as const, 'rtpengine'),
    varDir: isAbsolute(varDir) ? varDir : resolve(cwd, varDir),
    antiflood: r.oneOf('ANTIFLOOD', ['on', 'off'] as const, 'on') === 'on' ? { density: r.integer('PIKE_DENSITY', 64, 1, 100_000) } : undefined,
  };
}
