import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import type { MediaAnchor, MediaQuality } from '../media/media-anchor';
import { MediaError } from '../media/media-anchor';
import { canTransition, CallStateError, FINAL_STATES, type CallOutcome, type CallState, type HangupSide } from './call-state';
import type { DialPlan } from './dial-plan';
import {
  LegSessionTimer,
  negotiateAsUas,
  planFromRefresh,
  planFromUacAnswer,
  refreshAnswerHeaders,
  refreshHeaders,
  retryIntervalAfter422,
  supportsTimer,
  uacRequestHeaders,
  type LegTimerPlan,
  type SessionTimerConfig,
} from './session-timer';
import {
  answerHeader,
  cancelRequest,
  createUac,
  destroyDialog,
  detached,
  failureHeader,
  isConnected,
  dialogRequest,
  modifyDialog,
  sendResponse,
  sendResponseNoWait,
  sipFailureOf,
  slimDialog,
  tagOf,
  withoutTag,
  type SrfDialog,
  type SrfRequest,
  type SrfResponse,
} from './srf-adapter';

/** Headers the B2BUA adds to its B legs; Kamailio honours them only from the engine's address. */
export const HEADER_CALL_ID = 'X-Call-ID';
export const HEADER_FROM_APP = 'X-From-App';

export interface CallSessionContext {
  readonly srf: Srf;
  readonly media: MediaAnchor;
  /** Kamailio's SIP URI as the engine reaches it, e.g. sip:127.0.0.1:5060 */
  readonly kamailioUri: string;
  readonly instance: string;
  readonly noAnswerTimeoutMs: number;
  /** RFC 4028 session timers on both legs (expires 0: off) */
  readonly sessionTimer: SessionTimerConfig;
  readonly dialPlan: DialPlan;
  readonly logger: Logger;
}

export interface CallParty {
  readonly user: string;
  readonly displayName: string | undefined;
  readonly address: string;
  readonly port: number;
}

export interface LegRecord {
  callId: string;
  /** Final status and reason this leg saw (A: what we sent the caller; B: what the callee sent). */
  status: number | undefined;
  reason: string | undefined;
}

/** What a call record needs; updated as the call goes and emitted with every state change. */
export interface CallSummary {
  readonly id: string;
  readonly instance: string;
  readonly caller: CallParty;
  readonly callee: string;
  readonly aLeg: LegRecord;
  readonly bLeg: LegRecord;
  state: CallState;
  readonly receivedAt: Date;
  ringingAt: Date | undefined;
  answeredAt: Date | undefined;
  endedAt: Date | undefined;
  outcome: CallOutcome | undefined;
  hangupBy: HangupSide | undefined;
  media: MediaQuality | undefined;
  /** Extensions this call was transferred to (REFER), in order. */
  readonly transfers: string[];
  /** Every B leg's Call-ID in order (a transfer adds one); bLeg.callId is the latest. */
  readonly bCallIds: string[];
}

interface CallSessionEvents {
  state: [CallState, CallState];
  end: [CallSummary];
}

type Side = 'caller' | 'callee';

/** One bridged party after answer: its dialog and the tag RTPEngine knows it by. */
interface Leg {
  readonly dialog: SrfDialog;
  readonly tag: string;
  readonly side: Side;
  /** The identity to present to others for this party (a From header value without tag). */
  readonly identity: string;
  /** Its session timer (RFC 4028); undefined when timers are off. */
  timer: LegSessionTimer | undefined;
  /** The party said it supports timers (Supported/Require: timer). */
  readonly peerHasTimer: boolean;
}

/** The BYE a session timer ends a call with. */
const SESSION_EXPIRED_REASON = 'SIP;cause=408;text="Session timer expired"';

const RELAYED_HEADERS = ['Content-Type', 'Info-Package', 'Event', 'Subscription-State', 'Accept', 'Allow-Events', 'Referred-By'];

/** The dialog events a bridged leg follows (see CallSession#attach). */
const LEG_EVENTS = ['destroy', 'modify', 'update', 'info', 'options', 'message', 'notify', 'refer'] as const;

/** Percent-decoding that never throws (a malformed escape is kept as it is). */
export function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Status codes drachtio-srf can send; anything else becomes its class's x00 (RFC 3261 8.1.3.2). */
const SENDABLE = new Set([
  400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 412, 413, 414, 415, 416, 417, 420, 421, 422, 423, 428, 429, 430, 433, 436, 437, 438,
  439, 440, 469, 470, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489, 491, 493, 494, 500, 501, 502, 503, 504, 505, 513, 555, 580, 600,
  603, 604, 606,
]);

function sendable(status: number): number {
  return SENDABLE.has(status) ? status : Math.floor(status / 100) * 100;
}

function isHold(sdp: string): boolean {
  return /^a=(sendonly|inactive)\s*$/m.test(sdp) || /^c=IN IP4 0\.0\.0\.0\s*$/m.test(sdp);
}

function hasOffer(sdp: string | undefined): sdp is string {
  return sdp !== undefined && sdp !== '' && /^m=/m.test(sdp);
}

/** The caller's INVITE and its response object, kept until the call is answered or ends. */
interface ALegTransaction {
  readonly req: SrfRequest;
  readonly res: SrfResponse;
}

/**
 * One call through the B2BUA: the A leg (the caller's INVITE, handed to us by Kamailio through
 * the engine) bridged to a B leg sent back through Kamailio to the same extension, with media
 * anchored in RTPEngine. It owns both legs and the media session; every ending path deletes the
 * media session, ends both legs and emits `end` once.
 *
 * Per call it logs two lines at info, `call received` and `call ended` (with the outcome, the
 * statuses, the durations and the media figures); the steps between are at debug. Every line
 * carries `callId` (the session id, also sent as X-Call-ID).
 *
 * Memory: a bridged call holds its two dialogs, the summary and little else. The caller's INVITE
 * and its response object are dropped once answered, and both dialogs are slimmed (slimDialog):
 * drachtio-srf would otherwise keep four parsed SIP messages and their wire frames per call.
 */
