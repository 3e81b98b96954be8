// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the page
// reads /api/events as a byte stream and parses the framing itself (the WHATWG HTML "event stream
// interpretation": lines end in CRLF, LF or CR; a blank line dispatches; ':' starts a comment;
// fields event, data, id, retry; one space after the colon is dropped).

export class SseParser {
  #buffer = '';
  #event = '';
  #data = [];
  #sawData = false;
  #skipLf = false;
  #onEvent;
  #onComment;
  /** The last `id:` seen (kept across events, as the spec says). */
  lastEventId = '';
  /** The last valid `retry:` in milliseconds, or undefined. */
  retryMs = undefined;

  /** onEvent({event, data, id}); onComment(text) for ': ping' and the like. */
  constructor(onEvent, onComment) {
    this.#onEvent = onEvent;
    this.#onComment = onComment;
  }

  /** Feeds decoded text; complete lines are handled at once, a partial one waits for more. */
  push(chunk) {
    let text = chunk;
    // The previous chunk ended in CR: an LF opening this one is the rest of that CRLF.
    if (this.#skipLf && text.length > 0) {
      if (text.charCodeAt(0) === 10) text = text.slice(1);
      this.#skipLf = false;
    }
    this.#buffer += text;
    let start = 0;
    for (;;) {
      let end = -1;
      for (let i = start; i < this.#buffer.length; i += 1) {
        const c = this.#buffer.charCodeAt(i);
        if (c === 10 || c === 13) {
          end = i;
          break;
        }
      }
      if (end === -1) break;
      const line = this.#buffer.slice(start, end);
      if (this.#buffer.charCodeAt(end) === 13) {
        if (end + 1 < this.#buffer.length) {
          start = end + (this.#buffer.charCodeAt(end + 1) === 10 ? 2 : 1);
        } else {
          start = end + 1;
          this.#skipLf = true;
        }
      } else {
        start = end + 1;
      }
      this.#line(line);
    }
    this.#buffer = this.#buffer.slice(start);
  }

  #line(line) {
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.startsWith(':')) {
      if (this.#onComment) this.#onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.#event = value;
        break;
      case 'data':
        this.#data.push(value);
        this.#sawData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
  }

  #dispatch() {
    const event = this.#event || 'message';
    const data = this.#data.join('\n');
    const sawData = this.#sawData;
    this.#event = '';
    this.#data = [];
    this.#sawData = false;
    if (!sawData) return;
    this.#onEvent({ event, data, id: this.lastEventId });
  }
}

/**
 * A reconnecting event stream. Status goes 'connecting' -> 'open' -> ('waiting' -> 'connecting'
 * -> 'open')* -> 'closed'. Reconnects with exponential back-off and jitter (1 s doubling to
 * 30 s), and drops a connection that has been silent for idleTimeoutMs (the server pings every
 * 15 s). A 401 stops it and calls onUnauthorized(reason).
 */
export class EventStream {
  #url;
  #headers;
  #onEvent;
  #onStatus;
  #onOpen;
  #onUnauthorized;
  #minDelayMs;
  #maxDelayMs;
  #idleTimeoutMs;
  #running = false;
  #controller = null;
  #sleepTimer = null;
  #wake = null;
  #status = 'closed';

  constructor({ url, headers, onEvent, onStatus, onOpen, onUnauthorized, minDelayMs = 1000, maxDelayMs = 30000, idleTimeoutMs = 45000 }) {
    this.#url = url;
    this.#headers = headers;
    this.#onEvent = onEvent;
    this.#onStatus = onStatus ?? (() => undefined);
    this.#onOpen = onOpen ?? (() => undefined);
    this.#onUnauthorized = onUnauthorized ?? (() => undefined);
    this.#minDelayMs = minDelayMs;
    this.#maxDelayMs = maxDelayMs;
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  get status() {
    return this.#status;
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    void this.#loop();
  }

  stop() {
    this.#running = false;
    if (this.#controller) this.#controller.abort();
    if (this.#sleepTimer) clearTimeout(this.#sleepTimer);
    if (this.#wake) this.#wake();
    this.#setStatus('closed', {});
  }

  #setStatus(status, detail) {
    this.#status = status;
    this.#onStatus(status, detail);
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#sleepTimer = setTimeout(resolve, ms);
    });
  }

  async #loop() {
    let failures = 0;
    let opens = 0;
    while (this.#running) {
      this.#setStatus('connecting', { attempt: failures + 1 });
      const controller = new AbortController();
      this.#controller = controller;
      let idleTimer = null;
      const armIdle = () => {
        if (idleTimer) clearTimeout(idleTimer);
        idleTimer = setTimeout(() => controller.abort(), this.#idleTimeoutMs);
      };
      let error = '';
      let retryMs;
      try {
        const res = await fetch(this.#url, {
          headers: { Accept: 'text/event-stream', ...this.#headers() },
          signal: controller.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          let reason = 'the token was refused';
          try {
            const body = await res.json();
            if (body && typeof body.reason === 'string') reason = body.reason;
          } catch {
            // not JSON: keep the generic reason
          }
          this.#running = false;
          this.#setStatus('closed', { error: reason });
          this.#onUnauthorized(reason);
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        failures = 0;
        opens += 1;
        this.#setStatus('open', {});
        this.#onOpen({ reconnect: opens > 1 });
        const parser = new SseParser((message) => {
          try {
            this.#onEvent(message);
          } catch (err) {
            console.error('event handler failed', err);
          }
        });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        armIdle();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          armIdle();
          parser.push(value);
        }
        retryMs = parser.retryMs;
        error = 'the server closed the stream';
      } catch (err) {
        if (!this.#running) return;
        error = controller.signal.aborted ? 'no data for too long' : (err && err.message) || String(err);
      } finally {
        if (idleTimer) clearTimeout(idleTimer);
      }
      if (!this.#running) return;
      const base = Math.min(this.#maxDelayMs, Math.max(retryMs ?? this.#minDelayMs, this.#minDelayMs) * 2 ** failures);
      const delay = Math.round(base * (0.5 + Math.random() * 0.5));
      failures += 1;
      this.#setStatus('waiting', { error, retryInMs: delay });
      await this.#sleep(delay);
    }
  }
}
