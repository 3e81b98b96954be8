import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { B2buaService } from '../b2bua/b2bua-service';
import { recordOf, type CallLogWriter } from '../b2bua/call-log-writer';
import type { OverloadGuard } from '../b2bua/overload';
import { CALL_OUTCOMES } from '../call-log/call-record';
import {
  MediaError,
  type MediaAnchor,
  type MediaAnswerRequest,
  type MediaBacklog,
  type MediaDeleteRequest,
  type MediaOfferRequest,
  type MediaQuality,
} from '../media/media-anchor';

/**
 * The B2BUA's Prometheus metrics (prom-client, one registry per process):
 *   b2bua_calls_total{outcome}             calls ended, by outcome
 *   b2bua_calls_refused_total{reason}      INVITEs refused at admission
 *   b2bua_active_calls                     calls in progress
 *   b2bua_peak_calls                       most calls in progress at once since start
 *   b2bua_call_setup_seconds               INVITE to ringing/answer/failure (post-dial delay)
 *   b2bua_rtpengine_errors_total{op,code}  RTPEngine requests that failed
 *   b2bua_call_log_write_errors_total      call-log writes that failed
 *   b2bua_media_requests_waiting           requests to the media server not answered yet
 *   b2bua_media_oldest_wait_seconds        how long the oldest of them has waited
 *   b2bua_overloaded                       1 while new calls are refused for overload (OVERLOAD_MEDIA_*)
 * plus Node's process metrics with the b2bua_ prefix.
 */
export class B2buaMetrics {
  readonly registry = new Registry();
  readonly rtpengineErrors: Counter<'op' | 'code'>;
  #peak = 0;

  constructor(service: B2buaService, callLog: CallLogWriter, media?: MediaAnchor, overload?: OverloadGuard) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'b2bua_' });
    const calls = new Counter({ name: 'b2bua_calls_total', help: 'Calls ended, by outcome', labelNames: ['outcome'], registers: [r] });
    for (const o of CALL_OUTCOMES) calls.inc({ outcome: o }, 0);
    const refused = new Counter({ name: 'b2bua_calls_refused_total', help: 'INVITEs refused at admission, by reason', labelNames: ['reason'], registers: [r] });
    new Gauge({
      name: 'b2bua_active_calls',
      help: 'Calls in progress',
      registers: [r],
      collect() {
        this.set(service.sessions.size);
      },
    });
    const peakOf = (): number => this.#peak;
    new Gauge({
      name: 'b2bua_peak_calls',
      help: 'Most calls in progress at once since the process started',
      registers: [r],
      collect() {
        this.set(peakOf());
      },
    });
    const setup = new Histogram({
      name: 'b2bua_call_setup_seconds',
      help: 'Post-dial delay: the caller\'s INVITE to the first ringing, answer or failure',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [r],
    });
    this.rtpengineErrors = new Counter({ name: 'b2bua_rtpengine_errors_total', help: 'RTPEngine requests that failed, by operation and error code', labelNames: ['op', 'code'], registers: [r] });
    new Counter({
      name: 'b2bua_call_log_write_errors_total',
      help: 'Call-log writes that failed',
      registers: [r],
      collect() {
        this.reset();
        this.inc(callLog.writeErrors);
      },
    });

    if (media) {
      new Gauge({
        name: 'b2bua_media_requests_waiting',
        help: 'Requests to the media server (RTPEngine) sent and not answered yet',
        registers: [r],
        collect() {
          this.set(media.backlog().requests);
        },
      });
      new Gauge({
        name: 'b2bua_media_oldest_wait_seconds',
        help: 'How long the oldest request to the media server not answered yet has waited',
        registers: [r],
        collect() {
          this.set(media.backlog().oldestWaitMs / 1000);
        },
      });
    }
    if (overload) {
      new Gauge({
        name: 'b2bua_overloaded',
        help: 'Whether new calls are refused because the media server\'s replies queue (1) or not (0)',
        registers: [r],
        collect() {
          this.set(overload.overloaded ? 1 : 0);
        },
      });
    }

    service.on('session', () => {
      this.#peak = Math.max(this.#peak, service.sessions.size);
    });
    service.on('refused', (why) => refused.inc({ reason: why }));
    // Once per call, at its end. (The call log's 'update' events carry the outcome from the end
    // on, but a call that ends sends more than one: counting those counted calls twice.)
    service.on('call-end', (summary) => {
      const record = recordOf(summary);
      if (record.outcome === null) return;
      calls.inc({ outcome: record.outcome });
      if (record.postDialDelayMs !== null) setup.observe(record.postDialDelayMs / 1000);
    });
  }

  /** Most calls in progress at once since start. */
  get peak(): number {
    return this.#peak;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A MediaAnchor that counts its failures in b2bua_rtpengine_errors_total. */
export class MeteredMediaAnchor implements MediaAnchor {
  #errors: Counter<'op' | 'code'> | undefined;

  constructor(readonly inner: MediaAnchor) {}

  /** Starts counting into the metrics (created after the anchor, which the service needs first). */
  meter(errors: Counter<'op' | 'code'>): void {
    this.#errors = errors;
  }

  #failed(op: string, err: unknown): never {
    this.#errors?.inc({ op, code: err instanceof MediaError ? err.code : 'UNKNOWN' });
    throw err;
  }

  // One handler per operation, made once (not a closure per request: three requests per call).
  readonly #offerFailed = (err: unknown): never => this.#failed('offer', err);
  readonly #answerFailed = (err: unknown): never => this.#failed('answer', err);
  readonly #deleteFailed = (err: unknown): never => this.#failed('delete', err);

  offer(req: MediaOfferRequest): Promise<string> {
    return this.inner.offer(req).catch(this.#offerFailed);
  }

  answer(req: MediaAnswerRequest): Promise<string> {
    return this.inner.answer(req).catch(this.#answerFailed);
  }

  delete(req: MediaDeleteRequest): Promise<MediaQuality | undefined> {
    return this.inner.delete(req).catch(this.#deleteFailed);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  get activeSessions(): number {
    return this.inner.activeSessions;
  }

  backlog(rank?: number): MediaBacklog {
    return this.inner.backlog(rank);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
