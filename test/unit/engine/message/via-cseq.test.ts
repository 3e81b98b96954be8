// Via (RFC 3261 section 20.42) and CSeq (RFC 3261 section 20.16).
import t from 'tap';
import { formatVia, isValidVia, parseVia, parseViaHead } from '../../../../lib/engine/message/via';
import { formatCSeq, parseCSeq } from '../../../../lib/engine/message/cseq';

t.test('RFC 3261 section 20.42: Via components', async (tt) => {
  const v = parseVia('SIP/2.0/UDP pc33.atlanta.example.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5070')!;
  tt.equal(v.protocol, 'SIP/2.0');
  tt.equal(v.transport, 'UDP');
  tt.equal(v.host, 'pc33.atlanta.example.com');
  tt.equal(v.port, 5066);
  tt.same([...v.params], [['branch', 'z9hG4bK776asdhds'], ['received', '192.0.2.1'], ['rport', '5070']]);

  const lws = parseVia('sip / 2.0 / tcp   host.example.com : 5060 ; Branch = z9hG4bKx ; rport')!;
  tt.equal(lws.protocol, 'SIP/2.0', 'LWS around the slashes (RFC 4475 section 3.1.1.1)');
  tt.equal(lws.transport, 'TCP', 'transport upper-cased');
  tt.equal(lws.port, 5060, 'LWS around the colon');
  tt.equal(lws.params.get('branch'), 'z9hG4bKx');
  tt.equal(lws.params.get('rport'), null, 'rport without a value (RFC 3581)');

  const v6 = parseVia('SIP/2.0/TLS [2001:db8::9:1]:5061;branch=z9hG4bKy;received=2001:db8::9:255')!;
  tt.equal(v6.host, '[2001:db8::9:1]');
  tt.equal(v6.port, 5061);
  tt.equal(v6.params.get('received'), '2001:db8::9:255', 'IPv6 received without brackets (RFC 5118)');

  tt.equal(parseVia('SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK;maddr=x;ttl=16')!.transport, 'WSS');
  tt.equal(parseVia('SIP/2.0/UDP h;p="quoted;value"')!.params.get('p'), '"quoted;value"');
});

t.test('RFC 4475 section 3.1.2.1: malformed Via values', async (tt) => {
  for (const s of [
    '', 'SIP/2.0/UDP', 'SIP/2.0 UDP host', 'SIP/2.0/UDPhost', 'SIP/2.0/UDP 192.0.2.15;;', 'SIP/2.0/UDP h;branch=',
    'SIP/2.0/UDP h:', 'SIP/2.0/UDP h:70000', 'SIP/2.0/UDP h junk', 'SIP/2.0/UDP [::1', 'SIP//UDP h', 'SIP/2.0/UDP h;=x',
  ]) {
    tt.equal(parseVia(s), undefined, JSON.stringify(s));
    tt.notOk(isValidVia(s), JSON.stringify(s));
  }
  const head = parseViaHead('SIP/2.0/UDP 192.0.2.15;;');
  tt.same(head, { protocol: 'SIP/2.0', transport: 'UDP', host: '192.0.2.15' }, 'the head alone still routes a 400');
  tt.same(parseViaHead('SIP/7.0/TCP h:5070;branch=x'), { protocol: 'SIP/7.0', transport: 'TCP', host: 'h', port: 5070 });
  tt.equal(parseViaHead('garbage'), undefined);
});

t.test('RFC 3261 section 20.42: formatVia', async (tt) => {
  const s = 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport;received=192.0.2.2';
  tt.equal(formatVia(parseVia(s)!), s);
  const v = parseVia('SIP/2.0/TCP h;branch=z9hG4bK2')!;
  v.params.set('received', '192.0.2.9');
  v.params.set('rport', '5070');
  tt.equal(formatVia(v), 'SIP/2.0/TCP h;branch=z9hG4bK2;received=192.0.2.9;rport=5070');
});

t.test('RFC 3261 section 20.16: CSeq', async (tt) => {
  tt.same(parseCSeq('4711 INVITE'), { seq: 4711, method: 'INVITE' });
  tt.same(parseCSeq('  0009   INVITE  '), { seq: 9, method: 'INVITE' }, 'leading zeros and LWS');
  tt.same(parseCSeq('0 ACK'), { seq: 0, method: 'ACK' });
  tt.same(parseCSeq('2147483647 BYE'), { seq: 2147483647, method: 'BYE' }, '2**31-1');
  tt.same(parseCSeq('1\tRE%47IST%45R'), { seq: 1, method: 'RE%47IST%45R' });
  for (const s of ['', 'INVITE', '1', '1INVITE', '2147483648 INVITE', '36893488147419103232 REGISTER', '-1 INVITE', '1 INVITE extra', '1 IN<VITE', 'x1 INVITE']) {
    tt.equal(parseCSeq(s), undefined, JSON.stringify(s));
  }
  tt.equal(formatCSeq({ seq: 2, method: 'BYE' }), '2 BYE');
});