export class CallSession extends EventEmitter<CallSessionEvents> {
  readonly id: string;
  readonly summary: CallSummary;
  readonly #ctx: CallSessionContext;
  readonly #log: Logger;
  /** Until answered (or ended): the caller's INVITE and the response object answering it. */
  #a: ALegTransaction | undefined;
  readonly #aTag: string;
  /** The caller as a From header value without tag (what the callee's leg shows). */
  readonly #aIdentity: string;
  readonly #maxForwards: number;
  #state: CallState = 'received';
  #bReq: SrfRequest | undefined;
  #cancelRequested = false;
  /** A final response went (or is going) to the caller: ours, or the engine's 487 after a CANCEL. */
  #aFinal = false;
  #noAnswer = false;
  #noAnswerTimer: NodeJS.Timeout | undefined;
  #legs: [Leg, Leg] | undefined;
  #mediaAnchored = false;
  #transferring = false;
  /** The party that sent an accepted REFER: its BYE from then on ends only its own leg. */
  #transferor: Leg | undefined;
  #transferorGone = false;
  #finishing: Promise<void> | undefined;
  /**
   * Serialises the A-leg answers we send (183 before 200, whatever their async media work);
   * #aLegPending counts the jobs in it, so that with none a provisional goes out at once.
   */
  #aLegQueue: Promise<void> = Promise.resolve();
  #aLegPending = 0;
  /** Timers of transfers (the transferor's BYE wait); created on the first transfer. */
  #timers: Set<NodeJS.Timeout> | undefined;
  #calleeGoneEarly = false;
  #receivedLogged = false;
  /** The caller's leg's session timer, settled when its INVITE came (RFC 4028 section 9). */
  #aTimerPlan: LegTimerPlan | undefined;
  /** Session-Expires and friends for our 200 to the caller. */
  #aTimerHeaders: Record<string, string> = {};
  #aPeerHasTimer = false;
  /** The session interval our B-leg INVITEs ask for (raised once by a 422). */
  #bAsked: number;

