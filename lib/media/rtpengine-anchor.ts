// MediaAnchor over RTPEngine's NG control protocol (UDP, bencode) with rtpengine-client.
//
// One control socket talks to one or more RTPEngines. A call is placed on an engine by its first
// offer (least-loaded or round-robin) and stays there until delete. A first offer that times out
// (or cannot be sent, or meets an engine at its session/load limit) is tried once more on the next
// engine. A request that timed out may still have been carried out: a first offer that failed
// (timed out or refused) is followed by a best-effort delete on that engine, and so is a late "ok"
// reply to it.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Client, type NgDestination, type NgParams, type NgReply } from 'rtpengine-client';
import {
  MediaError,
  NO_BACKLOG,
  type MediaAnchor,
  type MediaAnswerRequest,
  type MediaBacklog,
  type MediaDeleteRequest,
  type MediaOfferRequest,
  type MediaQuality,
} from './media-anchor';
import { qualityFromNgReply } from './rtpengine-stats';

export type EngineSelection = 'least-loaded' | 'round-robin';

export interface RtpEngineAddress {
  host: string;
  port: number;
}

export interface RtpEngineAnchorOptions {
  /** NG control addresses (UDP). At least one. */
  engines: readonly RtpEngineAddress[];
  /**
   * How a new call picks its engine: "least-loaded" (default) = fewest sessions held by this
   * process on that engine, ties to the first listed; "round-robin" = the next engine in turn.
   */
  selection?: EngineSelection;
  /** How long a request may wait for its reply (default 1500 ms). */
  timeoutMs?: number;
  /**
   * A request not answered within this long is sent again, the same datagram with the same
   * cookie, and again at this interval until its timeout (default 500 ms; 0: never). RTPEngine
   * answers a cookie it has seen from its cache without carrying the command out twice, which is
   * what Kamailio's rtpengine module relies on too (rtpengine_tout_ms, rtpengine_retr). Without
   * it one datagram lost on the way (RTPEngine's control socket overflows under bursts: it keeps
   * the system's default receive buffer) failed a call.
   */
  retransmitMs?: number;
  logger: Logger;
  /** NG keys sent with every offer, replacing DEFAULT_OFFER_PARAMS. */
  offerParams?: NgParams;
  /** NG keys sent with every answer, replacing DEFAULT_ANSWER_PARAMS. */
  answerParams?: NgParams;
  /**
   * `delete delay` sent with delete, in seconds (default 0: RTPEngine frees the call's ports at
   * once instead of after its own 30 s default; each call holds about four sockets and an
   * RTPEngine process has 20,000). null sends no `delete delay`: RTPEngine's own setting applies.
   */
  deleteDelaySec?: number | null;
  /**
   * Receive buffer of the control socket (default 4 MiB; 0 leaves the system default). With the
   * default ~208 KB, bursts of replies were dropped near saturation. Linux caps it at
   * net.core.rmem_max; a warning is logged when the cap bites.
   */
  recvBufferBytes?: number;
  /** Local address of the control socket (default: all addresses). */
  localAddress?: string;
  /**
   * How long after a timeout a late reply is still recognised (default 30 s). A late "ok" to a
   * first offer then gets a best-effort delete; past this window the reply is only logged.
   */
  lateReplyWindowMs?: number;
  /**
   * An engine that timed out goes to the end of the selection order for this long (default 5 s),
   * then takes its turn again; any reply from it clears the mark at once.
   */
  retryDownEngineAfterMs?: number;
}

/**
 * Offer keys for phones on plain RTP/AVP: RTPEngine's address in o= and c=, no ICE, no recording.
 * Symmetric RTP (learn each side's address from what it sends) is RTPEngine's default; 10.5 no
 * longer knows a "symmetric" flag and logs a warning for each offer and answer that carries it.
 */
export const DEFAULT_OFFER_PARAMS: Readonly<NgParams> = Object.freeze({
  replace: ['origin', 'session-connection'],
  ICE: 'remove',
  'record call': 'no',
});

export const DEFAULT_ANSWER_PARAMS: Readonly<NgParams> = DEFAULT_OFFER_PARAMS;

