// The call-log writer: the record built from a call's summary, writes at every state change in
// order, the final record with both legs' messages after the grace period, crash recovery, and
// store failures that never reach the call. The store is the real SQLite one in a temp dir; the
// B2BUA service and the engine's capture are stand-ins (no SIP in a unit test).

import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import type { B2buaService } from '../../../lib/b2bua/b2bua-service';
import { CallLogWriter, recordOf } from '../../../lib/b2bua/call-log-writer';
import type { CallSummary } from '../../../lib/b2bua/call-session';
import type { CaptureSource } from '../../../lib/b2bua/engine-capture';
import type { CallRecord, CallStore, StoredSipMessage } from '../../../lib/call-log/call-record';
import { SqliteCallStore } from '../../../lib/call-log/sqlite-store';
import type { TapTest } from '../../support/engine-harness';

const T0 = new Date('2026-11-21T10:14:00.000Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);

function summary(id: string, over: Partial<CallSummary> = {}): CallSummary {
  return {
    id,
    instance: 'b2bua-1',
    caller: { user: '6001', displayName: 'Alice', address: '192.0.2.10', port: 5060 },
    callee: '6002',
    aLeg: { callId: `a-${id}`, status: undefined, reason: undefined },
    bLeg: { callId: '', status: undefined, reason: undefined },
    state: 'received',
    receivedAt: T0,
    ringingAt: undefined,
    answeredAt: undefined,
    endedAt: undefined,
    outcome: undefined,
    hangupBy: undefined,
    media: undefined,
    transfers: [],
    bCallIds: [],
    ...over,
  };
}

t.test('recordOf: post-dial delay, duration, billable seconds rounded up, media', async (tt) => {
  const s = summary('c1', {
    state: 'ended',
    bLeg: { callId: 'b-c1', status: 200, reason: 'OK' },
    aLeg: { callId: 'a-c1', status: 200, reason: 'OK' },
    ringingAt: at(180),
    answeredAt: at(2_000),
    endedAt: at(62_001),
    outcome: 'answered',
    hangupBy: 'callee',
    media: {
      callerToCallee: { packets: 3000, bytes: 480_000, packetsLost: 2, jitterMs: 1.5, mos: 4.3 },
      calleeToCaller: { packets: 2990, bytes: 478_400 },
      engine: '127.0.0.1:22222',
    },
  });
  const r = recordOf(s, at(70_000));
  tt.equal(r.postDialDelayMs, 180);
  tt.equal(r.durationSec, 62.001);
  tt.equal(r.billableSec, 61, '60.001 s answered is billed as 61');
  tt.equal(r.bCallId, 'b-c1');
  tt.same(r.media?.calleeToCaller, { packets: 2990, bytes: 478_400, packetsLost: null, jitterMs: null, mos: null });
  tt.equal(r.media?.callerToCallee.mos, 4.3);
  tt.equal(r.callerName, 'Alice');

  const busy = recordOf(summary('c2', { state: 'failed', endedAt: at(900), outcome: 'busy', bLeg: { callId: 'b', status: 486, reason: 'Busy Here' } }));
  tt.equal(busy.postDialDelayMs, 900, 'no ringing: PDD runs to the final failure');
  tt.equal(busy.billableSec, 0);
  const live = recordOf(summary('c3'));
  tt.match(live, { bCallId: null, postDialDelayMs: null, durationSec: null, billableSec: null, outcome: null });
});

class FakeSession extends EventEmitter {
  constructor(readonly summary: CallSummary) {
    super();
  }
  set(state: CallSummary['state']): void {
    this.summary.state = state;
    this.emit('state', state);
  }
}

class FakeCapture implements CaptureSource {
  readonly asked: string[] = [];
  async messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean }> {
    this.asked.push(callId);
    const m = (ms: number, text: string): StoredSipMessage => ({ leg, at: at(ms), dir: 'in', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text });
    return { messages: leg === 'a' ? [m(0, 'INVITE a'), m(30, 'BYE a')] : [m(10, 'INVITE b')], truncated: false };
  }
}