  constructor(ctx: CallSessionContext, req: SrfRequest, res: SrfResponse, callee: string) {
    super();
    this.#ctx = ctx;
    this.#log = ctx.logger;
    this.#a = { req, res };
    this.#bAsked = ctx.sessionTimer.expires;
    this.id = randomUUID();
    const fromValue = req.get('From');
    const from = req.getParsedHeader('From');
    this.#aTag = detached(tagOf(fromValue) ?? '');
    this.#aIdentity = detached(withoutTag(fromValue));
    const mf = Number(req.get('Max-Forwards'));
    this.#maxForwards = Number.isInteger(mf) && mf > 0 ? mf - 1 : 69;
    const user = /^sips?:([^@;>]+)@/.exec(from.uri)?.[1] ?? '';
    this.summary = {
      id: this.id,
      instance: ctx.instance,
      caller: {
        user: detached(safeDecode(user)),
        displayName: from.name ? detached(from.name.replace(/^"|"$/g, '')) : undefined,
        address: detached(req.source_address),
        port: Number(req.source_port),
      },
      callee,
      aLeg: { callId: detached(req.get('Call-ID')), status: undefined, reason: undefined },
      bLeg: { callId: '', status: undefined, reason: undefined },
      state: 'received',
      receivedAt: new Date(),
      ringingAt: undefined,
      answeredAt: undefined,
      endedAt: undefined,
      outcome: undefined,
      hangupBy: undefined,
      media: undefined,
      transfers: [],
      bCallIds: [],
    };
    req.on('cancel', () => this.#onCallerCancel());
  }

  get state(): CallState {
    return this.#state;
  }

  get ended(): boolean {
    return FINAL_STATES.has(this.#state);
  }

  /** Runs the call to its end; never rejects. */
  async run(): Promise<void> {
    try {
      await this.#setup();
    } catch (err) {
      this.#logReceived();
      this.#log.error({ callId: this.id, err }, 'call setup failed unexpectedly');
      await this.#failA(500, 'Internal Server Error');
      await this.#finish('failed', 'system');
    }
  }

  /** Ends the call from outside (operator hang-up, shutdown): BYE or CANCEL as the state needs. */
  async hangup(by: HangupSide = 'operator'): Promise<void> {
    if (this.ended) return;
    this.#log.info({ callId: this.id, by, state: this.#state }, 'hang-up requested');
    if (this.#legs) {
      this.summary.hangupBy ??= by;
      await this.#endBridge(undefined, by);
      return;
    }
    this.summary.hangupBy ??= by;
    const answered = this.#failA(by === 'system' ? 503 : 480, by === 'system' ? 'Service Unavailable' : 'Temporarily Unavailable');
    this.#cancelRequested = true;
    if (this.#bReq) cancelRequest(this.#bReq);
    await answered;
    if (!this.#bReq) await this.#finish('failed', by);
  }

  /**
   * The connection to the drachtio server is gone, and with it every way to signal on this call:
   * release the media and record the call as interrupted.
   */
  async abandon(): Promise<void> {
    if (this.ended) return;
    this.#log.warn({ callId: this.id, state: this.#state }, 'drachtio connection lost: call abandoned');
    this.#cancelRequested = true;
    this.summary.outcome = 'interrupted';
    await this.#finish(this.#legs ? 'ended' : 'failed', 'system');
  }

  // ---- state -----------------------------------------------------------------------------

  #setState(next: CallState): void {
    const prev = this.#state;
    if (prev === next || FINAL_STATES.has(prev)) return;
    if (!canTransition(prev, next)) throw new CallStateError(prev, next);
    this.#state = next;
    this.summary.state = next;
    this.#log.debug({ callId: this.id, from: prev, to: next }, 'call state');
    this.emit('state', next, prev);
  }

  // ---- set-up ----------------------------------------------------------------------------

  /**
   * The call's first line. Written once the B leg's INVITE is out (or the call failed before):
   * a log write wakes the process reading our output, which may take the CPU from us for a
   * while, and nothing on the way to the callee should wait for that.
   */
  #logReceived(): void {
    if (this.#receivedLogged) return;
    this.#receivedLogged = true;
    const { caller, callee, aLeg } = this.summary;
    this.#log.info({ callId: this.id, caller: caller.user, callee, aCallId: aLeg.callId, source: `${caller.address}:${caller.port}` }, 'call received');
  }

  async #setup(): Promise<void> {
    const a = this.#a;
    if (!a) return;
    const { media } = this.#ctx;
    const body = a.req.body;
    const timer = negotiateAsUas(
      {
        sessionExpires: headerOf(a.req, 'Session-Expires', 'x'),
        minSE: headerOf(a.req, 'Min-SE'),
        supported: headerOf(a.req, 'Supported', 'k'),
        require: headerOf(a.req, 'Require'),
      },
      this.#ctx.sessionTimer,
    );
    if (!timer.ok) {
      this.#logReceived();
      this.#log.info({ callId: this.id, status: timer.status, sessionExpires: headerOf(a.req, 'Session-Expires', 'x') }, 'session timer refused');
      await this.#failA(timer.status, timer.reason, timer.headers);
      await this.#finish('failed', 'system');
      return;
    }
    this.#aTimerPlan = timer.plan;
    this.#aTimerHeaders = timer.responseHeaders;
    this.#aPeerHasTimer = timer.peerHasTimer;
    if (!hasOffer(body)) {
      this.#logReceived();
      // A late offer (INVITE without SDP) would need the offer from the callee's 200 anchored and
      // the caller's answer carried in its ACK; not supported with media anchoring.
      await this.#failA(488, 'Not Acceptable Here', { Warning: '399 b2bua "an SDP offer in the INVITE is required"' });
      await this.#finish('failed', 'system');
      return;
    }
    let offer: string;
    try {
      // Set first: a hang-up during the offer must still delete (delete waits for the offer).
      this.#mediaAnchored = true;
      offer = await media.offer({ callId: this.summary.aLeg.callId, fromTag: this.#aTag, sdp: body });
    } catch (err) {
      this.#logReceived();
      this.#log.warn({ callId: this.id, err: (err as Error).message, code: err instanceof MediaError ? err.code : undefined }, 'media offer failed');
      if (!this.#cancelRequested) await this.#failA(503, 'Service Unavailable', { Reason: 'Q.850;cause=47;text="media server unavailable"' });
      await this.#finish(this.#cancelRequested ? 'cancelled' : 'failed', this.#cancelRequested ? 'caller' : 'system');
      return;
    }
    if (this.#cancelRequested) {
      this.#logReceived();
      await this.#finish('cancelled', 'caller');
      return;
    }
    this.#setState('proceeding');
    let uac: SrfDialog;
    try {
      const answered = this.#sendBLeg(this.summary.callee, offer, this.#aIdentity, a.req.get('To'));
      this.#logReceived();
      uac = await answered;
    } catch (first) {
      // A 422 (the callee wants a longer session interval): ask again once with its Min-SE (RFC 4028 7.4)
      const retry =
        sipFailureOf(first)?.status === 422 && !this.#cancelRequested && !this.#noAnswer && this.#ctx.sessionTimer.expires > 0
          ? retryIntervalAfter422(failureHeader(first, 'Min-SE'), this.#bAsked) : undefined;
      if (retry === undefined) {
        this.#logReceived();
        this.#clearNoAnswerTimer();
        await this.#onBLegFailed(first);
        return;
      }
      this.#log.debug({ callId: this.id, interval: retry }, '422 from the callee: B leg sent again with its Min-SE');
      this.#bAsked = retry;
      this.#bReq = undefined;
      try {
        uac = await this.#sendBLeg(this.summary.callee, offer, this.#aIdentity, a.req.get('To'));
      } catch (err) {
        this.#clearNoAnswerTimer();
        await this.#onBLegFailed(err);
        return;
      }
    }
    this.#clearNoAnswerTimer();
    await this.#onBLegAnswered(uac);
  }

  #uriFor(extension: string): string {
    return this.#ctx.kamailioUri.replace(/^(sips?:)/, `$1${encodeURIComponent(extension)}@`);
  }

  /** Sends an INVITE through Kamailio to `extension`; resolves with the answered dialog. */
  #sendBLeg(extension: string, sdp: string, from: string, to: string | undefined, extra: Record<string, string> = {}): Promise<SrfDialog> {
    const headers: Record<string, string> = {
      From: from,
      To: to ?? `<sip:${extension}@${this.#ctx.kamailioUri.replace(/^sips?:/, '').replace(/;.*$/, '')}>`,
      'Max-Forwards': String(this.#maxForwards),
      [HEADER_CALL_ID]: this.id,
      [HEADER_FROM_APP]: this.#ctx.instance,
      ...uacRequestHeaders(this.#ctx.sessionTimer, this.#bAsked),
      ...extra,
    };
    this.#startNoAnswerTimer();
    return createUac(this.#ctx.srf, this.#uriFor(extension), { headers, localSdp: sdp }, {
      onRequest: (bReq) => {
        this.#bReq = bReq;
        this.summary.bLeg.callId = detached(bReq.get('Call-ID'));
        this.summary.bCallIds.push(this.summary.bLeg.callId);
        this.#log.debug({ callId: this.id, bCallId: this.summary.bLeg.callId, uri: bReq.uri }, 'B leg sent');
        // A CANCEL that arrived while the B leg was being created still ends it.
        if (this.#cancelRequested) cancelRequest(bReq);
      },
      onProvisional: (res) => this.#onBLegProvisional(res),
    });
  }

  #startNoAnswerTimer(): void {
    this.#clearNoAnswerTimer();
    this.#noAnswerTimer = setTimeout(() => {
      this.#noAnswerTimer = undefined;
      if (this.#legs || this.ended) return;
      this.#log.debug({ callId: this.id, afterMs: this.#ctx.noAnswerTimeoutMs }, 'no answer: cancelling the B leg');
      this.#noAnswer = true;
      if (this.#bReq) cancelRequest(this.#bReq);
    }, this.#ctx.noAnswerTimeoutMs);
  }

  #clearNoAnswerTimer(): void {
    if (this.#noAnswerTimer) clearTimeout(this.#noAnswerTimer);
    this.#noAnswerTimer = undefined;
  }

  /**
   * A provisional response from the callee, relayed to the caller. One without SDP (180 Ringing)
   * goes out at once when nothing is queued before it: no media work, and nothing waits for the
   * server's echo of it. One with SDP (early media) first has its answer anchored; whatever comes
   * after it waits its turn in the queue.
   */
  #onBLegProvisional(res: SrfResponse): void {
    if (this.#cancelRequested || this.ended) return;
    const status = res.status;
    if (status === 100) return;
    this.summary.ringingAt ??= new Date();
    const body = res.body;
    const reason = res.reason;
    const toTag = hasOffer(body) ? tagOf(res.get('To')) : undefined;
    if (toTag === undefined && this.#aLegPending === 0) {
      this.#relayProvisional(status, reason);
      return;
    }
    void this.#queueA(async () => {
      const a = this.#a;
      if (this.#aFinal || this.ended || !a || a.res.finalResponseSent) return;
      if (toTag !== undefined && body !== undefined) {
        const sdp = await this.#ctx.media.answer({ callId: this.summary.aLeg.callId, fromTag: this.#aTag, toTag, sdp: body });
        if (this.#aFinal || a.res.finalResponseSent) return;
        await sendResponse(a.res, status, reason, { body: sdp, headers: { 'Content-Type': 'application/sdp', [HEADER_CALL_ID]: this.id } });
        if (this.#state === 'proceeding') this.#setState('early');
        this.#log.debug({ callId: this.id, status }, 'early media relayed to the caller');
      } else {
        this.#relayProvisional(status, reason);
      }
    });
  }

  #relayProvisional(status: number, reason: string): void {
    const a = this.#a;
    if (this.#aFinal || this.ended || !a || a.res.finalResponseSent) return;
    try {
      sendResponseNoWait(a.res, status, reason, { headers: { [HEADER_CALL_ID]: this.id } });
    } catch (err) {
      this.#log.warn({ callId: this.id, err: (err as Error).message, status }, 'relaying a provisional response to the caller failed');
    }
  }

  #queueA(work: () => Promise<void>): Promise<void> {
    this.#aLegPending++;
    const next = this.#aLegQueue
      .then(work)
      .catch((err: unknown) => {
        this.#log.warn({ callId: this.id, err: (err as Error).message }, 'relaying to the caller failed');
      })
      .finally(() => {
        this.#aLegPending--;
      });
    this.#aLegQueue = next;
    return next;
  }

  async #onBLegFailed(err: unknown): Promise<void> {
    const failure = sipFailureOf(err);
    if (failure) {
      this.summary.bLeg.status = failure.status;
      this.summary.bLeg.reason = failure.reason;
    }
    await this.#aLegQueue;
    if (this.#cancelRequested && !this.#noAnswer) {
      this.#log.debug({ callId: this.id, status: failure?.status }, 'call cancelled by the caller');
      await this.#finish('cancelled', this.summary.hangupBy ?? 'caller');
      return;
    }
    if (this.#noAnswer) {
      await this.#failA(480, 'No Answer');
      this.summary.outcome = 'no-answer';
      await this.#finish('failed', 'system');
      return;
    }
    if (!failure) {
      this.#log.error({ callId: this.id, err: (err as Error).message }, 'B leg could not be sent');
      await this.#failA(503, 'Service Unavailable');
      await this.#finish('failed', 'system');
      return;
    }
    // Relay the callee's failure as is, except challenges meant for us (the caller cannot answer them).
    const { status, reason } = failure.status === 401 || failure.status === 407 ? { status: 500, reason: 'Downstream Authentication Required' } : failure;
    this.#log.debug({ callId: this.id, status: failure.status, reason: failure.reason }, 'B leg failed');
    await this.#failA(status, reason);
    await this.#finish('failed', 'callee');
  }

  async #onBLegAnswered(uac: SrfDialog): Promise<void> {
    // The callee may hang up before the caller's leg is answered and the two are bridged.
    const onGone = (): void => {
      this.#calleeGoneEarly = true;
    };
    uac.once('destroy', onGone);
    if (!isConnected(uac)) this.#calleeGoneEarly = true;
    await this.#aLegQueue;
    const bTag = detached(uac.sip.remoteTag);
    const bIdentity = detached(withoutTag(uac.req?.get('To') ?? `<${this.#uriFor(this.summary.callee)}>`));
    const bLeg: Leg = { dialog: uac, tag: bTag, side: 'callee', identity: bIdentity, timer: undefined, peerHasTimer: answerHasTimer(uac) };
    const bTimerPlan = this.#answeredPlan(uac);
    this.summary.bLeg.status = 200;
    this.summary.bLeg.reason = 'OK';
    const a = this.#a;
    if (this.#cancelRequested || this.ended || !a) {
      // The callee answered as the caller's CANCEL arrived: the caller has its 487; end the callee.
      this.#log.debug({ callId: this.id }, 'callee answered after the caller cancelled: BYE to the callee');
      uac.off('destroy', onGone);
      await destroyDialog(uac, { headers: { Reason: 'SIP;cause=487;text="Request Terminated"' } }).catch(() => undefined);
      await this.#finish('cancelled', this.summary.hangupBy ?? 'caller');
      return;
    }
    let sdpForA: string;
    try {
      sdpForA = await this.#ctx.media.answer({ callId: this.summary.aLeg.callId, fromTag: this.#aTag, toTag: bTag, sdp: uac.remote.sdp });
    } catch (err) {
      this.#log.warn({ callId: this.id, err: (err as Error).message }, 'media answer failed');
      uac.off('destroy', onGone);
      await destroyDialog(uac).catch(() => undefined);
      await this.#failA(503, 'Service Unavailable', { Reason: 'Q.850;cause=47;text="media server unavailable"' });
      await this.#finish('failed', 'system');
      return;
    }
    if (this.#calleeGoneEarly) {
      this.#log.debug({ callId: this.id }, 'the callee hung up before the caller was answered');
      this.summary.hangupBy ??= 'callee';
      await this.#failA(480, 'Temporarily Unavailable');
      await this.#finish('failed', 'callee');
      return;
    }
    let uas: SrfDialog;
    try {
      uas = await this.#ctx.srf.createUAS(a.req, a.res, {
        localSdp: sdpForA,
        headers: { ...this.#aTimerHeaders, [HEADER_CALL_ID]: this.id },
      });
    } catch (err) {
      this.#log.debug({ callId: this.id, err: (err as Error).message }, 'caller gone before the answer: BYE to the callee');
      uac.off('destroy', onGone);
      await destroyDialog(uac).catch(() => undefined);
      await this.#finish(this.#cancelRequested ? 'cancelled' : 'failed', 'caller');
      return;
    }
    this.summary.aLeg.status = 200;
    this.summary.aLeg.reason = 'OK';
    this.summary.answeredAt = new Date();
    this.summary.outcome = 'answered';
    const aLeg: Leg = { dialog: uas, tag: this.#aTag, side: 'caller', identity: this.#aIdentity, timer: undefined, peerHasTimer: this.#aPeerHasTimer };
    this.#legs = [aLeg, bLeg];
    // From here on neither the caller's INVITE nor the callee's request is needed.
    this.#a = undefined;
    this.#aFinal = true;
    this.#bReq = undefined;
    uac.off('destroy', onGone);
    slimDialog(this.#ctx.srf, uas);
    slimDialog(this.#ctx.srf, uac);
    this.#setState('answered');
    this.#log.debug({ callId: this.id, bCallId: this.summary.bLeg.callId }, 'call answered');
    this.#attach(aLeg);
    this.#attach(bLeg);
    this.#startTimer(aLeg, this.#aTimerPlan);
    this.#startTimer(bLeg, bTimerPlan);
    if (this.#calleeGoneEarly || !isConnected(uac)) {
      this.#log.debug({ callId: this.id }, 'the callee hung up while the caller was being answered');
      void this.#endBridge(bLeg, 'callee');
    } else if (!isConnected(uas)) {
      // The caller's BYE came with (or right after) its ACK, before 'destroy' had a listener.
      this.#log.debug({ callId: this.id, side: 'caller' }, 'the caller hung up as the call was answered');
      void this.#endBridge(aLeg, 'caller');
    }
  }

  #onCallerCancel(): void {
    if (this.#legs || this.ended) return;
    this.#log.debug({ callId: this.id }, 'CANCEL from the caller');
    this.#cancelRequested = true;
    this.summary.hangupBy ??= 'caller';
    this.#aFinal = true;
    this.summary.aLeg.status = 487;
    this.summary.aLeg.reason = 'Request Terminated';
    if (this.#bReq) cancelRequest(this.#bReq);
  }

  /** A final failure to the caller, once. */
  async #failA(status: number, reason: string, headers: Record<string, string> = {}): Promise<void> {
    if (this.#aFinal) return;
    this.#aFinal = true;
    await this.#aLegQueue;
    const a = this.#a;
    if (!a || a.res.finalResponseSent) return;
    this.summary.aLeg.status = status;
    this.summary.aLeg.reason = reason;
    try {
      const extra: Record<string, string> = { ...headers, [HEADER_CALL_ID]: this.id };
      await sendResponse(a.res, sendable(status), reason, { headers: extra });
    } catch (err) {
      this.#log.warn({ callId: this.id, err: (err as Error).message, status }, 'could not send the final response to the caller');
    }
  }

  // ---- answered: relaying both ways --------------------------------------------------------

  #other(leg: Leg): Leg | undefined {
    if (!this.#legs) return undefined;
    const [a, b] = this.#legs;
    if (leg === a) return b;
    if (leg === b) return a;
    return undefined;
  }

  /**
   * Follows one bridged leg. A single listener serves every dialog event: the request's method
   * says which one it is (BYE for 'destroy', INVITE for 'modify', and the method itself for the
   * others), so a held call carries one closure per leg instead of one per event.
   */
  #attach(leg: Leg): void {
    const d = leg.dialog;
    const listener = (req: SrfRequest, res: SrfResponse | string | undefined): void => this.#onLegEvent(leg, req, res);
    // The typings list one overload per event; the emitter is a plain EventEmitter.
    const emitter = d as unknown as NodeJS.EventEmitter;
    for (const event of LEG_EVENTS) emitter.on(event, listener);
  }

  #onLegEvent(leg: Leg, req: SrfRequest, resOrReason: SrfResponse | string | undefined): void {
    const method = req.method;
    if (method === 'BYE' || typeof resOrReason !== 'object') {
      this.#onLegGone(leg);
      return;
    }
    const res = resOrReason;
    switch (method) {
      case 'INVITE':
        this.#peerRefreshed(leg, req);
        void this.#relayReinvite(leg, req, res);
        return;
      case 'REFER':
        this.#onRefer(leg, req, res).catch(async (err: unknown) => {
          this.#transferring = false;
          this.#log.warn({ callId: this.id, err: (err as Error).message }, 'REFER handling failed');
          if (!res.finalResponseSent) await sendResponse(res, 400, 'Bad Request').catch(() => undefined);
        });
        return;
      default:
        if (method === 'UPDATE') this.#peerRefreshed(leg, req);
        void this.#relayRequest(leg, method, req, res);
    }
  }

  // ---- session timers (RFC 4028) -------------------------------------------------------------

  /** Starts a leg's session timer once it is bridged (nothing when timers are off). */
  #startTimer(leg: Leg, plan: LegTimerPlan | undefined): void {
    leg.timer?.stop();
    if (plan === undefined || this.#state !== 'answered') {
      leg.timer = undefined;
      return;
    }
    leg.timer = new LegSessionTimer(
      plan,
      () => void this.#refresh(leg),
      () => void this.#expire(leg, 'no refresh from the party'),
    );
    this.#log.debug({ callId: this.id, side: leg.side, interval: plan.interval, refresher: plan.refresher }, 'session timer');
  }

  /** The timer of a leg we called, from its 2xx (read before slimDialog drops it). */
  #answeredPlan(dialog: SrfDialog): LegTimerPlan | undefined {
    if (this.#ctx.sessionTimer.expires === 0) return undefined;
    return planFromUacAnswer(answerHeader(dialog, 'Session-Expires') ?? answerHeader(dialog, 'x'), this.#bAsked);
  }

  /** A re-INVITE or UPDATE from the leg's party: its interval starts again, maybe renegotiated. */
  #peerRefreshed(leg: Leg, req: SrfRequest): void {
    const timer = leg.timer;
    if (!timer) return;
    timer.refreshed(planFromRefresh(timer.plan, headerOf(req, 'Session-Expires', 'x'), this.#ctx.sessionTimer.minSE, leg.peerHasTimer));
  }

  /** Session-Expires for a re-INVITE or UPDATE we send on `leg` (none when it has no timer). */
  #timerHeadersFor(leg: Leg): Record<string, string> | undefined {
    return leg.timer ? refreshHeaders(leg.timer.plan) : undefined;
  }

  /** Our refresh of a leg (we are its refresher): a re-INVITE with the SDP it already has. */
  async #refresh(leg: Leg): Promise<void> {
    const timer = leg.timer;
    if (!timer || this.ended || this.#state !== 'answered' || this.#other(leg) === undefined) return;
    const sdp = leg.dialog.local.sdp;
    try {
      if (sdp) await modifyDialog(leg.dialog, sdp, refreshHeaders(timer.plan));
      else {
        const answer = await dialogRequest(leg.dialog, { method: 'UPDATE', headers: refreshHeaders(timer.plan) });
        if (answer.status !== 200) throw Object.assign(new Error(`UPDATE answered ${answer.status}`), { status: answer.status, reason: answer.reason });
      }
      timer.refreshed();
      this.#log.debug({ callId: this.id, side: leg.side, interval: timer.plan.interval }, 'session refreshed');
    } catch (err) {
      if (this.ended || leg.timer !== timer) return;
      const status = sipFailureOf(err)?.status;
      const left = timer.msLeft;
      // 408 and 481 (or no answer at all) say the party is gone (RFC 4028 section 10); a glare
      // (491) or a passing failure is tried again while the interval lasts.
      if (status === undefined || status === 408 || status === 481 || left < 2000) {
        this.#log.info({ callId: this.id, side: leg.side, status, err: status === undefined ? (err as Error).message : undefined }, 'session refresh failed');
        await this.#expire(leg, 'refresh failed');
        return;
      }
      const wait = status === 491 ? 1000 + Math.floor(Math.random() * 2000) : Math.min(left / 2, 30_000);
      this.#log.debug({ callId: this.id, side: leg.side, status, retryMs: wait }, 'session refresh refused: trying again');
      timer.retryIn(wait);
    }
  }

  /** A leg's session expired (no refresh came, or ours failed): BYE to both with a Reason. */
  async #expire(leg: Leg, why: string): Promise<void> {
    if (this.ended || this.#state !== 'answered') return;
    this.#log.info({ callId: this.id, side: leg.side, interval: leg.timer?.plan.interval, why }, 'session timer expired: ending the call');
    await this.#endBridge(undefined, 'system', { Reason: SESSION_EXPIRED_REASON });
  }

  #stopTimers(): void {
    if (!this.#legs) return;
    for (const l of this.#legs) {
      l.timer?.stop();
      l.timer = undefined;
    }
  }

  /** The leg's dialog ended from its side (its BYE, or the engine's BYE after a lost ACK). */
  #onLegGone(leg: Leg): void {
    if (this.#other(leg) === undefined) return; // a transferor leaving after the transfer
    if (leg === this.#transferor && this.#transferring) {
      this.#log.info({ callId: this.id, side: leg.side }, 'the transferor hung up during its transfer');
      this.#transferorGone = true;
      leg.timer?.stop();
      leg.timer = undefined;
      return;
    }
    this.#log.debug({ callId: this.id, side: leg.side }, `BYE from the ${leg.side}`);
    void this.#endBridge(leg, leg.side);
  }

  async #relayReinvite(from: Leg, req: SrfRequest, res: SrfResponse): Promise<void> {
    const to = this.#other(from);
    if (!to || this.#state !== 'answered') {
      await sendResponse(res, 481, 'Call/Transaction Does Not Exist').catch(() => undefined);
      return;
    }
    const callId = this.summary.aLeg.callId;
    try {
      const timerHeaders = from.timer ? refreshAnswerHeaders(from.timer.plan, from.peerHasTimer) : {};
      if (!req.body || !/^m=/m.test(req.body)) {
        // An offerless re-INVITE (a session refresh): answer with what this party already has.
        await sendResponse(res, 200, 'OK', { body: from.dialog.local.sdp, headers: { 'Content-Type': 'application/sdp', ...timerHeaders } });
        return;
      }
      this.#log.debug({ callId: this.id, side: from.side, hold: isHold(req.body) }, isHold(req.body) ? 're-INVITE: hold' : 're-INVITE');
      const offer = await this.#ctx.media.offer({ callId, fromTag: from.tag, toTag: to.tag, sdp: req.body });
      const answer = await modifyDialog(to.dialog, offer, this.#timerHeadersFor(to));
      to.timer?.refreshed();
      const forFrom = await this.#ctx.media.answer({ callId, fromTag: from.tag, toTag: to.tag, sdp: answer });
      await sendResponse(res, 200, 'OK', { body: forFrom, headers: { 'Content-Type': 'application/sdp', ...timerHeaders } });
      // what this party now has from us: our next refresh of its leg offers it again
      from.dialog.local.sdp = forFrom;
    } catch (err) {
      const failure = sipFailureOf(err);
      this.#log.warn({ callId: this.id, side: from.side, status: failure?.status, err: failure ? undefined : (err as Error).message }, 're-INVITE failed');
      await sendResponse(res, failure?.status ?? 500, failure?.reason ?? 'Server Internal Error').catch(() => undefined);
    }
  }

  async #relayRequest(from: Leg, method: string, req: SrfRequest, res: SrfResponse): Promise<void> {
    const to = this.#other(from);
    if (!to || this.ended) {
      await sendResponse(res, 481, 'Call/Transaction Does Not Exist').catch(() => undefined);
      return;
    }
    const headers: Record<string, string> = {};
    for (const name of RELAYED_HEADERS) if (req.has(name)) headers[name] = req.get(name);
    let body = req.body || undefined;
    try {
      const sdpUpdate = method === 'UPDATE' && body !== undefined && /^m=/m.test(body);
      const callId = this.summary.aLeg.callId;
      if (sdpUpdate && body !== undefined) body = await this.#ctx.media.offer({ callId, fromTag: from.tag, toTag: to.tag, sdp: body });
      const update = method === 'UPDATE';
      if (update) Object.assign(headers, this.#timerHeadersFor(to));
      const answer = await dialogRequest(to.dialog, { method, headers, body });
      if (update && answer.status === 200) to.timer?.refreshed();
      const out: Record<string, string> = {};
      if (update && answer.status === 200 && from.timer) Object.assign(out, refreshAnswerHeaders(from.timer.plan, from.peerHasTimer));
      for (const name of RELAYED_HEADERS) if (answer.has(name)) out[name] = answer.get(name);
      let answerBody = answer.body || undefined;
      if (sdpUpdate && answer.status === 200 && answerBody !== undefined) {
        answerBody = await this.#ctx.media.answer({ callId, fromTag: from.tag, toTag: to.tag, sdp: answerBody });
      }
      this.#log.debug({ callId: this.id, method, side: from.side, type: headers['Content-Type'], status: answer.status }, 'in-dialog request relayed');
      await sendResponse(res, answer.status, answer.reason, { headers: out, body: answerBody });
    } catch (err) {
      const failure = sipFailureOf(err);
      this.#log.warn({ callId: this.id, method, err: (err as Error).message }, 'in-dialog request relay failed');
      await sendResponse(res, failure?.status ?? 500, failure?.reason ?? 'Server Internal Error').catch(() => undefined);
    }
  }

  /** REFER (blind transfer): a new B leg to the Refer-To extension; the referrer is told by NOTIFY (RFC 3515). */
  async #onRefer(referrer: Leg, req: SrfRequest, res: SrfResponse): Promise<void> {
    const transferee = this.#other(referrer);
    const referTo = req.has('Refer-To') ? req.getParsedHeader('refer-to') : undefined;
    const target = referTo ? /^sips?:([^@;>]+)@/.exec(referTo.uri)?.[1] : undefined;
    if (!transferee || this.#state !== 'answered') {
      await sendResponse(res, 481, 'Call/Transaction Does Not Exist').catch(() => undefined);
      return;
    }
    if (this.#transferring) {
      await sendResponse(res, 491, 'Request Pending').catch(() => undefined);
      return;
    }
    if (!target) {
      await sendResponse(res, 400, 'Bad Refer-To').catch(() => undefined);
      return;
    }
    if (/[?&]replaces=/i.test(referTo?.uri ?? '')) {
      // Attended transfer (Refer-To with Replaces, RFC 3891) is not implemented: refuse it rather
      // than ring the consulted party a second time.
      await sendResponse(res, 501, 'Not Implemented', { headers: { Warning: '399 b2bua "attended transfer (Replaces) not supported"' } }).catch(() => undefined);
      return;
    }
    const extension = safeDecode(target);
    if (this.#ctx.dialPlan.classify(extension) !== 'match') {
      await sendResponse(res, 403, 'Transfer Target Not Allowed').catch(() => undefined);
      return;
    }
    this.#transferring = true;
    this.#transferor = referrer;
    this.#log.info({ callId: this.id, from: referrer.side, target: extension }, 'REFER: blind transfer');
    await sendResponse(res, 202, 'Accepted').catch(() => undefined);
    const notify = (frag: string, terminated: boolean): Promise<unknown> =>
      dialogRequest(referrer.dialog, {
        method: 'NOTIFY',
        headers: {
          Event: 'refer',
          'Subscription-State': terminated ? 'terminated;reason=noresource' : 'active;expires=60',
          'Content-Type': 'message/sipfrag;version=2.0',
        },
        body: `SIP/2.0 ${frag}\r\n`,
      }).catch((err: unknown) => this.#log.debug({ callId: this.id, err: (err as Error).message }, 'NOTIFY to the transferor failed'));
    await notify('100 Trying', false);
    if (this.#state !== 'answered') {
      this.#transferring = false;
      return;
    }
    const callId = this.summary.aLeg.callId;
    let target3: SrfDialog;
    try {
      const offer = await this.#ctx.media.offer({ callId, fromTag: transferee.tag, sdp: transferee.dialog.remote.sdp });
      const extra: Record<string, string> = req.has('Referred-By') ? { 'Referred-By': req.get('Referred-By') } : {};
      this.#bReq = undefined;
      target3 = await this.#sendBLeg(extension, offer, transferee.identity, undefined, extra);
      this.#clearNoAnswerTimer();
    } catch (err) {
      this.#clearNoAnswerTimer();
      this.#transferring = false;
      const failure = sipFailureOf(err);
      this.#log.info({ callId: this.id, status: failure?.status, err: failure ? undefined : (err as Error).message }, 'transfer failed; the call stays as it was');
      if (this.#transferorGone) {
        await this.#endBridge(referrer, 'caller' === referrer.side ? 'caller' : 'callee');
        return;
      }
      await notify(failure ? `${failure.status} ${failure.reason || 'Failed'}` : '503 Service Unavailable', true);
      return;
    }
    if (this.#other(transferee) !== referrer || this.#state !== 'answered') {
      // The transferee hung up while the target was ringing.
      await destroyDialog(target3).catch(() => undefined);
      this.#transferring = false;
      return;
    }
    const newLeg: Leg = {
      dialog: target3,
      tag: detached(target3.sip.remoteTag),
      side: referrer.side,
      identity: detached(withoutTag(target3.req?.get('To') ?? '')),
      timer: undefined,
      peerHasTimer: answerHasTimer(target3),
    };
    const newLegPlan = this.#answeredPlan(target3);
    this.#bReq = undefined;
    slimDialog(this.#ctx.srf, target3);
    try {
      const forTransferee = await this.#ctx.media.answer({ callId, fromTag: transferee.tag, toTag: newLeg.tag, sdp: target3.remote.sdp });
      await modifyDialog(transferee.dialog, forTransferee, this.#timerHeadersFor(transferee));
      transferee.timer?.refreshed();
    } catch (err) {
      this.#log.warn({ callId: this.id, err: (err as Error).message }, 'updating the transferee\'s media failed');
    }
    if (this.#state !== 'answered') {
      // the call ended while the transferee's media was being updated: the target's leg too
      await destroyDialog(target3).catch(() => undefined);
      this.#transferring = false;
      return;
    }
    this.#legs = transferee === this.#legs?.[0] ? [transferee, newLeg] : [newLeg, transferee];
    // the transferor's leg leaves the call: its timer must not end the call that goes on
    referrer.timer?.stop();
    referrer.timer = undefined;
    this.summary.transfers.push(extension);
    this.#transferring = false;
    this.#transferor = undefined;
    this.#attach(newLeg);
    this.#startTimer(newLeg, newLegPlan);
    this.#log.info({ callId: this.id, target: extension }, 'transfer completed');
    if (this.#transferorGone) return;
    await notify('200 OK', true);
    // The transferor normally sends BYE now; if it does not, end its leg ourselves.
    const timers = (this.#timers ??= new Set());
    const t = setTimeout(() => {
      timers.delete(t);
      void destroyDialog(referrer.dialog).catch(() => undefined);
    }, 32_000);
    timers.add(t);
    referrer.dialog.on('destroy', () => {
      clearTimeout(t);
      timers.delete(t);
    });
  }

  /** Ends an answered call: BYE to every leg still up (but `from`, which sent its own BYE). */
  async #endBridge(from: Leg | undefined, by: HangupSide, byeHeaders?: Record<string, string>): Promise<void> {
    if (!this.#legs || this.ended || this.#state === 'ending') return;
    this.summary.hangupBy ??= by;
    this.#setState('ending');
    this.#stopTimers();
    if (this.#transferring && this.#bReq) cancelRequest(this.#bReq);
    const legs = this.#legs.filter((l) => !(l === this.#transferor && this.#transferorGone));
    await Promise.all(
      legs.filter((l) => l !== from).map((l) => destroyDialog(l.dialog, byeHeaders ? { headers: byeHeaders } : {}).catch((err: unknown) => this.#log.debug({ callId: this.id, err: (err as Error).message }, 'BYE failed'))),
    );
    await this.#finish('ended', by);
  }

  // ---- the end -----------------------------------------------------------------------------

  /** Deletes the media session, records the outcome, emits `end`. Idempotent. */
  #finish(state: 'ended' | 'failed' | 'cancelled', by: HangupSide): Promise<void> {
    this.#finishing ??= this.#doFinish(state, by);
    return this.#finishing;
  }

  async #doFinish(state: 'ended' | 'failed' | 'cancelled', by: HangupSide): Promise<void> {
    this.#logReceived();
    this.#clearNoAnswerTimer();
    this.#stopTimers();
    if (this.#timers) for (const t of this.#timers) clearTimeout(t);
    this.#timers = undefined;
    this.#a = undefined;
    this.#bReq = undefined;
    if (this.#mediaAnchored) {
      try {
        this.summary.media = await this.#ctx.media.delete({ callId: this.summary.aLeg.callId, fromTag: this.#aTag });
      } catch (err) {
        this.#log.warn({ callId: this.id, err: (err as Error).message }, 'media delete failed');
      }
    }
    const s = this.summary;
    s.hangupBy ??= by;
    const endedAt = new Date();
    s.endedAt = endedAt;
    s.outcome ??= outcomeOf(state, s.bLeg.status ?? s.aLeg.status);
    if (state === 'ended' && this.#state === 'answered') this.#setState('ending');
    this.#setState(state);
    const received = s.receivedAt.getTime();
    const firstAnswer = s.ringingAt ?? s.answeredAt;
    this.#log.info(
      {
        callId: this.id,
        aCallId: s.aLeg.callId,
        bCallId: s.bLeg.callId || undefined,
        caller: s.caller.user,
        callee: s.callee,
        outcome: s.outcome,
        hangupBy: s.hangupBy,
        aStatus: s.aLeg.status,
        bStatus: s.bLeg.status,
        setupMs: firstAnswer ? firstAnswer.getTime() - received : undefined,
        durationMs: s.answeredAt ? endedAt.getTime() - s.answeredAt.getTime() : 0,
        transfers: s.transfers.length > 0 ? s.transfers : undefined,
        media: s.media ? { callerToCallee: s.media.callerToCallee, calleeToCaller: s.media.calleeToCaller, engine: s.media.engine } : undefined,
      },
      'call ended',
    );
    this.emit('end', s);
  }
}

/** A header's value, by its full or compact name; undefined when absent. */
function headerOf(req: SrfRequest, name: string, compact?: string): string | undefined {
  if (req.has(name)) return req.get(name);
  if (compact !== undefined && req.has(compact)) return req.get(compact);
  return undefined;
}

/** The callee's 200 said it does timers (Supported or Require: timer, or a Session-Expires). */
function answerHasTimer(dialog: SrfDialog): boolean {
  return (
    supportsTimer(answerHeader(dialog, 'Supported')) ||
    supportsTimer(answerHeader(dialog, 'k')) ||
    supportsTimer(answerHeader(dialog, 'Require')) ||
    answerHeader(dialog, 'Session-Expires') !== undefined ||
    answerHeader(dialog, 'x') !== undefined
  );
}

function outcomeOf(state: 'ended' | 'failed' | 'cancelled', status: number | undefined): CallOutcome {
  if (state === 'ended') return 'answered';
  if (state === 'cancelled') return 'cancelled';
  if (status === 486 || status === 600) return 'busy';
  if (status === 408 || status === 480) return 'no-answer';
  if (status === 487) return 'cancelled';
  if (status !== undefined && status >= 400 && status < 500) return 'rejected';
  if (status === 603) return 'rejected';
  return 'failed';
}
