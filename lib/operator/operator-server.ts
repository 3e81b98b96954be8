import { timingSafeEqual, createHash } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { B2buaService } from '../b2bua/b2bua-service';
import type { CallSummary } from '../b2bua/call-session';
import type { OperatorConfig } from '../config/b2bua-config';

export type AccessLevel = 'read' | 'admin';

export interface OperatorServerOptions {
  readonly config: OperatorConfig;
  readonly service: B2buaService;
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

export function liveCallView(s: CallSummary): Record<string, unknown> {
  return {
    id: s.id,
    state: s.state,
    caller: s.caller,
    callee: s.callee,
    aCallId: s.aLeg.callId,
    bCallId: s.bLeg.callId,
    receivedAt: s.receivedAt.toISOString(),
    ringingAt: s.ringingAt?.toISOString(),
    answeredAt: s.answeredAt?.toISOString(),
    transfers: s.transfers,
  };
}

/**
 * The operator HTTP endpoint: /health and /ready without a token (they reveal nothing), the
 * /api routes with a bearer token (read or admin). Binds where configured (loopback by default).
 * Authorization headers are redacted from logs.
 */
export interface OperatorServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startOperatorServer(options: OperatorServerOptions): Promise<OperatorServer> {
  const { config, service } = options;
  const app = Fastify({
    // Per-request lines are fastify's at info; the operator endpoint logs only warnings and errors.
    loggerInstance: options.logger.child({ component: 'operator' }, { level: 'warn' }),
    bodyLimit: 64 * 1024,
  });

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

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/ready', async (_req, reply) => {
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

  app.get('/api/status', { preHandler: guard('read') }, async () => ({
    accepting: service.accepting,
    sessions: service.sessions.size,
    counters: service.counters,
  }));

  app.get('/api/calls/live', { preHandler: guard('read') }, async () => ({
    calls: [...service.sessions.values()].map((s) => liveCallView(s.summary)),
  }));

  app.post<{ Params: { id: string } }>(
    '/api/calls/:id/hangup',
    {
      preHandler: guard('admin'),
      schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } }, required: ['id'] } },
    },
    async (req, reply) => {
      const session = service.sessions.get(req.params.id);
      if (!session) return reply.code(404).send({ error: 'not-found', reason: `no live call ${req.params.id}` });
      void session.hangup('operator');
      return reply.code(202).send({ id: session.id, state: session.state });
    },
  );

  await app.listen({ host: config.address, port: config.port });
  const address = app.server.address();
  return { port: typeof address === 'object' && address ? address.port : config.port, close: () => app.close() };
}