/** Error reasons of RTPEngine's admission limits (call.c in 10.5): worth trying another engine. */
const LIMIT_REASON = /session limit|load limit|cpu usage limit|bandwidth limit/i;

interface EngineState {
  readonly index: number;
  readonly address: NgDestination;
  /** "host:port", used in logs, errors and MediaQuality.engine. */
  readonly name: string;
  /** Sessions this process holds there, first offers in flight included. */
  sessions: number;
  /** Date.now() of the last timeout or send failure; undefined once it answers. */
  downSince: number | undefined;
}

interface Session {
  readonly callId: string;
  engine: EngineState;
  /** The fromTag of the first offer. */
  readonly callerTag: string;
  /** The fromTag of the latest offer: the only fromTag an answer may carry. */
  lastOfferFrom: string;
  /** Every tag seen in this call; more than two means a transfer left extra monologues. */
  readonly tags: Set<string>;
  /** Settles (never rejects) when the first offer has succeeded or failed. */
  readonly established: Promise<void>;
}

interface Pending {
  /** When it was first sent (Date.now()). */
  readonly started: number;
  readonly timer: NodeJS.Timeout;
  readonly reject: (err: MediaError) => void;
  stopRetransmitting?: () => void;
}

type NgCommand = 'ping' | 'offer' | 'answer' | 'delete' | 'list' | 'query';

const DEFAULT_TIMEOUT_MS = 1500;
const DEFAULT_RETRANSMIT_MS = 500;
const DEFAULT_RECV_BUFFER = 4 * 1024 * 1024;
const DEFAULT_LATE_WINDOW_MS = 30_000;
const DEFAULT_RETRY_DOWN_MS = 5000;

export class RtpEngineAnchor implements MediaAnchor {
  readonly #client: Client;
  readonly #engines: readonly EngineState[];
  readonly #selection: EngineSelection;
  readonly #timeoutMs: number;
  readonly #retransmitMs: number;
  readonly #lateWindowMs: number;
  /** Requests waiting for their reply (for our timeout plus the late-reply window), by cookie. */
  readonly #waiting = new Map<string, { readonly settle: (reply: NgReply | Error) => void; readonly timer: NodeJS.Timeout; readonly stop: () => void }>();
  /**
   * Cookies of requests sent more than once and answered, with when to forget them: RTPEngine
   * answers every copy, and the replies after the first are dropped here without a word.
   */
  readonly #answeredCopies = new Map<string, number>();
  readonly #log: Logger;
  readonly #offerParams: NgParams;
  readonly #answerParams: NgParams;
  readonly #deleteDelaySec: number | undefined;
  readonly #retryDownMs: number;
  readonly #sessions = new Map<string, Session>();
  /** Requests within our timeout and not answered, oldest first. */
  readonly #pending = new Set<Pending>();
  #nextRoundRobin = 0;
  #closed = false;

