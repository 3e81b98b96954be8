// Typed helpers around drachtio-srf for tests. The applications under test use drachtio-srf's
// public API unmodified; these helpers only fill gaps in its bundled typings (lib/@types), which
// describe some calls more narrowly than the runtime accepts.

import Srf from 'drachtio-srf';

export type SrfRequest = Srf.SrfRequest;
export type SrfResponse = Srf.SrfResponse;
export type SrfDialog = Srf.Dialog;
export type SipMessage = Srf.SipMessage;

export interface DialogRequestOptions {
  method: string;
  headers?: Record<string, string>;
  body?: string;
}

/** dialog.request({method, headers, body}): an in-dialog request; resolves with the final response. */
export function dialogRequest(dialog: SrfDialog, options: DialogRequestOptions): Promise<SrfResponse> {
  // The typings declare the argument as a whole SrfRequest; Dialog#request reads only method, headers and body.
  const send = dialog.request as unknown as (this: SrfDialog, opts: DialogRequestOptions) => Promise<SrfResponse>;
  return send.call(dialog, options);
}

export interface ResponseOptions {
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Sends a provisional response reliably (RFC 3262) the drachtio way: `Require: 100rel` on the
 * response asks the server to add RSeq and retransmit it until the PRACK. Resolves with the
 * response as sent (echoed by the server); `onPrack` is called with the PRACK when it arrives.
 */
export function sendReliableProvisional(
  res: SrfResponse,
  status: number,
  options: ResponseOptions,
  onPrack: (prack: SrfRequest) => void,
): Promise<SipMessage> {
  const headers = { ...(options.headers ?? {}), Require: '100rel' };
  // Response#send(status, opts, callback, fnPrack): the 4-argument form is missing from the typings.
  const send = res.send as unknown as (
    this: SrfResponse,
    status: number,
    opts: ResponseOptions,
    callback: (err: unknown, msg: SipMessage) => void,
    fnPrack: (prack: SrfRequest) => void,
  ) => void;
  return new Promise<SipMessage>((resolve, reject) => {
    send.call(res, status, { headers, body: options.body }, (err, msg) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(msg);
    }, onPrack);
  });
}

/** Sends a response and resolves with it as the server sent it (the callback form of Response#send). */
export function sendResponse(res: SrfResponse, status: number, options: ResponseOptions = {}): Promise<SipMessage> {
  return new Promise<SipMessage>((resolve, reject) => {
    res.send(status, '', options, (err: unknown, msg: SipMessage) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(msg);
    });
  });
}

export interface ProxyResponseRecord {
  time: string;
  status: number;
  msg: SipMessage;
}

export interface ProxyResult {
  connected: boolean;
  finalStatus?: number;
  finalResponse?: ProxyResponseRecord;
  responses: Array<{ address: string; port: number; msgs: ProxyResponseRecord[] }>;
}

/** srf.proxyRequest(req, destination, opts) as a Promise of its result object. */
export function proxyRequest(
  srf: Srf,
  req: SrfRequest,
  destination: string | string[],
  options: Srf.ProxyRequestOptions = {},
): Promise<ProxyResult> {
  // The typings say void/string; without a callback the runtime returns a Promise of this object.
  const proxy = srf.proxyRequest as unknown as (
    this: Srf,
    req: SrfRequest,
    destination: string | string[],
    opts: Srf.ProxyRequestOptions,
  ) => Promise<ProxyResult>;
  return proxy.call(srf, req, destination, options);
}

/** The SIP status carried by a drachtio-srf SipError (createUAC / createB2BUA rejections). */
export function sipStatusOf(err: unknown): number | undefined {
  if (err !== null && typeof err === 'object' && 'status' in err) {
    const status = (err as { status: unknown }).status;
    if (typeof status === 'number') return status;
  }
  return undefined;
}

/** Registers a handler for one method (srf.options, srf.info, ... are not in the typings). */
export function onMethod(srf: Srf, method: string, handler: (req: SrfRequest, res: SrfResponse) => void): void {
  srf.use(method.toLowerCase(), (req, res) => handler(req, res));
}

/** dialog.destroy(opts): sends the BYE and resolves with it once answered. */
export function destroyDialog(dialog: SrfDialog, options: { headers?: Record<string, string> } = {}): Promise<SrfRequest> {
  // The typings declare destroy() as returning void; without a callback it returns a Promise of the BYE.
  const destroy = dialog.destroy as unknown as (this: SrfDialog, opts: { headers?: Record<string, string> }) => Promise<SrfRequest>;
  return destroy.call(dialog, options);
}
