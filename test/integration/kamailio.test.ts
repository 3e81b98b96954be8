// The real Kamailio with kamailio/kamailio.cfg, started by lib/stack/kamailio.ts on a free port
// of 127.0.0.1, driven by SIPp: phones are SIPp instances on 127.0.0.1 (or another loopback
// address when they must not be "myself"), the engine is a SIPp bound on 127.0.0.2, the only
// address Kamailio trusts.
//
// What is checked is what the B2BUA relies on: digest authentication of REGISTER and INVITE, every
// phone INVITE relayed to the engine without the trust headers, the engine's INVITEs routed by
// location with the headers intact (404 / 480 otherwise), registrations kept across a restart,
// scanners and floods dropped while the engine never is.

import { pino } from 'pino';
import t from 'tap';
import { kamailioArgs, type KamailioOptions } from '../../lib/stack/kamailio';
import { expectSippSuccess, TRANSPORTS, type TapTest } from '../support/engine-harness';
import { ENGINE_ADDRESS, startTestKamailio, TEST_DOMAIN, type TestKamailio } from '../support/kamailio';
import { freePorts } from '../support/ports';
import { describeSipp, received, runSipp, sippHeader, startSipp, type SipTransport, type SippHandle, type SippMessage, type SippResult } from '../support/sipp';

const PASSWORD = 'correct-horse-42';
/** Trust headers a phone must never get through to the engine (compared without case). */
const TRUST_HEADERS = ['x-call-id', 'x-from-app'];

function headerNames(message: SippMessage | undefined): string[] {
  return (message?.headers ?? []).map(([name]) => name.toLowerCase());
}

/** REGISTER `extension` with Contact 127.0.0.1:contactPort through the digest challenge. */
function register(
  kam: TestKamailio,
  extension: string,
  options: { transport: SipTransport; contactPort?: number; password?: string; status?: string; localIp?: string; calls?: number; recvTimeoutMs?: number },
): Promise<SippResult> {
  return runSipp({
    scenario: 'kam-register',
    remote: kam.remote,
    transport: options.transport,
    localIp: options.localIp,
    service: extension,
    calls: options.calls,
    rate: options.calls !== undefined ? 20 : undefined,
    recvTimeoutMs: options.recvTimeoutMs,
    keys: {
      domain: TEST_DOMAIN,
      contact_host: '127.0.0.1',
      contact_port: String(options.contactPort ?? 5999),
      expires: '3600',
      status: options.status ?? '200',
    },
    extraArgs: ['-ap', options.password ?? PASSWORD],
  });
}

/** An INVITE from the engine's address with the B2BUA's trust headers (or without X-From-App). */
function engineCall(kam: TestKamailio, extension: string, transport: SipTransport, xCallId: string, withFromApp = true): Promise<SippResult> {
  return runSipp({
    scenario: 'kam-engine-call',
    remote: kam.remote,
    transport,
    localIp: ENGINE_ADDRESS,
    service: extension,
    holdMs: 100,
    keys: { x_call_id: xCallId, x_from_app: 'b2bua-test', app_header: withFromApp ? 'X-From-App' : 'X-Not-From-App' },
  });
}

/** An INVITE without credentials that must get `status`. */
function inviteStatus(kam: TestKamailio, extension: string, options: { transport: SipTransport; localIp: string; fromUser: string; status: string }): Promise<SippResult> {
  return runSipp({
    scenario: 'kam-invite-status',
    remote: kam.remote,
    transport: options.transport,
    localIp: options.localIp,
    service: extension,
    keys: { from_user: options.fromUser, domain: TEST_DOMAIN, x_from_app: 'b2bua-test', status: options.status },
  });
}

/** One OPTIONS ping to Kamailio itself, sent once; calls > 1 makes a burst at `rate` per second. */
function options(kam: TestKamailio, opts: { localIp?: string; ua?: string; maxForwards?: string; status?: string; calls?: number; rate?: number }): Promise<SippResult> {
  return runSipp({
    scenario: 'kam-options',
    remote: kam.remote,
    localIp: opts.localIp,
    calls: opts.calls,
    rate: opts.rate,
    recvTimeoutMs: 1000,
    keys: { ua: opts.ua ?? 'sipp-kam-test', max_forwards: opts.maxForwards ?? '70', status: opts.status ?? '200' },
  });
}