  constructor(options: RtpEngineAnchorOptions) {
    if (options.engines.length === 0) throw new RangeError('RtpEngineAnchor: engines must list at least one RTPEngine NG address');
    this.#engines = options.engines.map((e, index) => {
      if (typeof e.host !== 'string' || e.host === '') throw new RangeError(`RtpEngineAnchor: engines[${index}].host is empty`);
      if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65535) {
        throw new RangeError(`RtpEngineAnchor: engines[${index}].port must be 1-65535, got ${e.port}`);
      }
      return { index, address: { host: e.host, port: e.port }, name: `${e.host}:${e.port}`, sessions: 0, downSince: undefined };
    });
    const selection = options.selection ?? 'least-loaded';
    if (selection !== 'least-loaded' && selection !== 'round-robin') {
      throw new RangeError(`RtpEngineAnchor: selection must be least-loaded or round-robin, got ${String(selection)}`);
    }
    this.#selection = selection;
    this.#timeoutMs = positive(options.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs');
    this.#retryDownMs = positive(options.retryDownEngineAfterMs, DEFAULT_RETRY_DOWN_MS, 'retryDownEngineAfterMs');
    const lateWindowMs = positive(options.lateReplyWindowMs, DEFAULT_LATE_WINDOW_MS, 'lateReplyWindowMs');
    this.#lateWindowMs = lateWindowMs;
    const retransmitMs = options.retransmitMs ?? DEFAULT_RETRANSMIT_MS;
    if (!Number.isFinite(retransmitMs) || retransmitMs < 0) throw new RangeError(`RtpEngineAnchor: retransmitMs must be a number >= 0, got ${retransmitMs}`);
    this.#retransmitMs = retransmitMs;
    this.#offerParams = { ...(options.offerParams ?? DEFAULT_OFFER_PARAMS) };
    this.#answerParams = { ...(options.answerParams ?? DEFAULT_ANSWER_PARAMS) };
    this.#deleteDelaySec = options.deleteDelaySec === null ? undefined : options.deleteDelaySec ?? 0;
    this.#log = options.logger.child({ component: 'rtpengine-anchor' });

    // The client owns the socket and the NG codec; #send() and #onReply() keep and match the
    // requests, each for our timeout plus the late-reply window: until then a late reply still
    // reaches its request (and is acted on) instead of being an unmatched cookie.
    this.#client = new Client({
      ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}),
    });
    // Replies are matched here, not by the client: it would report (on standard output, at
    // once) every reply to a copy already answered.
    this.#client.socket.removeAllListeners('message');
    this.#client.socket.on('message', (datagram: Buffer) => this.#onReply(datagram));
    const recvBufferBytes = options.recvBufferBytes ?? DEFAULT_RECV_BUFFER;
    this.#client.on('listening', () => this.#onListening(recvBufferBytes));
    this.#client.on('error', (err: Error) => {
      // Unmatched replies (later than the late-reply window), undecodable datagrams, socket errors.
      this.#log.warn({ err: err.message }, 'rtpengine control socket');
    });
  }

  get activeSessions(): number {
    return this.#sessions.size;
  }

  backlog(rank = 1): MediaBacklog {
    if (this.#pending.size === 0) return NO_BACKLOG;
    // A Set iterates in insertion order: the requests still waiting, oldest first.
    const now = Date.now();
    let oldestWaitMs = 0;
    let rankWaitMs = 0;
    let n = 0;
    for (const p of this.#pending) {
      n += 1;
      if (n === 1) oldestWaitMs = Math.max(0, now - p.started);
      if (n >= rank) {
        rankWaitMs = Math.max(0, now - p.started);
        break;
      }
    }
    return { requests: this.#pending.size, oldestWaitMs, rankWaitMs };
  }

  /** The engine ("host:port") holding a call, if this anchor holds it. */
  engineOf(callId: string): string | undefined {
    return this.#sessions.get(callId)?.engine.name;
  }

  /** Sessions held per engine and whether it answered lately, in the configured order (for metrics). */
  engineLoad(): Array<{ engine: string; sessions: number; up: boolean }> {
    return this.#engines.map((e) => ({ engine: e.name, sessions: e.sessions, up: e.downSince === undefined }));
  }

  async offer(req: MediaOfferRequest): Promise<string> {
    this.#assertOpen();
    requireText('offer', { callId: req.callId, fromTag: req.fromTag, sdp: req.sdp });
    // A new call registers its session before anything is awaited, so that a second request for
    // the same call arriving meanwhile waits for this first offer instead of starting another.
    if (!this.#sessions.has(req.callId)) return this.#firstOffer(req);
    const session = await this.#settled(req.callId);
    if (!session) return this.#firstOffer(req);
    session.lastOfferFrom = req.fromTag;
    session.tags.add(req.fromTag);
    if (req.toTag) session.tags.add(req.toTag);
    const reply = await this.#request(session.engine, 'offer', this.#ngOffer(req));
    return this.#sdpOf(reply, session.engine, `offer for call ${req.callId}`);
  }

  async answer(req: MediaAnswerRequest): Promise<string> {
    this.#assertOpen();
    requireText('answer', { callId: req.callId, fromTag: req.fromTag, toTag: req.toTag, sdp: req.sdp });
    const session = await this.#settled(req.callId);
    if (!session) {
      throw new MediaError('MEDIA_REJECTED', `answer for call ${req.callId}: no media session (no offer was anchored, or it was deleted)`);
    }
    if (req.fromTag !== session.lastOfferFrom) {
      throw new MediaError(
        'MEDIA_REJECTED',
        `answer for call ${req.callId}: fromTag "${req.fromTag}" is not the tag of the party that made the latest offer ` +
          `("${session.lastOfferFrom}"); an answer carries the same fromTag and toTag as the offer it answers`,
        session.engine.name,
      );
    }
    if (req.toTag === req.fromTag) {
      throw new MediaError('MEDIA_REJECTED', `answer for call ${req.callId}: toTag equals fromTag ("${req.toTag}")`, session.engine.name);
    }
    session.tags.add(req.toTag);
    const params: NgParams = {
      ...this.#answerParams,
      'call-id': req.callId,
      'from-tag': req.fromTag,
      'to-tag': req.toTag,
      sdp: req.sdp,
    };
    const reply = await this.#request(session.engine, 'answer', params);
    return this.#sdpOf(reply, session.engine, `answer for call ${req.callId}`);
  }

  async delete(req: MediaDeleteRequest): Promise<MediaQuality | undefined> {
    const session = await this.#settled(req.callId);
    if (!session) return undefined;
    this.#forget(session);
    if (this.#closed) return undefined;
    const engine = session.engine;
    const params: NgParams = { 'call-id': req.callId, 'from-tag': req.fromTag || session.callerTag };
    if (this.#deleteDelaySec !== undefined) params['delete delay'] = this.#deleteDelaySec;
    const reply = await this.#request(engine, 'delete', params);
    if (session.tags.size > 2) {
      // After a transfer the deleted tag may leave other monologues of the call behind.
      this.#cleanup(engine, req.callId, 'the call had more than two parties');
    }
    if (reply.result === 'error') {
      this.#log.warn({ callId: req.callId, engine: engine.name, reason: reply['error-reason'] }, 'rtpengine refused the delete');
      return undefined;
    }
    if (reply.warning !== undefined) this.#log.debug({ callId: req.callId, engine: engine.name, warning: reply.warning }, 'rtpengine delete warning');
    return qualityFromNgReply(reply, session.callerTag, engine.name);
  }

  async ping(): Promise<void> {
    this.#assertOpen();
    try {
      await Promise.any(
        this.#engines.map(async (engine) => {
          const reply = await this.#request(engine, 'ping', {});
          if (reply.result !== 'pong') {
            throw new MediaError('MEDIA_REJECTED', `${engine.name} answered ping with ${String(reply.result)}`, engine.name);
          }
        }),
      );
    } catch (err) {
      const errors = err instanceof AggregateError ? (err.errors as unknown[]) : [err];
      const first = errors.find((e): e is MediaError => e instanceof MediaError);
      throw new MediaError(
        first?.code ?? 'MEDIA_UNREACHABLE',
        `no RTPEngine answered a ping: ${errors.map((e) => (e as Error).message).join('; ')}`,
        this.#engines.map((e) => e.name).join(','),
      );
    }
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    if (this.#sessions.size > 0) this.#log.warn({ sessions: this.#sessions.size }, 'closing with media sessions still held');
    for (const session of this.#sessions.values()) this.#forget(session);
    for (const p of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new MediaError('MEDIA_UNREACHABLE', 'the media anchor was closed'));
    }
    this.#pending.clear();
    // Requests still sent again or inside their late-reply window hold timers: drop them, or
    // they would keep the process alive for up to that window.
    for (const waiting of this.#waiting.values()) {
      waiting.stop();
      clearTimeout(waiting.timer);
    }
    this.#waiting.clear();
    this.#answeredCopies.clear();
    try {
      this.#client.close();
    } catch {
      // Already closed.
    }
    return Promise.resolve();
  }

  // ---- internals -------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw new MediaError('MEDIA_UNREACHABLE', 'the media anchor is closed');
  }

  #onListening(recvBufferBytes: number): void {
    const socket = this.#client.socket;
    if (recvBufferBytes > 0) {
      try {
        socket.setRecvBufferSize(recvBufferBytes);
        // Linux reports twice the granted size (the kernel's bookkeeping share).
        const granted = socket.getRecvBufferSize();
        if (granted < recvBufferBytes) {
          this.#log.warn({ requested: recvBufferBytes, granted }, 'rtpengine control socket: receive buffer capped (raise net.core.rmem_max)');
        }
      } catch (err) {
        this.#log.warn({ err: (err as Error).message, requested: recvBufferBytes }, 'rtpengine control socket: cannot set the receive buffer');
      }
    }
    const local = socket.address();
    this.#log.debug({ local: `${local.address}:${local.port}`, engines: this.#engines.map((e) => e.name) }, 'rtpengine control socket ready');
  }

  /** The call's session once its first offer (if in flight) has settled. */
  async #settled(callId: string): Promise<Session | undefined> {
    const session = this.#sessions.get(callId);
    if (!session) return undefined;
    await session.established;
    return this.#sessions.get(callId);
  }

  #forget(session: Session): void {
    if (this.#sessions.get(session.callId) !== session) return;
    this.#sessions.delete(session.callId);
    session.engine.sessions = Math.max(0, session.engine.sessions - 1);
  }

  #ngOffer(req: MediaOfferRequest): NgParams {
    const params: NgParams = { ...this.#offerParams, 'call-id': req.callId, 'from-tag': req.fromTag, sdp: req.sdp };
    if (req.toTag) params['to-tag'] = req.toTag;
    return params;
  }

  /** Engines in the order a new call tries them: by policy, engines that timed out lately last. */
  #candidates(): EngineState[] {
    let ordered: EngineState[];
    if (this.#selection === 'round-robin') {
      const start = this.#nextRoundRobin % this.#engines.length;
      this.#nextRoundRobin = (start + 1) % this.#engines.length;
      ordered = [...this.#engines.slice(start), ...this.#engines.slice(0, start)];
    } else {
      ordered = [...this.#engines].sort((a, b) => a.sessions - b.sessions || a.index - b.index);
    }
    const now = Date.now();
    const up = (e: EngineState): boolean => e.downSince === undefined || now - e.downSince >= this.#retryDownMs;
    return [...ordered.filter(up), ...ordered.filter((e) => !up(e))];
  }

  async #firstOffer(req: MediaOfferRequest): Promise<string> {
    const tries = this.#candidates().slice(0, 2);
    let settle: () => void = () => undefined;
    const established = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const first = tries[0] as EngineState;
    const session: Session = {
      callId: req.callId,
      engine: first,
      callerTag: req.fromTag,
      lastOfferFrom: req.fromTag,
      tags: new Set(req.toTag ? [req.fromTag, req.toTag] : [req.fromTag]),
      established,
    };
    this.#sessions.set(req.callId, session);
    const failures: MediaError[] = [];
    try {
      for (const engine of tries) {
        session.engine = engine;
        engine.sessions += 1;
        try {
          const reply = await this.#request(engine, 'offer', this.#ngOffer(req), (late) => this.#onLateFirstOffer(engine, req.callId, late));
          const sdp = this.#sdpOf(reply, engine, `offer for call ${req.callId}`);
          this.#log.debug({ callId: req.callId, engine: engine.name, sessions: engine.sessions }, 'media session created');
          return sdp;
        } catch (err) {
          engine.sessions = Math.max(0, engine.sessions - 1);
          const mediaErr = err instanceof MediaError ? err : new MediaError('MEDIA_UNREACHABLE', (err as Error).message, engine.name, { cause: err });
          // Unless nothing was sent, the engine may hold (or later create) the call: undo it there.
          if (mediaErr.code !== 'MEDIA_UNREACHABLE') this.#cleanup(engine, req.callId, `its first offer failed (${mediaErr.code})`);
          const retriable = mediaErr.code !== 'MEDIA_REJECTED' || LIMIT_REASON.test(mediaErr.message);
          if (!retriable || this.#closed) throw mediaErr;
          failures.push(mediaErr);
          if (engine !== tries[tries.length - 1]) {
            this.#log.warn({ callId: req.callId, engine: engine.name, err: mediaErr.message }, 'rtpengine failed the first offer; trying the next engine');
          }
        }
      }
      const last = failures[failures.length - 1] as MediaError;
      throw new MediaError(
        last.code,
        `no RTPEngine took the offer of call ${req.callId}: ${failures.map((f) => f.message).join('; ')}`,
        last.engine,
        { cause: last },
      );
    } catch (err) {
      if (this.#sessions.get(req.callId) === session) this.#sessions.delete(req.callId);
      throw err;
    } finally {
      settle();
    }
  }

  /** A reply to a first offer arrived after its timeout: undo what it did unless the call lives there now. */
  #onLateFirstOffer(engine: EngineState, callId: string, reply: NgReply): void {
    if (reply.result !== 'ok') return;
    if (this.#sessions.get(callId)?.engine === engine) return;
    this.#log.warn({ callId, engine: engine.name }, 'late reply to a timed-out offer: deleting that media session');
    this.#cleanup(engine, callId, 'a late reply to a timed-out offer');
  }

  /** Best-effort delete of a whole call on one engine; never throws, nobody waits for it. */
  #cleanup(engine: EngineState, callId: string, why: string): void {
    if (this.#closed) return;
    const params: NgParams = { 'call-id': callId, 'delete delay': 0 };
    this.#request(engine, 'delete', params).then(
      (reply) => this.#log.debug({ callId, engine: engine.name, why, result: reply.result, warning: reply.warning }, 'cleanup delete sent'),
      (err: unknown) => this.#log.warn({ callId, engine: engine.name, why, err: (err as Error).message }, 'cleanup delete failed'),
    );
  }

  #sdpOf(reply: NgReply, engine: EngineState, what: string): string {
    if (reply.result === 'error') {
      throw new MediaError('MEDIA_REJECTED', `${engine.name} rejected the ${what}: ${reply['error-reason'] ?? 'no reason given'}`, engine.name);
    }
    if (reply.result !== 'ok' || typeof reply.sdp !== 'string' || reply.sdp === '') {
      throw new MediaError('MEDIA_REJECTED', `${engine.name} answered the ${what} without SDP (result ${String(reply.result)})`, engine.name);
    }
    if (reply.warning !== undefined) this.#log.debug({ engine: engine.name, what, warning: reply.warning }, 'rtpengine warning');
    return reply.sdp;
  }

  /**
   * Sends one NG request and waits at most timeoutMs for its reply (MEDIA_TIMEOUT). A reply that
   * comes later, within the late-reply window, goes to `onLateReply`.
   */
  #request(engine: EngineState, command: NgCommand, params: NgParams, onLateReply?: (reply: NgReply) => void): Promise<NgReply> {
    return new Promise<NgReply>((resolve, reject) => {
      let timedOut = false;
      const started = Date.now();
      const pending: Pending = {
        started,
        timer: setTimeout(() => {
          timedOut = true;
          pending.stopRetransmitting?.();
          this.#pending.delete(pending);
          engine.downSince = Date.now();
          // Pings come from readiness probes, possibly every few seconds: keep them out of warn.
          this.#log[command === 'ping' ? 'debug' : 'warn'](
            { engine: engine.name, command, callId: params['call-id'], timeoutMs: this.#timeoutMs },
            'rtpengine did not answer in time',
          );
          reject(new MediaError('MEDIA_TIMEOUT', `${engine.name} did not answer ${command} within ${this.#timeoutMs} ms`, engine.name));
        }, this.#timeoutMs),
        reject,
      };
      this.#pending.add(pending);
      let sent: Promise<NgReply>;
      try {
        const request = this.#send(engine.address, command, params);
        sent = request.reply;
        // No more copies once our own timeout has given up on it (the reply may still come late).
        pending.stopRetransmitting = request.stop;
      } catch (err) {
        sent = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      sent.then(
        (reply) => {
          engine.downSince = undefined;
          if (timedOut) {
            this.#log.info({ engine: engine.name, command, callId: params['call-id'], afterMs: Date.now() - started }, 'late rtpengine reply');
            onLateReply?.(reply);
            return;
          }
          if (!this.#pending.delete(pending)) return; // closed meanwhile
          clearTimeout(pending.timer);
          resolve(reply);
        },
        (err: unknown) => {
          if (timedOut || !this.#pending.delete(pending)) return; // the client's late-window timeout, or closed
          clearTimeout(pending.timer);
          engine.downSince = Date.now();
          const message = err instanceof Error ? err.message : String(err);
          const code = /timeout/i.test(message) ? 'MEDIA_TIMEOUT' : 'MEDIA_UNREACHABLE';
          reject(new MediaError(code, `${engine.name}: ${command} failed: ${message}`, engine.name, { cause: err }));
        },
      );
    });
  }

  /** A datagram on the control socket: the reply to the request with its cookie. */
  #onReply(datagram: Buffer): void {
    let decoded: { id: string; data: NgReply };
    try {
      decoded = Client.decodeMessage(datagram);
    } catch {
      this.#log.warn({ bytes: datagram.length }, 'rtpengine control socket: a datagram that is not an NG reply');
      return;
    }
    const waiting = this.#waiting.get(decoded.id);
    if (waiting) {
      waiting.settle(decoded.data);
      return;
    }
    if (this.#answeredCopies.has(decoded.id)) return;
    this.#log.warn({ cookie: decoded.id, result: decoded.data.result }, 'rtpengine reply to no request waiting (later than the late-reply window)');
  }

  /**
   * Sends one NG request over UDP: the reply resolves `reply`, which rejects when none came
   * within our timeout plus the late-reply window (or the datagram could not be sent). Until a
   * reply comes or `stop()` is called, the very same datagram (same cookie) goes again every
   * `retransmitMs`.
   */
  #send(dest: NgDestination, command: NgCommand, params: NgParams): { reply: Promise<NgReply>; stop: () => void } {
    const socket = this.#client.socket;
    const cookie = randomUUID();
    const datagram = Client.encodeMessage(cookie, { ...params, command });
    let copies = 0;
    let retransmit: NodeJS.Timeout | undefined;
    const stop = (): void => {
      clearInterval(retransmit);
      retransmit = undefined;
    };
    const reply = new Promise<NgReply>((resolve, reject) => {
      const settle = (outcome: NgReply | Error): void => {
        const waiting = this.#waiting.get(cookie);
        if (!waiting) return;
        stop();
        clearTimeout(waiting.timer);
        this.#waiting.delete(cookie);
        if (outcome instanceof Error) {
          reject(outcome);
          return;
        }
        if (copies > 1) this.#rememberCopies(cookie);
        resolve(outcome);
      };
      this.#waiting.set(cookie, {
        settle,
        stop,
        timer: setTimeout(() => settle(new Error(`rtpengine timeout host:${dest.host} port:${dest.port}`)), this.#timeoutMs + this.#lateWindowMs),
      });
      const sendOnce = (): void => {
        copies += 1;
        socket.send(datagram, dest.port, dest.host, (err) => {
          if (err) settle(err);
        });
      };
      sendOnce();
      if (this.#retransmitMs > 0 && this.#retransmitMs < this.#timeoutMs) retransmit = setInterval(sendOnce, this.#retransmitMs);
    });
    return { reply, stop };
  }

  /** Replies to the other copies of an answered request may follow: for a while they are expected. */
  #rememberCopies(cookie: string): void {
    const now = Date.now();
    // Oldest first (insertion order): drop the expired ones.
    for (const [old, until] of this.#answeredCopies) {
      if (until > now) break;
      this.#answeredCopies.delete(old);
    }
    this.#answeredCopies.set(cookie, now + this.#timeoutMs + this.#lateWindowMs);
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`RtpEngineAnchor: ${name} must be a positive number, got ${value}`);
  return value;
}

function requireText(what: string, fields: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value !== 'string' || value === '') {
      throw new MediaError('MEDIA_REJECTED', `${what}: ${name} is empty`);
    }
  }
}
