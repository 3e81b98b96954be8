import { detach } from './message/sip-message';

/**
 * Engine counters: messages in and out by method and by status, rejected input, and gauges read
 * from the layers when asked. Exposed as JSON (/status) and Prometheus text (/metrics).
 */
export class EngineStats {
  readonly requestsIn = new Map<string, number>();
  readonly requestsOut = new Map<string, number>();
  /** by status code */
  readonly responsesIn = new Map<number, number>();
  readonly responsesOut = new Map<number, number>();
  /** parse failures, oversized messages, stalled or garbage TCP peers */
  rejected = 0;
  /** wire messages exchanged with applications */
  wireIn = 0;
  wireOut = 0;
  readonly startedAt = Date.now();

  count<K extends string | number>(map: Map<K, number>, key: K): void {
    const n = map.get(key);
    // the first key is kept by the map: a method name is a slice of its message, so copy it
    if (n === undefined) map.set(typeof key === 'string' ? (detach(key) as K) : key, 1);
    else map.set(key, n + 1);
  }
}

export interface EngineGauges {
  transactions: number;
  serverTransactions: number;
  clientTransactions: number;
  transactionsCreated: number;
  dialogs: number;
  dialogsCreated: number;
  applications: number;
  tcpConnections: number;
  proxyOperations: number;
}

export function statusJson(s: EngineStats, g: EngineGauges): Record<string, unknown> {
  return {
    uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
    ...g,
    rejected: s.rejected,
    wire: { in: s.wireIn, out: s.wireOut },
    requestsIn: Object.fromEntries(s.requestsIn),
    requestsOut: Object.fromEntries(s.requestsOut),
    responsesIn: Object.fromEntries(s.responsesIn),
    responsesOut: Object.fromEntries(s.responsesOut),
  };
}

export function prometheusText(s: EngineStats, g: EngineGauges): string {
  const out: string[] = [];
  const gauge = (name: string, help: string, v: number): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${v}`);
  };
  const counter = (name: string, help: string, label: string, m: Map<string | number, number>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (const [k, v] of m) out.push(`${name}{${label}="${k}"} ${v}`);
  };
  gauge('sip_engine_transactions', 'Live SIP transactions', g.transactions);
  gauge('sip_engine_dialogs', 'Live SIP dialogs', g.dialogs);
  gauge('sip_engine_applications', 'Authenticated applications connected', g.applications);
  gauge('sip_engine_tcp_connections', 'Open SIP TCP connections', g.tcpConnections);
  out.push('# HELP sip_engine_transactions_created_total Transactions created', '# TYPE sip_engine_transactions_created_total counter', `sip_engine_transactions_created_total ${g.transactionsCreated}`);
  out.push('# HELP sip_engine_dialogs_created_total Dialogs created', '# TYPE sip_engine_dialogs_created_total counter', `sip_engine_dialogs_created_total ${g.dialogsCreated}`);
  out.push('# HELP sip_engine_rejected_total Rejected input (parse errors, oversized, stalled peers)', '# TYPE sip_engine_rejected_total counter', `sip_engine_rejected_total ${s.rejected}`);
  counter('sip_engine_requests_received_total', 'SIP requests received', 'method', s.requestsIn);
  counter('sip_engine_requests_sent_total', 'SIP requests sent', 'method', s.requestsOut);
  counter('sip_engine_responses_received_total', 'SIP responses received', 'status', s.responsesIn);
  counter('sip_engine_responses_sent_total', 'SIP responses sent', 'status', s.responsesOut);
  return out.join('\n') + '\n';
}
