import { SipRequest, SipResponse } from '../../../../lib/engine/message/sip-message';
import type { TransactionContext, Transaction } from '../../../../lib/engine/transaction/transaction';
import { DEFAULT_TIMERS } from '../../../../lib/engine/transaction/timers';
import { FakeClock } from '../../../support/fake-clock';

export function request(method: string): SipRequest {
  const r = new SipRequest(method, 'sip:bob@127.0.0.1:5090');
  r.append('Via', 'SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKtest1;rport');
  r.append('Route', '<sip:127.0.0.1:5070;lr>');
  r.append('Max-Forwards', '70');
  r.append('From', '<sip:alice@127.0.0.1>;tag=a1');
  r.append('To', '<sip:bob@127.0.0.1>');
  r.append('Call-ID', 'call-1');
  r.append('CSeq', `7 ${method}`);
  return r;
}

export function response(req: SipRequest, status: number, toTag = 'b1'): SipResponse {
  const r = new SipResponse(status, 'X');
  for (const h of req.headers) if (h.key !== 'route' && h.key !== 'max-forwards') r.headers.push({ ...h });
  if (status > 100) r.set('To', `${req.get('to')};tag=${toTag}`);
  return r;
}

export function context(reliable = false): { clock: FakeClock; ctx: TransactionContext; ended: Transaction[] } {
  const clock = new FakeClock();
  const ended: Transaction[] = [];
  return { clock, ended, ctx: { clock, timers: DEFAULT_TIMERS, reliable, onTerminated: (t) => ended.push(t) } };
}