function setup(tt: TapTest, graceMs = 0): { store: CallStore; writer: CallLogWriter; service: EventEmitter; capture: FakeCapture } {
  const dir = mkdtempSync(join(tmpdir(), 'call-log-writer-'));
  const store = SqliteCallStore.open(join(dir, 'calls.db'));
  tt.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const capture = new FakeCapture();
  const writer = new CallLogWriter({ store, capture, captureGraceMs: graceMs, instance: 'b2bua-1', logger: pino({ level: 'silent' }) });
  const service = new EventEmitter();
  // The writer only listens to 'session' and 'call-end'; a full B2buaService needs an SRF.
  writer.attach(service as unknown as B2buaService);
  return { store, writer, service, capture };
}

t.test('written at the first INVITE, at each state change in order, final with both legs\' messages', async (tt) => {
  const { store, writer, service, capture } = setup(tt);
  const session = new FakeSession(summary('c10'));
  service.emit('session', session);
  await writer.flush();
  tt.equal((await store.get('c10'))?.state, 'received', 'the record exists from the first INVITE');
  session.summary.bLeg.callId = 'b-c10';
  session.summary.bCallIds.push('b-c10');
  session.set('proceeding');
  session.summary.ringingAt = at(100);
  session.set('early');
  session.summary.answeredAt = at(500);
  session.set('answered');
  const finals: CallRecord[] = [];
  writer.on('final', (r) => finals.push(r));
  session.summary.endedAt = at(5_500);
  session.summary.outcome = 'answered';
  session.summary.hangupBy = 'caller';
  session.set('ended');
  service.emit('call-end', session.summary);
  await writer.flush();
  const r = await store.get('c10');
  tt.match(r, { state: 'ended', outcome: 'answered', hangupBy: 'caller', billableSec: 5, bCallId: 'b-c10' }, 'the last write wins');
  tt.equal(finals.length, 1, 'one final event');
  tt.same(capture.asked.sort(), ['a-c10', 'b-c10'], 'both legs read from the capture');
  tt.same((await store.messages('c10')).map((m) => m.text), ['INVITE a', 'INVITE b', 'BYE a'], 'merged in time order');
});

t.test('recover: open records of this instance become interrupted, others untouched', async (tt) => {
  const { store, writer } = setup(tt);
  await store.upsert(recordOf(summary('mine', { state: 'answered', answeredAt: at(300) })));
  await store.upsert(recordOf(summary('other', { instance: 'b2bua-2' })));
  await store.upsert(recordOf(summary('done', { state: 'ended', endedAt: at(900), outcome: 'answered' })));
  tt.same(await writer.recover(), ['mine']);
  tt.equal((await store.get('mine'))?.outcome, 'interrupted');
  tt.ok((await store.get('mine'))?.endedAt, 'closed');
  tt.equal((await store.messages('mine')).length, 2, 'what the engine still held of its messages was stored');
  tt.equal((await store.get('other'))?.outcome, null, 'another instance\'s call is its own business');
  tt.same(await writer.recover(), [], 'idempotent');
});

t.test('a failing store is logged and counted, never thrown at the call', async (tt) => {
  const failing = {
    kind: 'sqlite',
    upsert: () => Promise.reject(new Error('disk full')),
  } as unknown as CallStore; // only upsert is reached in this test
  const writer = new CallLogWriter({ store: failing, capture: undefined, captureGraceMs: 0, instance: 'x', logger: pino({ level: 'silent' }) });
  const service = new EventEmitter();
  writer.attach(service as unknown as B2buaService);
  const session = new FakeSession(summary('c20'));
  service.emit('session', session);
  session.set('proceeding');
  await writer.flush();
  tt.equal(writer.writeErrors, 2);
});

t.test('call log off: events still flow, the final one at once', async (tt) => {
  const writer = new CallLogWriter({ store: undefined, capture: undefined, captureGraceMs: 10_000, instance: 'x', logger: pino({ level: 'silent' }) });
  const service = new EventEmitter();
  writer.attach(service as unknown as B2buaService);
  const updates: string[] = [];
  writer.on('update', (r) => updates.push(r.state));
  const final = new Promise<CallRecord>((resolve) => writer.once('final', resolve));
  const session = new FakeSession(summary('c30'));
  service.emit('session', session);
  session.summary.outcome = 'cancelled';
  session.summary.endedAt = at(50);
  session.set('cancelled');
  service.emit('call-end', session.summary);
  tt.equal((await final).outcome, 'cancelled');
  tt.same(updates, ['received', 'cancelled', 'cancelled']);
});
