// Typed calls into drachtio-srf where its bundled typings (lib/@types) are narrower than, or
// differ from, what the runtime does. Each wrapper names the difference it covers.

import Srf from 'drachtio-srf';
import type { Socket } from 'node:net';

export type SrfRequest = Srf.SrfRequest;
export type SrfResponse = Srf.SrfResponse;
export type SrfDialog = Srf.Dialog;
export type SipMessage = Srf.SipMessage;

export interface MessageOptions {
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Response#send without a callback: nothing waits for the server's echo of the response, so
 * drachtio-srf does not parse it (a provisional relayed to the caller needs nothing back).
 */
export function sendResponseNoWait(res: SrfResponse, status: number, reason: string | undefined, options: MessageOptions = {}): void {
  res.send(status, reason ?? '', options);
}

/** Response#send(status, reason, opts, callback) as a Promise of the response as sent. */
export function sendResponse(res: SrfResponse, status: number, reason: string | undefined, options: MessageOptions = {}): Promise<SipMessage> {
  return new Promise<SipMessage>((resolve, reject) => {
    res.send(status, reason ?? '', options, (err: unknown, msg: SipMessage) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(msg);
    });
  });
}

/** Dialog#request({method, headers, body}): the typings want a whole SrfRequest; the runtime reads these three. */
export function dialogRequest(dialog: SrfDialog, options: { method: string } & MessageOptions): Promise<SrfResponse> {
  const send = dialog.request as unknown as (this: SrfDialog, opts: { method: string } & MessageOptions) => Promise<SrfResponse>;
  return send.call(dialog, options);
}

/** Dialog#destroy(opts): without a callback the runtime returns a Promise of the BYE (typed void). */
export function destroyDialog(dialog: SrfDialog, options: { headers?: Record<string, string> } = {}): Promise<SrfRequest> {
  const destroy = dialog.destroy as unknown as (this: SrfDialog, opts: { headers?: Record<string, string> }) => Promise<SrfRequest>;
  return destroy.call(dialog, options);
}

/**
 * Dialog#modify(sdp, opts): a re-INVITE with our SDP; resolves with the remote answer. The
 * typings omit opts; the runtime sends opts.headers (and adds our Contact when they lack one).
 */
export async function modifyDialog(dialog: SrfDialog, sdp: string, headers?: Record<string, string>): Promise<string> {
  const modify = dialog.modify as unknown as (this: SrfDialog, sdp: string, opts?: { headers: Record<string, string> }) => Promise<string>;
  try {
    return await (headers === undefined ? modify.call(dialog, sdp) : modify.call(dialog, sdp, { headers: { ...headers } }));
  } catch (err) {
    if (sipFailureOf(err) !== undefined) releaseReinvite(dialog);
    throw err;
  }
}

/** drachtio-srf's queue of re-INVITEs of one dialog (lib/dialog.js 5.0.x, not in its typings). */
interface ReinviteQueue {
  _reinvitesInProgress?: { count: number; admitOne: Array<() => void> };
}

/**
 * Dialog#modify lets one re-INVITE out at a time, but when one is answered with a failure
 * (488, 491, 408, ...) drachtio-srf 5.0.x rejects without leaving the queue: every later modify()
 * on that dialog would wait for ever. This does what its success path does: leave, and admit the
 * next one.
 */
function releaseReinvite(dialog: SrfDialog): void {
  const q = (dialog as unknown as ReinviteQueue)._reinvitesInProgress;
  if (!q || q.count <= 0) return;
  q.count--;
  const next = q.admitOne.shift();
  if (next) setImmediate(next);
}

/**
 * A header of the final response a drachtio-srf SipError came from (createUAC sets `err.res`;
 * Dialog#modify does not), e.g. the Min-SE of a 422.
 */
export function failureHeader(err: unknown, name: string): string | undefined {
  return err !== null && typeof err === 'object' && 'res' in err ? responseHeader((err as { res?: unknown }).res, name) : undefined;
}