/** A phone: a SIPp UAS on 127.0.0.1 registered as `extension` (Contact = its port). */
async function registeredPhone(tt: TapTest, kam: TestKamailio, extension: string, transport: SipTransport): Promise<SippHandle> {
  const phone = await startSipp({ scenario: 'uas-answer', transport, timeoutSec: 30 });
  tt.teardown(() => phone.stop());
  const reg = await register(kam, extension, { transport, contactPort: phone.localPort });
  expectSippSuccess(tt, reg, 1, `REGISTER of ${extension}`);
  return phone;
}

function noAnswer(tt: TapTest, result: SippResult, what: string): void {
  tt.equal(received(result).length, 0, `${what}: no answer at all`, { sipp: describeSipp(result) });
  tt.equal(result.successful, 0, `${what}: every attempt timed out`, { sipp: describeSipp(result) });
}

t.test('kamailioArgs builds the documented command line', async (tt) => {
  const base: KamailioOptions = {
    configFile: '/etc/k.cfg',
    listen: { address: '10.0.0.5', port: 5060, advertise: '203.0.113.7:5060' },
    engine: { address: '10.0.0.6', port: 5080, transport: 'tcp' },
    dbFile: '/var/lib/k/kamailio.sqlite',
    domain: 'pbx.example.com',
    runDir: '/run/k',
    antiflood: { density: 32 },
    children: 3,
    logger: pino({ level: 'silent' }),
  };
  const args = kamailioArgs(base);
  tt.same(args, [
    '-f', '/etc/k.cfg', '-DD', '-E', '-Y', '/run/k', '-P', '/run/k/kamailio.pid', '-m', '256', '-M', '8',
    '-l', 'udp:10.0.0.5:5060/203.0.113.7:5060', '-l', 'tcp:10.0.0.5:5060/203.0.113.7:5060',
    '-A', 'DBURL="sqlite:///var/lib/k/kamailio.sqlite"', '-A', 'ENGINE_IP="10.0.0.6"',
    '-A', 'ENGINE_URI="sip:10.0.0.6:5080;transport=tcp"', '-A', 'SIP_DOMAIN="pbx.example.com"',
    '-A', 'WITH_ANTIFLOOD', '-A', 'PIKE_DENSITY=32', '-A', 'CHILDREN=3',
  ]);
  tt.same(kamailioArgs({ ...base, defines: ['WITH_DIRECT_CALLS'] }).slice(-2), ['-A', 'WITH_DIRECT_CALLS'], 'a boolean define goes last');
  tt.throws(() => kamailioArgs({ ...base, defines: ['X=1'] }), { code: 'E_KAMAILIO_OPTIONS' }, 'a define with a value is refused');
  tt.throws(() => kamailioArgs({ ...base, domain: 'a"b' }), { code: 'E_KAMAILIO_OPTIONS' }, 'a quote in a string define is refused');
  tt.throws(() => kamailioArgs({ ...base, listen: { address: '10.0.0.5', port: 70000 } }), { code: 'E_KAMAILIO_OPTIONS' }, 'a bad port is refused');
});

