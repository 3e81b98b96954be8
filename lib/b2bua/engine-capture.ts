import type { StoredSipMessage } from '../call-log/call-record';

/** A call's SIP messages as the engine captured them (its /capture/<Call-ID> endpoint). */
export interface CaptureSource {
  messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean } | undefined>;
}

interface CapturedJson {
  messages?: Array<{ t?: unknown; dir?: unknown; transport?: unknown; peer?: unknown; local?: unknown; text?: unknown }>;
  truncated?: unknown;
}

/**
 * Reads the engine's per-call SIP capture over its loopback status endpoint. A real
 * drachtio-server has no such endpoint: leave ENGINE_CAPTURE_URL unset there (no ladders).
 */
export class EngineCapture implements CaptureSource {
  constructor(
    readonly baseUrl: string,
    readonly timeoutMs = 2000,
  ) {}

  async messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean } | undefined> {
    const res = await fetch(`${this.baseUrl}/capture/${encodeURIComponent(callId)}`, { signal: AbortSignal.timeout(this.timeoutMs) });
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`engine capture answered ${res.status}`);
    const body = (await res.json()) as CapturedJson;
    const messages: StoredSipMessage[] = [];
    for (const m of body.messages ?? []) {
      if (typeof m.t !== 'number' || typeof m.text !== 'string') continue;
      messages.push({
        leg,
        at: new Date(m.t),
        dir: m.dir === 'out' ? 'out' : 'in',
        transport: String(m.transport ?? ''),
        peer: String(m.peer ?? ''),
        local: String(m.local ?? ''),
        text: m.text,
      });
    }
    return { messages, truncated: body.truncated === true };
  }
}

/** Both legs' messages (every B leg, after transfers) merged in time order. */
export async function callMessages(
  source: CaptureSource,
  aCallId: string,
  bCallIds: readonly string[],
): Promise<{ messages: StoredSipMessage[]; truncated: boolean }> {
  const parts = await Promise.all([source.messages(aCallId, 'a'), ...bCallIds.map((id) => source.messages(id, 'b'))]);
  const messages: StoredSipMessage[] = [];
  let truncated = false;
  for (const p of parts) {
    if (!p) continue;
    messages.push(...p.messages);
    truncated ||= p.truncated;
  }
  // Stable: messages with the same millisecond keep their capture order within a leg.
  messages.sort((x, y) => x.at.getTime() - y.at.getTime());
  return { messages, truncated };
}