/** A header of a drachtio-srf response object that may be absent or slimmed; a detached copy. */
function responseHeader(res: unknown, name: string): string | undefined {
  const r = res as { has?: (n: string) => boolean; get?: (n: string) => string } | undefined;
  if (typeof r?.has !== 'function' || typeof r.get !== 'function' || !r.has(name)) return undefined;
  return detached(r.get(name));
}

/**
 * A header of the 200 that answered our INVITE, read from a UAC dialog (drachtio-srf keeps it as
 * `dialog.res`, missing from its typings). Read it before slimDialog, which drops that response.
 */
export function answerHeader(dialog: SrfDialog, name: string): string | undefined {
  return responseHeader((dialog as unknown as { res?: unknown }).res, name);
}

/** Request#cancel(): the callback is optional at runtime. */
export function cancelRequest(req: SrfRequest, headers?: Record<string, string>): void {
  const cancel = req.cancel as unknown as (this: SrfRequest, opts?: { headers?: Record<string, string> }, cb?: (err: unknown) => void) => void;
  cancel.call(req, headers ? { headers } : {}, () => undefined);
}

export interface UacCallbacks {
  /** The INVITE as sent (the runtime calls cbRequest(err, req); the typings say cbRequest(req)). */
  onRequest: (req: SrfRequest) => void;
  onProvisional: (res: SrfResponse) => void;
}

export interface UacOptions extends MessageOptions {
  localSdp?: string;
  proxy?: string;
}

/** Srf#createUAC(uri, opts, {cbRequest, cbProvisional}). Rejects with a SipError for a non-2xx final. */
export function createUac(srf: Srf, uri: string, options: UacOptions, callbacks: UacCallbacks): Promise<SrfDialog> {
  const progress = {
    cbRequest: (err: unknown, req: SrfRequest): void => {
      if (!err && req) callbacks.onRequest(req);
    },
    cbProvisional: callbacks.onProvisional,
  };
  const create = srf.createUAC as unknown as (
    this: Srf,
    uri: string,
    opts: Srf.CreateUACOptions,
    progress: { cbRequest: (err: unknown, req: SrfRequest) => void; cbProvisional: (res: SrfResponse) => void },
  ) => Promise<SrfDialog>;
  return create.call(srf, uri, { headers: options.headers, localSdp: options.localSdp, proxy: options.proxy }, progress);
}

/** The SIP status and reason of a drachtio-srf SipError (createUAC rejections); undefined for other errors. */
export function sipFailureOf(err: unknown): { status: number; reason: string } | undefined {
  if (err !== null && typeof err === 'object' && 'status' in err) {
    const { status, reason } = err as { status: unknown; reason?: unknown };
    if (typeof status === 'number') return { status, reason: typeof reason === 'string' ? reason : '' };
  }
  return undefined;
}

/** The tag parameter of a From or To header value. */
export function tagOf(headerValue: string): string | undefined {
  const m = /;\s*tag=([^;>\s,]+)/i.exec(headerValue.replace(/<[^>]*>/, '<>'));
  return m ? m[1] : undefined;
}

/** A From/To header value without its tag parameter (the URI's own parameters are kept). */
export function withoutTag(headerValue: string): string {
  const close = headerValue.lastIndexOf('>');
  const head = close >= 0 ? headerValue.slice(0, close + 1) : '';
  const tail = close >= 0 ? headerValue.slice(close + 1) : headerValue;
  return head + tail.replace(/;\s*tag=[^;\s,]*/i, '');
}

/**
 * False once drachtio-srf has seen the dialog end (a BYE received or sent). Its 'destroy' event
 * fires only once, possibly before a listener could be attached (a BYE read in the same chunk as
 * the ACK that confirmed the dialog), so callers check this after attaching.
 */
