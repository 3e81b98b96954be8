import * as http from 'node:http';
import type { SipEngine } from './engine';

/**
 * A small HTTP endpoint for the engine (drachtio's `--prometheus-scrape-port`): `/metrics` in
 * Prometheus text, `/status` as JSON, and `/capture/<Call-ID>` for the per-call SIP capture when
 * capture is on. It binds to loopback unless told otherwise.
 */
export function startStatusServer(engine: SipEngine, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://status');
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
    if (url.pathname === '/metrics') return send(200, 'text/plain; version=0.0.4', engine.metrics());
    if (url.pathname === '/status') return send(200, 'application/json', JSON.stringify(engine.status()));
    if (url.pathname.startsWith('/capture/')) {
      if (!engine.capture) return send(404, 'application/json', JSON.stringify({ error: 'capture is off (start with --capture)' }));
      const callId = decodeURIComponent(url.pathname.slice('/capture/'.length));
      const c = engine.capture.get(callId);
      if (!c) return send(404, 'application/json', JSON.stringify({ error: `no capture for Call-ID ${callId}` }));
      return send(200, 'application/json', JSON.stringify({ callId, ...c }));
    }
    return send(404, 'text/plain', 'not found: try /status, /metrics or /capture/<Call-ID>\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen for status on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'port already in use' : err.message} (--prometheus-scrape-port)`)),
    );
    server.listen(port, host, () => resolve(server));
  });
}
