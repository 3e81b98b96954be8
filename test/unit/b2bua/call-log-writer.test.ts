// The call-log writer: the record built from a call's summary, writes at every state change in
// order, batched (a call's changes inside one window written once, one batch in flight at a time,
// early when many wait, everything at shutdown), the final record with both legs' messages after
// the grace period, crash recovery, and store failures that never reach the call. The store is
// the real SQLite one in a temp dir; the B2BUA service and the engine's capture are stand-ins (no
// SIP in a unit test).

import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import type { B2buaService } from '../../../lib/b2bua/b2bua-service';
import { CallLogWriter, recordOf } from '../../../lib/b2bua/call-log-writer';
import type { CallSummary } from '../../../lib/b2bua/call-session';
import type { CaptureSource } from '../../../lib/b2bua/engine-capture';
import type { CallLogBatch, CallRecord, CallStore, StoredSipMessage } from '../../../lib/call-log/call-record';
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

/** A real store whose write() calls are recorded, and can be held back to keep a batch in flight. */
class SpyStore {
  readonly batches: CallLogBatch[] = [];
  readonly events = new EventEmitter<{ write: [CallLogBatch]; written: [CallLogBatch]; staged: [readonly CallRecord[]] }>();
  readonly stages: Array<readonly CallRecord[]> = [];
  inFlight = 0;
  maxInFlight = 0;
  #held: Promise<void> | undefined;
  #release: (() => void) | undefined;
  readonly store: CallStore;

