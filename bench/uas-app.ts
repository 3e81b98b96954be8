import { createRequire } from 'node:module';

/**
 * The benchmark's application: an unmodified drachtio-srf UAS that answers every INVITE 200
 * with an SDP answer and lets the caller's BYE end the dialog. Runs in its own process so the
 * engine's CPU is measured alone. Usage: node dist/bench/uas-app.js <wirePort> <secret>
 */
// drachtio-srf is CommonJS and ships no types for its default export; the bench uses three calls.
interface SrfLike {
  connect(opts: { host: string; port: number; secret: string }): void;
  on(event: string, fn: (...args: unknown[]) => void): void;
  invite(fn: (req: { body: string }, res: unknown) => void): void;
  createUAS(req: unknown, res: unknown, opts: { localSdp: string }): Promise<unknown>;
}
const requireCjs = createRequire(__filename);
const Srf = requireCjs('drachtio-srf') as new () => SrfLike;

const port = Number(process.argv[2]);
const secret = process.argv[3] ?? '';
const srf = new Srf();
srf.connect({ host: '127.0.0.1', port, secret });
srf.on('connect', (err) => {
  if (err) {
    process.stderr.write(`uas-app: ${String(err)}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
});
srf.on('error', () => undefined);
srf.invite((req, res) => {
  srf.createUAS(req, res, { localSdp: req.body }).catch(() => undefined);
});