for (const transport of TRANSPORTS) {
  t.test(`phones and engine over ${transport}`, async (group) => {
    const kam = await startTestKamailio({ engineTransport: transport });
    group.teardown(async () => {
      await kam.close();
    });
    // Distinct extensions per transport: nothing is shared between the two groups' databases,
    // but the numbers make the logs readable.
    const ext = (n: number): string => `${transport === 'udp' ? 61 : 62}${String(n).padStart(2, '0')}`;

    group.test('REGISTER is challenged with 401, then accepted and written to SQLite', async (tt) => {
      kam.addExtension(ext(1), PASSWORD);
      const [contactPort] = await freePorts(1);
      const result = await register(kam, ext(1), { transport, contactPort });
      expectSippSuccess(tt, result);
      const challenge = received(result, { status: 401 })[0];
      tt.match(challenge && sippHeader(challenge, 'WWW-Authenticate'), /^Digest realm="127\.0\.0\.1"/, '401 carries a digest challenge for the realm');
      const info = kam.withStore((s) => s.getExtension(ext(1)));
      tt.equal(info?.registered, true, 'the store lists the extension as registered (location row written through)');
      tt.match(info?.contacts[0]?.contact ?? '', new RegExp(`^sip:${ext(1)}@127\\.0\\.0\\.1:${contactPort};transport=${transport}$`, 'i'), 'with the Contact the phone registered');
    });

    group.test('REGISTER with a wrong password is refused with 403', async (tt) => {
      kam.addExtension(ext(2), PASSWORD);
      const result = await register(kam, ext(2), { transport, password: 'wrong-password', status: '403' });
      expectSippSuccess(tt, result);
      tt.ok(received(result, { status: 401 })[0], 'challenged first');
      tt.equal(kam.withStore((s) => s.getExtension(ext(2)))?.registered, false, 'nothing registered');
    });

    group.test('an INVITE without credentials is challenged with 407', async (tt) => {
      kam.addExtension(ext(3), PASSWORD);
      const result = await inviteStatus(kam, ext(4), { transport, localIp: '127.0.0.1', fromUser: ext(3), status: '407' });
      expectSippSuccess(tt, result);
      const challenge = received(result, { status: 407 })[0];
      tt.match(challenge && sippHeader(challenge, 'Proxy-Authenticate'), /^Digest realm="127\.0\.0\.1"/, '407 carries Proxy-Authenticate');
    });

    group.test('an authenticated INVITE from a phone reaches the engine without trust headers', async (tt) => {
      kam.addExtension(ext(5), PASSWORD);
      const engine = await startSipp({ scenario: 'uas-answer', transport, localIp: ENGINE_ADDRESS, localPort: kam.enginePort, timeoutSec: 30 });
      tt.teardown(() => engine.stop());
      const caller = await runSipp({
        scenario: 'kam-uac-call',
        remote: kam.remote,
        transport,
        service: ext(6),
        holdMs: 100,
        keys: { caller: ext(5), domain: TEST_DOMAIN },
        extraArgs: ['-au', ext(5), '-ap', PASSWORD],
      });
      expectSippSuccess(tt, caller, 1, 'phone');
      const atEngine = await engine.finish(5000);
      expectSippSuccess(tt, atEngine, 1, 'engine');
      const invite = received(atEngine, { method: 'INVITE' })[0];
      const names = headerNames(invite);
      for (const h of TRUST_HEADERS) tt.notOk(names.includes(h), `the engine's INVITE has no ${h} (the phone sent one)`, { headers: names });
      tt.notOk(names.some((n) => n.startsWith('x-b2bua-')), 'nor any X-B2BUA-* header');
      tt.notOk(names.includes('proxy-authorization'), 'nor the phone\'s credentials');
      tt.equal(invite && sippHeader(invite, 'X-Test-Scenario'), 'kam-uac-call', 'other headers get through');
      tt.match(invite?.firstLine ?? '', new RegExp(`^INVITE sip:${ext(6)}@127\\.0\\.0\\.1:${kam.port} `), 'the Request-URI is the phone\'s');
      tt.match(invite && sippHeader(invite, 'Record-Route'), new RegExp(`127\\.0\\.0\\.1:${kam.port};.*lr`), 'Kamailio record-routes');
      const bye = received(atEngine, { method: 'BYE' })[0];
      tt.ok(bye, 'the BYE followed the Record-Route to the engine');
      tt.notOk(headerNames(bye).includes('x-call-id'), 'an in-dialog request loses the forged header too');
    });

    group.test('an INVITE from the engine with X-From-App reaches the registered phone, headers intact', async (tt) => {
      kam.addExtension(ext(7), PASSWORD);
      const phone = await registeredPhone(tt, kam, ext(7), transport);
      const call = await engineCall(kam, ext(7), transport, `b2bua-${transport}-7`);
      expectSippSuccess(tt, call, 1, 'engine');
      tt.notOk(received(call, { status: 407 })[0], 'the engine is not challenged');
      const atPhone = await phone.finish(5000);
      expectSippSuccess(tt, atPhone, 1, 'phone');
      const invite = received(atPhone, { method: 'INVITE' })[0];
      tt.equal(invite && sippHeader(invite, 'X-Call-ID'), `b2bua-${transport}-7`, 'X-Call-ID arrives as the engine sent it');
      tt.equal(invite && sippHeader(invite, 'X-From-App'), 'b2bua-test', 'X-From-App arrives as the engine sent it');
      tt.equal(invite && sippHeader(invite, 'X-B2BUA-Leg'), 'b', 'X-B2BUA-* headers arrive too');
      tt.match(invite?.firstLine ?? '', new RegExp(`^INVITE sip:${ext(7)}@127\\.0\\.0\\.1:${phone.localPort};transport=${transport} `, 'i'), 'sent to the registered Contact');
    });

    group.test('the engine gets 404 for an unknown extension and 480 for an unregistered one', async (tt) => {
      const unknown = await inviteStatus(kam, ext(98), { transport, localIp: ENGINE_ADDRESS, fromUser: 'engine', status: '404' });
      expectSippSuccess(tt, unknown, 1, '404 for an unknown extension');
      kam.addExtension(ext(8), PASSWORD);
      const unregistered = await inviteStatus(kam, ext(8), { transport, localIp: ENGINE_ADDRESS, fromUser: 'engine', status: '480' });
      expectSippSuccess(tt, unregistered, 1, '480 for an unregistered extension');
    });

    group.test('a CANCEL from the engine reaches the ringing phone; the 487 comes back', async (tt) => {
      kam.addExtension(ext(12), PASSWORD);
      const phone = await startSipp({ scenario: 'uas-ring', transport, timeoutSec: 30 });
      tt.teardown(() => phone.stop());
      expectSippSuccess(tt, await register(kam, ext(12), { transport, contactPort: phone.localPort }), 1, `REGISTER of ${ext(12)}`);
      const caller = await runSipp({ scenario: 'uac-cancel', remote: kam.remote, transport, localIp: ENGINE_ADDRESS, service: ext(12) });
      expectSippSuccess(tt, caller, 1, 'engine');
      expectSippSuccess(tt, await phone.finish(5000), 1, 'phone');
    });

    if (transport !== 'udp') return;

    group.test('a failure from the phone is relayed to the engine as it is', async (tt) => {
      kam.addExtension(ext(13), PASSWORD);
      const phone = await startSipp({ scenario: 'uas-reject-486', transport, timeoutSec: 30 });
      tt.teardown(() => phone.stop());
      expectSippSuccess(tt, await register(kam, ext(13), { transport, contactPort: phone.localPort }), 1, `REGISTER of ${ext(13)}`);
      const caller = await runSipp({ scenario: 'uac-reject', remote: kam.remote, transport, localIp: ENGINE_ADDRESS, service: ext(13), keys: { status: '486' } });
      expectSippSuccess(tt, caller, 1, 'engine gets the 486');
      expectSippSuccess(tt, await phone.finish(5000), 1, 'phone');
    });

    group.test('an INVITE from the engine without X-From-App is routed by location too', async (tt) => {
      kam.addExtension(ext(9), PASSWORD);
      const phone = await registeredPhone(tt, kam, ext(9), transport);
      const call = await engineCall(kam, ext(9), transport, 'no-app-header', false);
      expectSippSuccess(tt, call, 1, 'engine');
      const atPhone = await phone.finish(5000);
      expectSippSuccess(tt, atPhone, 1, 'phone');
      const invite = received(atPhone, { method: 'INVITE' })[0];
      tt.equal(invite && sippHeader(invite, 'X-Call-ID'), 'no-app-header', 'the INVITE reached the phone');
      tt.notOk(headerNames(invite).includes('x-from-app'), 'without X-From-App');
    });

    group.test('a registration survives a Kamailio restart', async (tt) => {
      kam.addExtension(ext(10), PASSWORD);
      const phone = await registeredPhone(tt, kam, ext(10), transport);
      const { before, oldPid, newPid } = await kam.restart();
      tt.equal(before.code, 0, 'SIGTERM stopped Kamailio with exit code 0', { output: kam.outputTail() });
      tt.not(newPid, oldPid, 'a new Kamailio process runs');
      const call = await engineCall(kam, ext(10), transport, 'after-restart');
      expectSippSuccess(tt, call, 1, 'engine');
      const atPhone = await phone.finish(5000);
      expectSippSuccess(tt, atPhone, 1, 'phone registered before the restart');
    });

    group.test('a binding that points at the engine is never used (482, no loop)', async (tt) => {
      kam.addExtension(ext(14), PASSWORD);
      const reg = await runSipp({
        scenario: 'kam-register',
        remote: kam.remote,
        service: ext(14),
        keys: { domain: TEST_DOMAIN, contact_host: ENGINE_ADDRESS, contact_port: String(kam.enginePort), expires: '3600', status: '200' },
        extraArgs: ['-ap', PASSWORD],
      });
      expectSippSuccess(tt, reg, 1, 'REGISTER with the engine as Contact');
      const call = await inviteStatus(kam, ext(14), { transport, localIp: ENGINE_ADDRESS, fromUser: 'engine', status: '482' });
      expectSippSuccess(tt, call, 1, 'the engine\'s INVITE gets 482');
    });

    group.test('OPTIONS to Kamailio is answered 200; Max-Forwards 0 gets 483', async (tt) => {
      expectSippSuccess(tt, await options(kam, {}), 1, 'keepalive OPTIONS');
      expectSippSuccess(tt, await options(kam, { maxForwards: '0', status: '483' }), 1, 'Max-Forwards: 0');
    });

    group.test('a scanner User-Agent gets no answer', async (tt) => {
      for (const ua of ['friendly-scanner', 'sipvicious 0.3.4', 'VaxSIPUserAgent/3.1']) {
        noAnswer(tt, await options(kam, { ua }), `User-Agent "${ua}"`);
      }
    });

    group.test('SUBSCRIBE gets 405 with Allow, without a challenge', async (tt) => {
      kam.addExtension(ext(11), PASSWORD);
      const result = await runSipp({ scenario: 'kam-subscribe', remote: kam.remote, service: ext(11), keys: { domain: TEST_DOMAIN } });
      expectSippSuccess(tt, result);
      const reply = received(result, { status: 405 })[0];
      tt.match(reply && sippHeader(reply, 'Allow'), /INVITE/, '405 lists the methods handled');
    });
  });
}