  constructor(real: CallStore) {
    this.store = new Proxy(real, {
      get: (target, prop, receiver) => {
        if (prop === 'stage') {
          return async (records: readonly CallRecord[]): Promise<void> => {
            this.stages.push(records);
            await target.stage(records);
            this.events.emit('staged', records);
          };
        }
        if (prop !== 'write') {
          const value: unknown = Reflect.get(target, prop, receiver);
          // Methods run on the store itself (its #private fields are not on the proxy).
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        }
        return async (batch: CallLogBatch): Promise<void> => {
          this.batches.push(batch);
          this.inFlight += 1;
          this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
          this.events.emit('write', batch);
          try {
            if (this.#held) await this.#held;
            await target.write(batch);
          } finally {
            this.inFlight -= 1;
          }
          this.events.emit('written', batch);
        };
      },
    });
  }

  /** Resolves with the batch of the next write() call, when it starts or once it is written. */
  async nextWrite(when: 'write' | 'written' = 'write'): Promise<CallLogBatch> {
    const [batch] = (await once(this.events, when)) as [CallLogBatch];
    return batch;
  }

  /** Resolves with the records of the next stage() call, once staged. */
  async nextStage(): Promise<readonly CallRecord[]> {
    const [records] = (await once(this.events, 'staged')) as [readonly CallRecord[]];
    return records;
  }

  hold(): void {
    this.#held = new Promise((resolve) => (this.#release = resolve));
  }

  release(): void {
    this.#held = undefined;
    this.#release?.();
  }
}

interface SetupOptions {
  graceMs?: number;
  flushMs?: number;
  flushPending?: number;
}

function setup(
  tt: TapTest,
  options: SetupOptions = {},
): { store: CallStore; spy: SpyStore; writer: CallLogWriter; service: EventEmitter; capture: FakeCapture } {
  const dir = mkdtempSync(join(tmpdir(), 'call-log-writer-'));
  const real = SqliteCallStore.open(join(dir, 'calls.db'));
  tt.teardown(async () => {
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const spy = new SpyStore(real);
  const capture = new FakeCapture();
  const writer = new CallLogWriter({
    store: spy.store,
    capture,
    captureGraceMs: options.graceMs ?? 0,
    instance: 'b2bua-1',
    logger: pino({ level: 'silent' }),
    flushMs: options.flushMs,
    flushPending: options.flushPending,
  });
  const service = new EventEmitter();
  // The writer only listens to 'session' and 'call-end'; a full B2buaService needs an SRF.
  writer.attach(service as unknown as B2buaService);
  return { store: real, spy, writer, service, capture };
}

/** Takes a session through ringing and answer to its end, as CallSession reports it. */
function answerAndEnd(service: EventEmitter, session: FakeSession, ms = 0): void {
  session.summary.bLeg.callId = `b-${session.summary.id}`;
  session.summary.bCallIds.push(session.summary.bLeg.callId);
  session.set('proceeding');
  session.summary.ringingAt = at(ms + 100);
  session.set('early');
  session.summary.answeredAt = at(ms + 500);
  session.set('answered');
  session.set('ending');
  session.summary.endedAt = at(ms + 5_500);
  session.summary.outcome = 'answered';
  session.summary.hangupBy = 'caller';
  session.set('ended');
  service.emit('call-end', session.summary);
}

/** One turn of the event loop (the writer's early writes start on the next one). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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

t.test('a failing store is logged and counted per record and capture, never thrown at the call', async (tt) => {
  for (const how of ['rejects', 'throws'] as const) {
    const failing = {
      kind: 'sqlite',
      write: how === 'rejects' ? () => Promise.reject(new Error('disk full')) : () => { throw new Error('disk full'); },
    } as unknown as CallStore; // only write is reached in this test
    const logged: Array<{ msg?: string; records?: number; captures?: number; err?: string }> = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(JSON.parse(line) as (typeof logged)[number]) });
    const writer = new CallLogWriter({ store: failing, capture: new FakeCapture(), captureGraceMs: 0, instance: 'x', logger });
    const service = new EventEmitter();
    writer.attach(service as unknown as B2buaService);
    const session = new FakeSession(summary(`c20-${how}`));
    service.emit('session', session);
    session.set('proceeding');
    await writer.flush();
    tt.equal(writer.writeErrors, 1, `${how}: the call's one pending record is counted`);
    tt.match(logged, [{ msg: 'call log write failed', records: 1, captures: 0, err: 'disk full' }], `${how}: and logged`);
    const finals: CallRecord[] = [];
    writer.on('final', (r) => finals.push(r));
    answerAndEnd(service, session);
    await writer.flush();
    tt.equal(writer.writeErrors, 3, `${how}: then its end record and its capture`);
    tt.equal(finals.length, 1, `${how}: the final event still comes`);
  }
});

t.test('batching: a call\'s changes inside one window are written once, with its latest state', async (tt) => {
  const { store, spy, writer, service } = setup(tt, { flushMs: 3_600_000 });
  const updates: string[] = [];
  writer.on('update', (r) => updates.push(r.state));
  const session = new FakeSession(summary('c40'));
  service.emit('session', session);
  session.summary.bLeg.callId = 'b-c40';
  session.summary.bCallIds.push('b-c40');
  session.set('proceeding');
  session.summary.ringingAt = at(100);
  session.set('early');
  session.summary.endedAt = at(900);
  session.summary.outcome = 'busy';
  session.summary.bLeg.status = 486;
  session.set('failed');
  service.emit('call-end', session.summary);
  tt.same(updates, ['received', 'proceeding', 'early', 'failed', 'failed'], 'every change is an update event at once');
  await nextTurn();
  tt.equal(spy.batches.length, 0, 'nothing written inside the window');
  await writer.flush();
  tt.equal(spy.batches.length, 1, 'one write');
  const [batch] = spy.batches;
  tt.equal(batch?.records.length, 1, 'holding the call once');
  tt.match(batch?.records[0], { id: 'c40', state: 'failed', outcome: 'busy', ringingAt: at(100), bStatus: 486 }, 'in its latest state');
  tt.same(batch?.messages.map((m) => [m.callId, m.messages.length]), [['c40', 3]], 'with its messages (read at shutdown)');
  tt.match(await store.get('c40'), { state: 'failed', billableSec: 0 });
  tt.equal((await store.messages('c40')).length, 3);
});

t.test('batching: an answer is staged at the next turn; a crash then still finds it', async (tt) => {
  const { store, spy, writer, service } = setup(tt, { flushMs: 3_600_000 });
  service.emit('session', new FakeSession(summary('c44')));
  const answered = new FakeSession(summary('c45'));
  service.emit('session', answered);
  answered.summary.bLeg.callId = 'b-c45';
  answered.set('proceeding');
  const staged = spy.nextStage();
  answered.summary.answeredAt = at(600);
  answered.set('answered');
  tt.match(await staged, [{ id: 'c45', state: 'answered', answeredAt: at(600), bCallId: 'b-c45' }], 'the answered call alone, with its answer');
  tt.equal(spy.batches.length, 0, 'nothing written: the window is still open');
  // What the B2BUA restarted after a crash would do now.
  tt.same(await store.interruptUnfinished('b2bua-1', at(9_000)), ['c45'], 'recovery finds the answered call');
  tt.match(await store.get('c45'), { answeredAt: at(600), outcome: 'interrupted', state: 'ended', billableSec: 9 }, 'with its answer time');
  tt.equal(await store.get('c44'), undefined, 'the call only received was not staged');
  await writer.flush();
  tt.equal(spy.batches.length, 1, 'the window\'s write still carries both');
  tt.same(spy.batches[0]?.records.map((r) => r.id).sort(), ['c44', 'c45']);
});

t.test('batching: a window\'s changes are written when it closes, without flush()', async (tt) => {
  const { store, spy, service } = setup(tt, { flushMs: 20 });
  const written = spy.nextWrite('written');
  service.emit('session', new FakeSession(summary('c41')));
  service.emit('session', new FakeSession(summary('c42')));
  tt.equal(spy.batches.length, 0, 'not at once');
  const batch = await written;
  tt.same(batch.records.map((r) => r.id), ['c41', 'c42'], 'both calls in one batch');
  tt.equal((await store.get('c41'))?.state, 'received', 'stored');
  tt.equal((await store.get('c42'))?.state, 'received');
});

t.test('batching: one batch in flight at a time; a later state is never overtaken by an earlier one', async (tt) => {
  const { store, spy, writer, service } = setup(tt, { flushMs: 0 });
  spy.hold();
  const session = new FakeSession(summary('c43'));
  const first = spy.nextWrite();
  service.emit('session', session);
  tt.equal((await first).records[0]?.state, 'received', 'the first batch: received');
  // While it is held in the store, the call goes on.
  session.summary.bLeg.callId = 'b-c43';
  session.set('proceeding');
  session.summary.answeredAt = at(400);
  session.set('answered');
  await nextTurn();
  await nextTurn();
  tt.equal(spy.batches.length, 1, 'no second batch while the first is in flight');
  const second = spy.nextWrite();
  spy.release();
  tt.match((await second).records, [{ id: 'c43', state: 'answered', bCallId: 'b-c43' }], 'then the latest state, after it');
  tt.equal(spy.maxInFlight, 1, 'never two at once');
  await writer.flush();
  tt.match(await store.get('c43'), { state: 'answered', answeredAt: at(400) }, 'the store holds the later state');
});

t.test('batching: many pending calls are written at once, without waiting for the window', async (tt) => {
  const { spy, service } = setup(tt, { flushMs: 3_600_000, flushPending: 5 });
  for (let i = 0; i < 4; i += 1) service.emit('session', new FakeSession(summary(`c5${i}`)));
  await nextTurn();
  tt.equal(spy.batches.length, 0, 'four wait for the window');
  const written = spy.nextWrite();
  service.emit('session', new FakeSession(summary('c54')));
  const batch = await written;
  tt.equal(batch.records.length, 5, 'the fifth triggers a write of all five');
});

t.test('batching: flush() at shutdown writes every pending change and reads the captures still in their grace', async (tt) => {
  const { store, spy, writer, service, capture } = setup(tt, { flushMs: 3_600_000, graceMs: 3_600_000 });
  const finals: string[] = [];
  writer.on('final', (r) => finals.push(r.id));
  const ended = new FakeSession(summary('c60'));
  service.emit('session', ended);
  answerAndEnd(service, ended);
  const live = new FakeSession(summary('c61'));
  service.emit('session', live);
  live.summary.answeredAt = at(700);
  live.set('proceeding');
  live.set('answered');
  await writer.flush();
  tt.equal(capture.asked.length, 2, 'the ended call\'s capture read without waiting for its grace');
  tt.match(await store.get('c60'), { state: 'ended', outcome: 'answered' });
  tt.equal((await store.messages('c60')).length, 3, 'with its messages');
  tt.match(await store.get('c61'), { state: 'answered', answeredAt: at(700), outcome: null }, 'the live call in its latest state');
  tt.same(finals, ['c60'], 'the ended call\'s final event');
  const batches = spy.batches.length;
  await writer.flush();
  tt.equal(spy.batches.length, batches, 'a second flush has nothing to write');
});

t.test('a capture stored once: recover() after the messages are in does not double them', async (tt) => {
  const { store, writer, service } = setup(tt, { flushMs: 0 });
  const session = new FakeSession(summary('c70'));
  service.emit('session', session);
  session.summary.bLeg.callId = 'b-c70';
  session.summary.answeredAt = at(300);
  session.set('proceeding');
  session.set('answered');
  await writer.flush();
  await store.write({ records: [], messages: [{ callId: 'c70', messages: [{ leg: 'a', at: at(1), dir: 'in', transport: 'udp', peer: 'p', local: 'l', text: 'earlier' }] }] });
  tt.same(await writer.recover(), ['c70'], 'the open call is closed');
  tt.same((await store.messages('c70')).map((m) => m.text), ['earlier'], 'the messages already stored are kept, not doubled');
});

t.test('a flush window or threshold that makes no sense is refused naming it', async (tt) => {
  const base = { store: undefined, capture: undefined, captureGraceMs: 0, instance: 'x', logger: pino({ level: 'silent' }) };
  tt.throws(() => new CallLogWriter({ ...base, flushMs: -1 }), /flushMs must be a number of milliseconds >= 0, got -1/);
  tt.throws(() => new CallLogWriter({ ...base, flushMs: Number.NaN }), /flushMs/);
  tt.throws(() => new CallLogWriter({ ...base, flushPending: 0 }), /flushPending must be an integer >= 1, got 0/);
  tt.throws(() => new CallLogWriter({ ...base, flushPending: 2.5 }), /flushPending/);
  tt.doesNotThrow(() => new CallLogWriter({ ...base, flushMs: 0, flushPending: 1 }));
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