export function isConnected(dialog: SrfDialog): boolean {
  // `connected` is set by drachtio-srf's Dialog at runtime but missing from its typings.
  return (dialog as unknown as { connected?: boolean }).connected !== false;
}

/**
 * A copy of `s` that shares no memory with the string it was cut from. drachtio-srf's header
 * values, tags and bodies are slices of the whole wire frame they arrived in (V8 keeps a substring
 * as a view on its parent); a call that keeps one such value for its whole life keeps the frame.
 */
export function detached(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/** The parts of drachtio-srf's Dialog (lib/dialog.js, 5.0.x) that slimDialog rewrites. */
interface DialogInternals {
  req: { method: string; socket: unknown };
  res: { stackDialogId: string };
  readonly id: string;
  sip: { callId: string; localTag: string; remoteTag: string };
  local: { uri: string; sdp: string | undefined; contact: string | undefined };
  remote: { uri: string; sdp: string | undefined };
}

/** Srf's dialog registry (public methods of the Srf class, missing from its typings). */
interface DialogRegistry {
  findDialogById(id: string): unknown;
  addDialog(dialog: unknown): void;
  removeDialog(dialog: unknown): void;
}

/**
 * Lets an established INVITE dialog drop the SIP messages it was made from. drachtio-srf's Dialog
 * keeps `req` and `res` (the INVITE and its 200, parsed, with their wire frames) for its whole
 * life, yet after its constructor an INVITE dialog reads only `req.method` (dialogType),
 * `req.socket` and `res.stackDialogId` (its id); everything else it needs is copied into `sip`,
 * `local` and `remote` at construction. Those stay, as copies that do not pin the frames; `req`
 * and `res` become objects holding just the three fields read. The registry key (the dialog id,
 * itself a slice of a frame) is replaced by its copy the same way. Call once the dialog is set
 * up and its req/res have been read for anything else needed.
 */
export function slimDialog(srf: Srf, dialog: SrfDialog): void {
  const d = dialog as unknown as DialogInternals;
  const registry = srf as unknown as DialogRegistry;
  const oldId = d.id;
  const registered = registry.findDialogById(oldId) === dialog;
  if (registered) registry.removeDialog(dialog);
  d.req = { method: d.req.method, socket: d.req.socket };
  d.res = { stackDialogId: detached(oldId) };
  d.sip = { callId: detached(d.sip.callId), localTag: detached(d.sip.localTag), remoteTag: detached(d.sip.remoteTag) };
  const copy = (s: string | undefined): string | undefined => (typeof s === 'string' ? detached(s) : s);
  d.local = { uri: detached(d.local.uri), sdp: copy(d.local.sdp), contact: copy(d.local.contact) };
  d.remote = { uri: detached(d.remote.uri), sdp: copy(d.remote.sdp) };
  if (registered) registry.addDialog(dialog);
}

const coalescing = new WeakSet<Socket>();

function uncork(socket: Socket): void {
  socket.uncork();
}

/**
 * Makes what the application writes to the drachtio server while handling one chunk read from
 * it leave in one write(2). drachtio-srf writes each message with its own socket.write; a BYE
 * received, for instance, is answered (200) and relayed (BYE to the other leg) in one go, and
 * each write costs a system call here and a wake-up in the server. The socket is corked when a
 * chunk arrives (before drachtio-srf reads it) and uncorked on the next tick, once the chunk's
 * synchronous handling is done; the bytes and their order are unchanged. Idempotent per socket.
 */
export function coalesceWrites(socket: Socket | undefined): void {
  if (!socket || coalescing.has(socket) || typeof socket.cork !== 'function') return;
  coalescing.add(socket);
  socket.prependListener('data', () => {
    socket.cork();
    process.nextTick(uncork, socket);
  });
}

/** The socket to the drachtio server a request arrived on (set by drachtio-srf, not in its typings). */
export function socketOf(req: SrfRequest): Socket | undefined {
  return (req as unknown as { socket?: Socket }).socket;
}
