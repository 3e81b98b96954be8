// The operator API as the page uses it: every request carries the bearer token; a 401 from any
// route hands its reason to `onUnauthorized` (the page goes back to the sign-in form).

export class ApiError extends Error {
  constructor(status, body, path) {
    const reason = body && typeof body === 'object' && typeof body.reason === 'string'
      ? body.reason
      : (typeof body === 'string' && body.trim() ? body.trim().slice(0, 200) : `HTTP ${status}`);
    super(`${path}: ${reason}`);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
    this.code = body && typeof body === 'object' && typeof body.error === 'string' ? body.error : 'http-error';
  }
}

/** Reads a response body as JSON when it is JSON, as text otherwise. */
async function readBody(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class ApiClient {
  #token = '';
  #onUnauthorized;

  constructor({ onUnauthorized }) {
    this.#onUnauthorized = onUnauthorized;
  }

  get token() {
    return this.#token;
  }

  set token(value) {
    this.#token = value ?? '';
  }

  authHeaders() {
    return { Authorization: `Bearer ${this.#token}` };
  }

  async request(path, { method = 'GET', signal } = {}) {
    let res;
    try {
      // No body and no Content-Type, even for POST: the API takes none.
      res = await fetch(path, { method, headers: { Accept: 'application/json', ...this.authHeaders() }, signal, cache: 'no-store' });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, { error: 'network', reason: `cannot reach the operator API (${err && err.message ? err.message : err})` }, path);
    }
    const body = await readBody(res);
    if (res.status === 401) {
      const error = new ApiError(401, body, path);
      this.#onUnauthorized(error.reason);
      throw error;
    }
    if (!res.ok) throw new ApiError(res.status, body, path);
    return body;
  }

  whoami() {
    return this.request('/api/whoami');
  }

  /** filters: {caller, callee, outcomes[], from, to, q}; cursor from a previous page. */
  calls(filters, { cursor, limit = 50 } = {}) {
    const params = new URLSearchParams();
    if (filters.caller) params.set('caller', filters.caller);
    if (filters.callee) params.set('callee', filters.callee);
    if (filters.outcomes && filters.outcomes.length > 0) params.set('outcome', filters.outcomes.join(','));
    if (filters.from) params.set('from', filters.from);
    if (filters.to) params.set('to', filters.to);
    if (filters.q) params.set('q', filters.q);
    params.set('limit', String(limit));
    if (cursor) params.set('cursor', cursor);
    return this.request(`/api/calls?${params}`);
  }

  liveCalls() {
    return this.request('/api/calls/live');
  }

  call(key) {
    return this.request(`/api/calls/${encodeURIComponent(key)}`);
  }

  stats({ from, to } = {}) {
    const params = new URLSearchParams();
    if (from) params.set('from', from);
    if (to) params.set('to', to);
    const query = params.toString();
    return this.request(query ? `/api/stats?${query}` : '/api/stats');
  }

  hangup(id) {
    return this.request(`/api/calls/${encodeURIComponent(id)}/hangup`, { method: 'POST' });
  }
}
