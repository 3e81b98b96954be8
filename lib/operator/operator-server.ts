import { timingSafeEqual, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { B2buaService } from '../b2bua/b2bua-service';
import { recordOf, type CallLogWriter } from '../b2bua/call-log-writer';
import type { CallSession } from '../b2bua/call-session';
import { callMessages, type CaptureSource } from '../b2bua/engine-capture';
import { CallQueryError, type CallOutcome, type CallRecord, type CallStore, type StoredSipMessage } from '../call-log/call-record';
import type { OperatorConfig } from '../config/b2bua-config';
import {
  callIdParamsSchema,
  callKeyParamsSchema,
  callListQuerySchema,
  callRecordSchema,
  errorSchema,
  messageJson,
  messageSchema,
  recordJson,
  statsQuerySchema,
  type CallListQuery,
} from './api-schemas';
import type { B2buaMetrics } from './metrics';

export type AccessLevel = 'read' | 'admin';

export interface OperatorServerOptions {
  readonly config: OperatorConfig;
  readonly service: B2buaService;
  readonly callLog: CallLogWriter;
  /** The call log's store; undefined when CALL_LOG=off. */
  readonly store: CallStore | undefined;
  /** The engine's SIP capture (ladders of live calls, and of calls whose messages are not stored yet). */
  readonly capture: CaptureSource | undefined;
  readonly metrics: B2buaMetrics;
  /** MAX_CALLS, for capacity left. */
  readonly maxCalls: number;
  readonly logger: Logger;
  /** Readiness checks: each resolves when its dependency works, rejects with why not. */
  readonly readiness: Readonly<Record<string, () => Promise<void>>>;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** Compares a presented bearer token with the configured ones in constant time. */
export function accessOf(authorization: string | undefined, config: Pick<OperatorConfig, 'readTokens' | 'adminTokens'>): AccessLevel | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  if (!m) return undefined;
  const presented = digest(m[1] as string);
  const matches = (list: readonly string[]): boolean => list.some((t) => timingSafeEqual(digest(t), presented));
  if (matches(config.adminTokens)) return 'admin';
  if (matches(config.readTokens)) return 'read';
  return undefined;
}

/** Where the web page's files are: beside this module in the sources, or from dist/ back to them. */
function webDir(): string {
  const candidates = [join(__dirname, 'web'), join(__dirname, '..', '..', '..', 'lib', 'operator', 'web')];
  return candidates.find((d) => existsSync(join(d, 'index.html'))) ?? (candidates[0] as string);
}

const STATIC_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** The page loads only its own files and talks only to this server. */
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

/** A connected /api/events client, dropped when it reads slower than the calls come. */
class EventStream {
  static readonly MAX_BUFFERED = 1024 * 1024;

  constructor(readonly res: ServerResponse) {}

  send(event: string, data: unknown): void {
    if (this.res.writableLength > EventStream.MAX_BUFFERED) {
      this.res.destroy();
      return;
    }
    this.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }
}

function sessionMatches(s: CallSession, key: string): boolean {
  return s.id === key || s.summary.aLeg.callId === key || s.summary.bCallIds.includes(key);
}

/**
 * The operator HTTP endpoint: /health and /ready without a token (they reveal nothing), the web
 * page's static files without a token (the page asks for one), /openapi.json, and the /api routes
 * and /metrics with a bearer token (read or admin). Binds where configured (loopback by default).
 * Authorization headers never reach the logs.
 */
export interface OperatorServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startOperatorServer(options: OperatorServerOptions): Promise<OperatorServer> {
  const { config, service, store, callLog } = options;
  const app = Fastify({
    // Per-request lines are fastify's at info; the operator endpoint logs only warnings and errors.
    loggerInstance: options.logger.child({ component: 'operator' }, { level: 'warn' }),
    bodyLimit: 64 * 1024,
    // Call-IDs can be long; the route schema caps them at 256 with a 400 and a reason.
    routerOptions: { maxParamLength: 512 },
    // Unknown query parameters are refused (a typo in a filter must not silently list everything).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
    // Event streams are long-lived: closing the server ends them.
    forceCloseConnections: true,
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'drachtio-b2bua operator API', version: '1.0.0', description: 'Call log, live calls and statistics of one B2BUA instance.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      return reply.code(400).send({ error: 'bad-request', reason: `${err.validationContext ?? 'request'} ${err.message.replace(/^(querystring|params|body)\/?\s*/, '')}`.trim() });
    }
    if (err instanceof CallQueryError) return reply.code(400).send({ error: 'bad-request', reason: err.message });
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) return reply.code(status).send({ error: 'bad-request', reason: err.message });
    req.log.error({ err: err.message, url: req.routeOptions.url }, 'operator request failed');
    return reply.code(500).send({ error: 'internal', reason: 'the request failed; see the B2BUA log' });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: 'not-found', reason: `no route ${req.method} ${req.url.split('?')[0]}` }));

  const guard = (level: AccessLevel) => async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const access = accessOf(req.headers.authorization, config);
    if (access === undefined) {
      await reply.code(401).header('WWW-Authenticate', 'Bearer').send({ error: 'unauthorized', reason: 'a valid bearer token is required' });
      return;
    }
    if (level === 'admin' && access !== 'admin') {
      await reply.code(403).send({ error: 'forbidden', reason: 'this action needs an admin token' });
    }
  };
  const errors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema };
  const storeOrRefuse = async (reply: FastifyReply): Promise<CallStore | undefined> => {
    if (store) return store;
    await reply.code(503).send({ error: 'call-log-off', reason: 'the call log is off (CALL_LOG=off): only live calls are known' });
    return undefined;
  };
  const liveRecord = (s: CallSession): CallRecord => recordOf(s.summary);

  // ---- unauthenticated: liveness, readiness, the API description, the page ----------------

  app.get('/health', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get('/ready', { schema: { hide: true } }, async (_req, reply) => {
    const checks: Record<string, string> = {};
    let ready = service.accepting;
    if (!service.accepting) checks.accepting = 'shutting down';
    await Promise.all(
      Object.entries(options.readiness).map(async ([name, check]) => {
        try {
          await check();
          checks[name] = 'ok';
        } catch (err) {
          ready = false;
          checks[name] = (err as Error).message;
        }
      }),
    );
    return reply.code(ready ? 200 : 503).send({ ready, checks });
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const dir = webDir();
  const sendStatic = async (reply: FastifyReply, file: string): Promise<FastifyReply> => {
    const ext = /\.[a-z]+$/.exec(file)?.[0] ?? '';
    const type = STATIC_TYPES[ext];
    if (!type) return reply.code(404).send({ error: 'not-found', reason: `no file ${file}` });
    let body: Buffer;
    try {
      body = await readFile(join(dir, file));
    } catch {
      return reply.code(404).send({ error: 'not-found', reason: `no file ${file}` });
    }
    return reply.headers(PAGE_HEADERS).header('Cache-Control', 'no-cache').type(type).send(body);
  };
  app.get('/', { schema: { hide: true } }, (_req, reply) => sendStatic(reply, 'index.html'));
  app.get<{ Params: { file: string } }>(
    '/ui/:file',
    { schema: { hide: true, params: { type: 'object', properties: { file: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]{0,63}$' } } } } },
    (req, reply) => sendStatic(reply, req.params.file),
  );

  // ---- read token -------------------------------------------------------------------------

  app.get('/api/whoami', { preHandler: guard('read'), schema: { summary: 'The access level of the presented token', response: { 200: { type: 'object', properties: { access: { type: 'string', enum: ['read', 'admin'] } } } } } }, async (req) => ({
    access: accessOf(req.headers.authorization, config),
  }));

  app.get('/api/status', { preHandler: guard('read'), schema: { hide: true } }, async () => ({
    accepting: service.accepting,
    sessions: service.sessions.size,
    counters: service.counters,
  }));

  app.get<{ Querystring: CallListQuery }>(
    '/api/calls',
    {
      preHandler: guard('read'),
      schema: {
        summary: 'Calls in the log, newest first, with filters and cursor pagination',
        querystring: callListQuerySchema,
        response: { 200: { type: 'object', properties: { calls: { type: 'array', items: callRecordSchema }, nextCursor: { type: ['string', 'null'] } } }, ...errors },
      },
    },
    async (req, reply) => {
      const s = await storeOrRefuse(reply);
      if (!s) return reply;
      const q = req.query;
      const from = q.from ? new Date(q.from) : undefined;
      const to = q.to ? new Date(q.to) : undefined;
      if (from && to && from.getTime() >= to.getTime()) return reply.code(400).send({ error: 'bad-request', reason: 'from must be before to' });
      const page = await s.list({
        caller: q.caller,
        callee: q.callee,
        outcomes: q.outcome ? [...new Set(q.outcome.split(','))] as CallOutcome[] : undefined,
        from,
        to,
        text: q.q,
        limit: q.limit,
        cursor: q.cursor,
      });
      const live = new Set(service.sessions.keys());
      return { calls: page.calls.map((r) => recordJson(r, live.has(r.id))), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/api/calls/live',
    { preHandler: guard('read'), schema: { summary: 'Calls in progress', response: { 200: { type: 'object', properties: { calls: { type: 'array', items: callRecordSchema } } } } } },
    async () => ({ calls: [...service.sessions.values()].map((s) => recordJson(liveRecord(s), true)) }),
  );

  app.get<{ Params: { key: string } }>(
    '/api/calls/:key',
    {
      preHandler: guard('read'),
      schema: {
        summary: 'One call (by its id or either SIP Call-ID) with the SIP messages of both legs',
        params: callKeyParamsSchema,
        response: {
          200: { type: 'object', properties: { call: callRecordSchema, messages: { type: 'array', items: messageSchema }, truncated: { type: 'boolean' } } },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const key = req.params.key;
      const session = [...service.sessions.values()].find((s) => sessionMatches(s, key));
      const record = session ? liveRecord(session) : await store?.find(key);
      if (!record) return reply.code(404).send({ error: 'not-found', reason: `no call ${key}` });
      let messages: StoredSipMessage[] = [];
      let truncated = false;
      if (!session && store) messages = await store.messages(record.id);
      if (messages.length === 0 && options.capture) {
        // A live call, or one that ended moments ago: the engine still holds its messages.
        const bCallIds = session ? session.summary.bCallIds : record.bCallId ? [record.bCallId] : [];
        try {
          ({ messages, truncated } = await callMessages(options.capture, record.aCallId, bCallIds));
        } catch (err) {
          req.log.warn({ err: (err as Error).message }, 'engine capture unavailable');
        }
      }
      return { call: recordJson(record, session !== undefined), messages: messages.map(messageJson), truncated };
    },
  );

  app.get<{ Querystring: { from?: string; to?: string } }>(
    '/api/stats',
    {
      preHandler: guard('read'),
      schema: {
        summary: 'Calls, answer-seizure ratio, average call duration and concurrency over a window (default: the last 24 hours)',
        querystring: statsQuerySchema,
        response: {
          200: {
            type: 'object',
            properties: {
              from: { type: 'string' },
              to: { type: 'string' },
              calls: { type: ['integer', 'null'] },
              answered: { type: ['integer', 'null'] },
              asr: { type: ['number', 'null'] },
              acdSec: { type: ['number', 'null'] },
              byOutcome: { type: 'object', additionalProperties: { type: 'integer' } },
              concurrency: {
                type: 'object',
                properties: { current: { type: 'integer' }, peak: { type: 'integer' }, limit: { type: 'integer' }, capacityLeft: { type: 'integer' } },
              },
            },
          },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const to = req.query.to ? new Date(req.query.to) : new Date();
      const from = req.query.from ? new Date(req.query.from) : new Date(to.getTime() - 86_400_000);
      if (from.getTime() >= to.getTime()) return reply.code(400).send({ error: 'bad-request', reason: 'from must be before to' });
      const current = service.sessions.size;
      const concurrency = { current, peak: options.metrics.peak, limit: options.maxCalls, capacityLeft: Math.max(0, options.maxCalls - current) };
      const figures = store ? await store.stats(from, to) : { calls: null, answered: null, asr: null, acdSec: null, byOutcome: {} };
      return { from: from.toISOString(), to: to.toISOString(), ...figures, concurrency };
    },
  );

  const streams = new Set<EventStream>();
  const broadcast = (event: string) => (record: CallRecord): void => {
    if (streams.size === 0) return;
    const data = recordJson(record, event === 'call' && record.endedAt === null);
    for (const s of streams) s.send(event, data);
  };
  const onUpdate = broadcast('call');
  const onFinal = broadcast('end');
  callLog.on('update', onUpdate);
  callLog.on('final', onFinal);
  const ping = setInterval(() => {
    for (const s of streams) s.res.write(': ping\n\n');
  }, 15_000);
  ping.unref();

  app.get(
    '/api/events',
    {
      preHandler: guard('read'),
      schema: { summary: 'Server-sent events: `call` at every state change of a live call, `end` when its record is final (with its SIP messages stored)' },
    },
    (req, reply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      res.write(': connected\n\n');
      const stream = new EventStream(res);
      streams.add(stream);
      const drop = (): void => {
        streams.delete(stream);
      };
      req.raw.on('close', drop);
      res.on('close', drop);
    },
  );

  app.get('/metrics', { preHandler: guard('read'), schema: { summary: 'Prometheus metrics' } }, async (_req, reply) =>
    reply.type(options.metrics.contentType).send(await options.metrics.text()),
  );

  // ---- admin token ------------------------------------------------------------------------

  app.post<{ Params: { id: string } }>(
    '/api/calls/:id/hangup',
    {
      preHandler: guard('admin'),
      schema: {
        summary: 'Hang up a live call (BYE to both parties, or CANCEL/480 before answer); hangupBy becomes operator',
        params: callIdParamsSchema,
        response: { 202: { type: 'object', properties: { id: { type: 'string' }, state: { type: 'string' } } }, ...errors },
      },
    },
    async (req, reply) => {
      const session = service.sessions.get(req.params.id);
      if (!session) return reply.code(404).send({ error: 'not-found', reason: `no live call ${req.params.id}` });
      req.log.warn({ callId: session.id }, 'operator hang-up');
      void session.hangup('operator');
      return reply.code(202).send({ id: session.id, state: session.state });
    },
  );

  await app.listen({ host: config.address, port: config.port });
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address ? address.port : config.port,
    close: async () => {
      clearInterval(ping);
      callLog.off('update', onUpdate);
      callLog.off('final', onFinal);
      for (const s of streams) s.res.end();
      await app.close();
    },
  };
}
