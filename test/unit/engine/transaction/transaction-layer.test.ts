// The transaction registry: matching keys (RFC 3261 17.1.3, 17.2.3), merged requests (8.2.2.2)
// and the remnants that stand in for answered transactions until Timer L, J or M.
import t from 'tap';
import { Remnant, TransactionLayer, clientKey, mergeKeyOf, serverKey } from '../../../../lib/engine/transaction/transaction-layer';
import { ServerInviteTransaction } from '../../../../lib/engine/transaction/server-invite-transaction';
import { ClientInviteTransaction } from '../../../../lib/engine/transaction/client-invite-transaction';
import { FakeClock } from '../../../support/fake-clock';
import { DEFAULT_TIMERS } from '../../../../lib/engine/transaction/timers';
import type { TransactionContext } from '../../../../lib/engine/transaction/transaction';
import { request, response } from './helpers';

class TestRemnant extends Remnant {
  ended = 0;
  constructor(
    readonly of: 'ist' | 'nist' | 'ict',
    id: string,
    key: string,
    mergeKey?: string,
  ) {
    super(id, key, mergeKey);
  }

  override expired(): void {
    this.ended++;
  }
}

function setup(): { clock: FakeClock; layer: TransactionLayer; ctx: TransactionContext } {
  const clock = new FakeClock();
  const layer = new TransactionLayer(clock);
  const ctx: TransactionContext = { clock, timers: DEFAULT_TIMERS, reliable: false, onTerminated: (tx) => layer.remove(tx) };
  return { clock, layer, ctx };
}

t.test('RFC 3261 17.2.3 / 17.1.3: keys', async (tt) => {
  const inv = request('INVITE');
  tt.equal(serverKey(inv), 'z9hG4bKtest1|127.0.0.1:5080|INVITE');
  const ack = request('ACK');
  tt.equal(serverKey(ack), 'z9hG4bKtest1|127.0.0.1:5080|INVITE', 'an ACK matches its INVITE');
  tt.equal(serverKey(request('CANCEL'), 'INVITE'), 'z9hG4bKtest1|127.0.0.1:5080|INVITE', 'a CANCEL finds the INVITE it cancels');
  tt.equal(clientKey(response(inv, 180)), 'z9hG4bKtest1|INVITE');
  tt.equal(mergeKeyOf(inv, 'a1', undefined), 'a1|call-1|7 INVITE');
  tt.equal(mergeKeyOf(inv, 'a1', 'b1'), undefined, 'only requests outside a dialog');
  tt.equal(mergeKeyOf(ack, 'a1', undefined), undefined, 'not for ACK');
});

t.test('RFC 6026: an answered INVITE transaction leaves a remnant that keeps matching until its time is up', async (tt) => {
  const { clock, layer, ctx } = setup();
  const req = request('INVITE');
  const tx = new ServerInviteTransaction('id-1', serverKey(req)!, req, ctx, () => undefined);
  const mk = mergeKeyOf(req, 'a1', undefined);
  layer.addServer(tx, mk);
  tx.respond(response(req, 200));
  tt.equal(tx.state, 'accepted');

  const r = new TestRemnant('ist', tx.id, tx.key, tx.mergeKey);
  layer.retire(tx, r, 32000);
  tt.ok(tx.terminated, 'the transaction itself is ended (its timers cleared)');
  tt.equal(layer.findServer(tx.key), r, 'a retransmitted INVITE matches the remnant');
  tt.equal(layer.byId('id-1'), r, 'so does its id');
  tt.equal(layer.size, 1, 'it counts as a live transaction');
  tt.ok(layer.isMerged(mk, 'another-key'), 'merged-request detection still sees the INVITE (8.2.2.2)');
  tt.notOk(layer.isMerged(mk, tx.key), 'but not against itself');

  clock.tick(31000);
  tt.equal(layer.findServer(tx.key), r, 'still there before its time');
  clock.tick(2000);
  tt.equal(layer.findServer(tx.key), undefined, 'dropped once its time is up');
  tt.equal(layer.byId('id-1'), undefined);
  tt.equal(layer.size, 0);
  tt.notOk(layer.isMerged(mk, 'another-key'));
  tt.equal(r.ended, 1, 'told once');
});

t.test('RFC 6026 7.2: an accepted INVITE client transaction leaves a remnant for 2xx retransmissions', async (tt) => {
  const { clock, layer, ctx } = setup();
  const req = request('INVITE');
  const tx = new ClientInviteTransaction('c-1', clientKey(req)!, req, ctx, () => undefined, { onResponse: () => undefined, onTimeout: () => undefined });
  layer.addClient(tx);
  tx.start();
  tx.receiveResponse(response(req, 200));
  const r = new TestRemnant('ict', tx.id, tx.key);
  layer.retire(tx, r, 32000);
  tt.equal(layer.findClient(clientKey(response(req, 200))!), r, 'a retransmitted 2xx matches the remnant');
  tt.equal(layer.clientCount, 1);
  tt.equal(clock.pending > 0, true, 'one sweep is scheduled');
  clock.tick(33000);
  tt.equal(layer.findClient(tx.key), undefined);
  tt.equal(r.ended, 1);
  tt.equal(clock.pending, 0, 'nothing left scheduled once all remnants are gone');
});

t.test('remnants end in order, in batches; destroyAll drops them', async (tt) => {
  const { clock, layer } = setup();
  const ctx: TransactionContext = { clock, timers: DEFAULT_TIMERS, reliable: false, onTerminated: (tx) => layer.remove(tx) };
  const made: TestRemnant[] = [];
  for (let i = 0; i < 5; i++) {
    const req = request('INVITE');
    const tx = new ServerInviteTransaction(`id-${i}`, `key-${i}`, req, ctx, () => undefined);
    layer.addServer(tx, undefined);
    tx.respond(response(req, 200));
    const r = new TestRemnant('ist', tx.id, tx.key);
    layer.retire(tx, r, 32000);
    made.push(r);
    clock.tick(100);
  }
  clock.tick(32000 - 500 + 1000);
  tt.same(made.map((r) => r.ended), [1, 1, 1, 1, 1], 'all ended within a sweep of their time');
  const req = request('INVITE');
  const tx = new ServerInviteTransaction('id-x', 'key-x', req, ctx, () => undefined);
  layer.addServer(tx, undefined);
  tx.respond(response(req, 200));
  layer.retire(tx, new TestRemnant('ist', tx.id, tx.key), 32000);
  layer.destroyAll();
  tt.equal(layer.size, 0);
  tt.equal(layer.findServer('key-x'), undefined);
  tt.equal(clock.pending, 0, 'the sweep is cancelled');
});
