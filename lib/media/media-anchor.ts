// The media anchor the B2BUA codes against: one media session per call, driven by the SDP offers
// and answers the call carries. RtpEngineAnchor (rtpengine-anchor.ts) implements it over RTPEngine's
// NG protocol; NoMediaAnchor below is MEDIA=off.
//
// Tags, once and for all (they are RTPEngine NG semantics, and getting them wrong breaks media
// silently: measured on RTPEngine 10.5, a callee's re-INVITE answered with the initial call's tags
// left the callee receiving nothing and sent the caller its own RTP back):
//
//   callId   one id for the whole call, the same in every request (the B2BUA uses the A leg's
//            Call-ID). The anchor keeps the call on the RTPEngine that took its first offer.
//   caller   the A leg's From-tag: the fromTag of the call's first offer.
//   callee   the B leg's To-tag: the toTag of the first answer.
//
//   initial INVITE from the caller:   offer  { fromTag: caller }                 -> SDP for the B leg
//   183/200 with SDP from the callee: answer { fromTag: caller, toTag: callee }  -> SDP for the A leg
//   re-INVITE/UPDATE from the caller: offer  { fromTag: caller, toTag: callee }  -> SDP for the callee
//                       its answer:   answer { fromTag: caller, toTag: callee }  -> SDP for the caller
//   re-INVITE/UPDATE from the callee: offer  { fromTag: callee, toTag: caller }  -> SDP for the caller
//                       its answer:   answer { fromTag: callee, toTag: caller }  -> SDP for the callee
//   blind transfer of party X to a new party N (the B2BUA re-offers X's SDP towards N):
//                                     offer  { fromTag: X }                      -> SDP for N's INVITE
//                                     answer { fromTag: X, toTag: N }            -> SDP for X's re-INVITE
//   end of the call (every path):     delete { callId } (fromTag optional: the caller's by default)
//
// The rule behind the table: fromTag is always the party that made the offer being answered, and
// toTag the party answering it. An answer carries the SAME fromTag/toTag as the offer it answers;
// compared with the initial call, a re-INVITE from the callee has them swapped (callee first).
// RtpEngineAnchor refuses (MEDIA_REJECTED, nothing sent) an answer whose fromTag is not the fromTag
// of the call's latest offer.

/** An SDP offer made by party `fromTag`; `toTag` names the other party once it is known (re-offers). */
export interface MediaOfferRequest {
  callId: string;
  /** The offering party's tag: the caller's on the initial INVITE, the re-offering party's later. */
  fromTag: string;
  /** The other party's tag; absent on the initial offer (the callee is not known yet). */
  toTag?: string;
  sdp: string;
}

/** The answer of party `toTag` to the latest offer, which party `fromTag` made. */
export interface MediaAnswerRequest {
  callId: string;
  /** The OFFERER's tag: the same fromTag as the offer this answers (not the answerer's). */
  fromTag: string;
  /** The ANSWERER's tag: the callee's To-tag on the initial call, the other party on a re-offer. */
  toTag: string;
  sdp: string;
}

export interface MediaDeleteRequest {
  callId: string;
  /** A tag of the call; defaults to the caller's (the fromTag of the first offer). */
  fromTag?: string;
}

/** What one party sent through the anchor, as the media server counted and judged it. */
export interface MediaDirectionStats {
  /** RTP packets the media server received from the sending party. */
  packets: number;
  /** RTP bytes (UDP payload) received from the sending party. */
  bytes: number;
  /** Packets of this stream lost on the way to the receiver, as its RTCP reports say. */
  packetsLost?: number;
  /** Interarrival jitter at the receiver in milliseconds (RTCP reports, averaged). */
  jitterMs?: number;
  /** Mean opinion score 1.0-5.0 computed by the media server from RTCP (averaged over the call). */
  mos?: number;
}

