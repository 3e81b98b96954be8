import t from 'tap';
import { loadStackConfig } from '../../../lib/config/stack-config';
import { rtpEngineInstances } from '../../../lib/stack/stack';

t.test('defaults: one RTPEngine at notice level, Kamailio with 256 MB and the cfg defaults', async (tt) => {
  const c = loadStackConfig({}, '/tmp');
  tt.equal(c.rtpengine.instances, 1);
  tt.equal(c.rtpengine.logLevel, 5);
  tt.same(c.kamailio, { sharedMemoryMb: 256, children: undefined, debugLevel: undefined });
  tt.same(rtpEngineInstances(c), [{ name: 'rtpengine', ngPort: 22222, portMin: 30000, portMax: 40000 - 1 }], 'one instance takes the whole range of whole pairs');
});

t.test('several RTPEngines get consecutive NG ports and disjoint even-aligned shares of the range', async (tt) => {
  const c = loadStackConfig({ RTPENGINE_INSTANCES: '3', RTPENGINE_PORT_MIN: '20001', RTPENGINE_PORT_MAX: '60999', RTPENGINE_NG_PORT: '23000' }, '/tmp');
  const r = rtpEngineInstances(c);
  tt.same(
    r.map((i) => i.name),
    ['rtpengine', 'rtpengine-2', 'rtpengine-3'],
  );
  tt.same(
    r.map((i) => i.ngPort),
    [23000, 23001, 23002],
  );
  for (const [k, i] of r.entries()) {
    tt.equal(i.portMin % 2, 0, `instance ${k + 1} starts on an even (RTP) port`);
    tt.equal((i.portMax - i.portMin + 1) % 2, 0, `instance ${k + 1} holds whole RTP/RTCP pairs`);
    tt.ok(i.portMin >= 20001 && i.portMax <= 60999, `instance ${k + 1} stays inside the range`);
    const next = r[k + 1];
    if (next) tt.ok(next.portMin > i.portMax, `instance ${k + 1} and ${k + 2} do not overlap`);
  }
  const ports = r.reduce((a, i) => a + i.portMax - i.portMin + 1, 0);
  tt.ok(ports >= 40_000 - 6, `10,000 calls' worth of ports (4 each) are shared out: ${ports}`);
  tt.same(
    rtpEngineInstances({ ...c, rtpengine: { ...c.rtpengine, ngPorts: [1, 2, 3] } }).map((i) => i.ngPort),
    [1, 2, 3],
    'explicit NG ports win',
  );
  tt.throws(() => rtpEngineInstances({ ...c, rtpengine: { ...c.rtpengine, ngPorts: [1] } }), /ngPorts lists 1 ports for 3 instances/);
});

t.test('bad settings stop start-up naming the setting', async (tt) => {
  tt.throws(() => loadStackConfig({ RTPENGINE_INSTANCES: '0' }, '/tmp'), /RTPENGINE_INSTANCES/);
  tt.throws(() => loadStackConfig({ RTPENGINE_INSTANCES: 'two' }, '/tmp'), /RTPENGINE_INSTANCES/);
  tt.throws(() => loadStackConfig({ RTPENGINE_INSTANCES: '16', RTPENGINE_PORT_MIN: '30000', RTPENGINE_PORT_MAX: '30100' }, '/tmp'), /RTPENGINE_INSTANCES=16 leaves fewer than 16 ports/);
  tt.throws(() => loadStackConfig({ RTPENGINE_LOG_LEVEL: '9' }, '/tmp'), /RTPENGINE_LOG_LEVEL/);
  tt.throws(() => loadStackConfig({ KAMAILIO_SHM_MB: '8' }, '/tmp'), /KAMAILIO_SHM_MB/);
  tt.throws(() => loadStackConfig({ KAMAILIO_CHILDREN: '0' }, '/tmp'), /KAMAILIO_CHILDREN/);
  tt.throws(() => loadStackConfig({ KAMAILIO_DEBUG_LEVEL: '4' }, '/tmp'), /KAMAILIO_DEBUG_LEVEL/);
  tt.equal(loadStackConfig({ KAMAILIO_DEBUG_LEVEL: '1', KAMAILIO_CHILDREN: '8' }, '/tmp').kamailio?.debugLevel, 1);
});
