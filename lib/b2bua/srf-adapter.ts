// Typed calls into drachtio-srf where its bundled typings (lib/@types) are narrower than, or
// differ from, what the runtime does. Each wrapper names the difference it covers.

import Srf from 'drachtio-srf';

export type SrfRequest = Srf.SrfRequest;
export type SrfResponse = Srf.SrfResponse;
export type SrfDialog = Srf.Dialog;
export type SipMessage = Srf.SipMessage;

export interface MessageOptions {
  headers?: Record<string, string>;
  body?: string;
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

/** Dialog#modify(sdp, opts): a re-INVITE with our SDP; resolves with the remote answer. */
export function modifyDialog(dialog: SrfDialog, sdp: string): Promise<string> {
  return dialog.modify(sdp);
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