/** Figures of a media session, returned by delete(). Optional fields are absent when unknown. */
export interface MediaQuality {
  /** What the caller (fromTag of the first offer) sent towards the callee. */
  callerToCallee: MediaDirectionStats;
  /** What the callee (every other party, after a transfer) sent towards the caller. */
  calleeToCaller: MediaDirectionStats;
  /** Lifetime of the media session, from its first offer to its deletion, in seconds. */
  durationSec?: number;
  /** The media server that held the session ("host:port"). */
  engine: string;
}

/** Requests sent to the media server and not answered yet (nor given up on). */
export interface MediaBacklog {
  /** How many. */
  readonly requests: number;
  /** How long the oldest has waited, in ms (0 when none waits). */
  readonly oldestWaitMs: number;
  /** How long the rank-th oldest (backlog()'s argument) has waited, in ms (0 when fewer wait). */
  readonly rankWaitMs: number;
}

export const NO_BACKLOG: MediaBacklog = { requests: 0, oldestWaitMs: 0, rankWaitMs: 0 };

export interface MediaAnchor {
  /** Sends an SDP offer from party fromTag through the anchor; resolves with the SDP to give the other party. */
  offer(req: MediaOfferRequest): Promise<string>;
  /** The answer from party toTag (the answerer) to an offer from fromTag; resolves with the SDP for the offerer. */
  answer(req: MediaAnswerRequest): Promise<string>;
  /**
   * Ends the media session; resolves with its figures (undefined if the anchor knew no such call).
   * Never rejects for an unknown call. It may reject (MEDIA_TIMEOUT, MEDIA_UNREACHABLE) when the
   * media server does not confirm; the session is forgotten locally either way.
   */
  delete(req: MediaDeleteRequest): Promise<MediaQuality | undefined>;
  /** Resolves when at least one media server answers a ping (for /ready). */
  ping(): Promise<void>;
  /** Number of media sessions this process holds (offer seen, not deleted). */
  readonly activeSessions: number;
  /**
   * The requests waiting for the media server now. Its replies wait in this process's queue too,
   * so a backlog that grows means this process, or the media server, no longer keeps up.
   * `rank` (default 1) picks the request whose wait is `rankWaitMs`, the oldest being 1.
   */
  backlog(rank?: number): MediaBacklog;
  /** Releases the anchor's resources; requests still waiting reject. Idempotent. */
  close(): Promise<void>;
}

export type MediaErrorCode = 'MEDIA_TIMEOUT' | 'MEDIA_UNREACHABLE' | 'MEDIA_REJECTED';

/**
 * A media request failed. MEDIA_TIMEOUT: no media server answered in time. MEDIA_UNREACHABLE: the
 * request could not be sent (or the anchor is closed). MEDIA_REJECTED: the media server refused it
 * (its error-reason is in the message), or the request was inconsistent and was not sent.
 */
export class MediaError extends Error {
  override readonly name = 'MediaError';
  readonly code: MediaErrorCode;
  /** The media server concerned ("host:port"), or "" when none was. */
  readonly engine: string;

  constructor(code: MediaErrorCode, message: string, engine = '', options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.engine = engine;
  }
}

/**
 * MEDIA=off: no anchoring. Offers and answers pass through unchanged (the phones exchange RTP
 * directly), delete resolves undefined and ping always succeeds.
 */
export class NoMediaAnchor implements MediaAnchor {
  readonly #sessions = new Set<string>();

  offer(req: MediaOfferRequest): Promise<string> {
    this.#sessions.add(req.callId);
    return Promise.resolve(req.sdp);
  }

  answer(req: MediaAnswerRequest): Promise<string> {
    return Promise.resolve(req.sdp);
  }

  delete(req: MediaDeleteRequest): Promise<MediaQuality | undefined> {
    this.#sessions.delete(req.callId);
    return Promise.resolve(undefined);
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  get activeSessions(): number {
    return this.#sessions.size;
  }

  backlog(_rank?: number): MediaBacklog {
    return NO_BACKLOG;
  }

  close(): Promise<void> {
    this.#sessions.clear();
    return Promise.resolve();
  }
}
