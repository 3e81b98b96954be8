import * as http from 'node:http';
import type { SipEngine } from './engine';
import type { CallCapture } from './capture';

/** Call-IDs one /captures request may name. */
export const MAX_CAPTURES_PER_REQUEST = 500;

/** Serialising captures for this long, at most, before SIP gets the event loop back. */
const SLICE_MS = 1;

/**
 * A small HTTP endpoint for the engine (drachtio's `--prometheus-scrape-port`): `/metrics` in
 * Prometheus text, `/status` as JSON, and the per-call SIP capture when capture is on:
 * `/capture/<Call-ID>` for one call, and `/captures?id=<Call-ID>&id=...` for many in one
 * request (what the B2BUA's call log uses). It binds to loopback unless told otherwise.
 */
export function startStatusServer(engine: SipEngine, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://status');
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const error = (code: number, message: string): void => send(code, 'application/json', JSON.stringify({ error: message }));
    if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
    if (url.pathname === '/metrics') return send(200, 'text/plain; version=0.0.4', engine.metrics());
    if (url.pathname === '/status') return send(200, 'application/json', JSON.stringify(engine.status()));
    if (url.pathname.startsWith('/capture/')) {
      if (!engine.capture) return error(404, 'capture is off (start with --capture)');
      let callId: string;
      try {
        callId = decodeURIComponent(url.pathname.slice('/capture/'.length));
      } catch {
        return error(400, 'the Call-ID is not a valid percent-encoding');
      }
      const c = engine.capture.get(callId);
      if (!c) return error(404, `no capture for Call-ID ${callId}`);
      return send(200, 'application/json', JSON.stringify({ callId, ...c }));
    }
    if (url.pathname === '/captures') {
      if (!engine.capture) return error(404, 'capture is off (start with --capture)');
      const ids = url.searchParams.getAll('id');
      if (ids.length === 0) return error(400, 'name at least one call: /captures?id=<Call-ID>&id=...');
      if (ids.length > MAX_CAPTURES_PER_REQUEST) return error(400, `at most ${MAX_CAPTURES_PER_REQUEST} Call-IDs per request, got ${ids.length}`);
      const take = url.searchParams.get('take');
      if (take !== null && take !== '0' && take !== '1') return error(400, `take is 0 or 1, got ${JSON.stringify(take)}`);
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      streamCaptures(engine.capture, ids, take === '1', res);
      return;
    }
    return send(404, 'text/plain', 'not found: try /status, /metrics, /capture/<Call-ID> or /captures?id=<Call-ID>\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen for status on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'port already in use' : err.message} (--prometheus-scrape-port)`)),
    );
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * One JSON line per Call-ID asked for, in the order asked: `{"callId", "messages", "truncated"}`,
 * or `{"callId", "missing": true}` when the engine has no capture of it. With `take` each capture
 * is removed once written (its reader keeps it now). Serialising many calls can take a few
 * milliseconds: it yields to SIP every SLICE_MS.
 */
function streamCaptures(capture: CallCapture, ids: readonly string[], take: boolean, res: http.ServerResponse): void {
  let next = 0;
  const run = (): void => {
    if (res.destroyed) return;
    const until = performance.now() + SLICE_MS;
    let text = '';
    while (next < ids.length) {
      const callId = ids[next++]!;
      const c = take ? capture.take(callId) : capture.get(callId);
      text += c ? `${JSON.stringify({ callId, messages: c.messages, truncated: c.truncated })}\n` : `${JSON.stringify({ callId, missing: true })}\n`;
      if (performance.now() >= until) break;
    }
    if (next < ids.length) {
      res.write(text);
      setImmediate(run);
    } else {
      res.end(text);
    }
  };
  run();
}
