import { SipRequest } from '../message/sip-message';
import { parseCSeq } from '../message/cseq';

/**
 * A request derived from an INVITE we sent, as RFC 3261 builds both the ACK for a non-2xx final
 * response (17.1.1.3) and the CANCEL (9.1): same Request-URI, top Via, Route set, From, Call-ID
 * and CSeq number, with the given method and To.
 */
export function deriveFromInvite(inv: SipRequest, method: 'ACK' | 'CANCEL', to: string): SipRequest {
  const req = new SipRequest(method, inv.uri);
  const via = inv.getAll('via')[0];
  if (via !== undefined) req.append('Via', via);
  for (const r of inv.getAll('route')) req.append('Route', r);
  req.append('Max-Forwards', '70');
  req.append('From', inv.get('from') ?? '');
  req.append('To', to);
  req.append('Call-ID', inv.callId);
  req.append('CSeq', `${parseCSeq(inv.get('cseq') ?? '')?.seq ?? 1} ${method}`);
  return req;
}