t.test('antiflood: a burst from one address is banned, the engine never is', async (tt) => {
  const kam = await startTestKamailio({ antiflood: { density: 3 } });
  tt.teardown(async () => {
    await kam.close();
  });
  // 127.0.0.1 is Kamailio's own address (never banned): the attacker is 127.0.0.3.
  const burst = await options(kam, { localIp: '127.0.0.3', calls: 30, rate: 200 });
  tt.ok(burst.failed > 0 && burst.successful < 30, `the burst was cut off (${burst.successful} answered, ${burst.failed} not)`, { sipp: describeSipp(burst) });
  const engineBurst = await options(kam, { localIp: ENGINE_ADDRESS, calls: 30, rate: 200 });
  expectSippSuccess(tt, engineBurst, 30, 'the same burst from the engine address');
  noAnswer(tt, await options(kam, { localIp: '127.0.0.3' }), 'the banned address, afterwards');
  expectSippSuccess(tt, await options(kam, { localIp: '127.0.0.4' }), 1, 'another address');
});

t.test('antiflood: repeated wrong passwords get the address banned', async (tt) => {
  const kam = await startTestKamailio({ antiflood: { density: 1000 } });
  tt.teardown(async () => {
    await kam.close();
  });
  kam.addExtension('6301', PASSWORD);
  const guesses = await register(kam, '6301', { transport: 'udp', localIp: '127.0.0.5', password: 'guess-guess', status: '403', calls: 10 });
  expectSippSuccess(tt, guesses, 10, 'ten wrong passwords, each refused with 403');
  const after = await register(kam, '6301', { transport: 'udp', localIp: '127.0.0.5', recvTimeoutMs: 1000 });
  noAnswer(tt, after, 'the eleventh attempt, even with the right password');
  expectSippSuccess(tt, await register(kam, '6301', { transport: 'udp', localIp: '127.0.0.6' }), 1, 'the right password from another address');
});
