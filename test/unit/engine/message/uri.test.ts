// SIP / SIPS / tel URIs: RFC 3261 section 19.1, RFC 3966.
import t from 'tap';
import { checkUri, formatUri, parseUri } from '../../../../lib/engine/message/uri';

t.test('RFC 3261 section 19.1.1: SIP URI components', async (tt) => {
  const u = parseUri('sip:alice:secretword@atlanta.example.com:5061;transport=TCP;lr?subject=project%20x&priority=urgent')!;
  tt.equal(u.scheme, 'sip');
  tt.equal(u.user, 'alice');
  tt.equal(u.password, 'secretword');
  tt.equal(u.host, 'atlanta.example.com');
  tt.equal(u.port, 5061);
  tt.same([...u.params], [['transport', 'TCP'], ['lr', null]]);
  tt.equal(u.headers, 'subject=project%20x&priority=urgent');

  const h = parseUri('SIPS:example.com')!;
  tt.equal(h.scheme, 'sips', 'scheme lower-cased');
  tt.equal(h.user, undefined);
  tt.equal(h.port, undefined);
  tt.equal(h.params.size, 0);
  tt.equal(h.headers, undefined);
});

t.test('RFC 3261 section 19.1.1: IPv6 references keep their brackets (RFC 5118)', async (tt) => {
  const u = parseUri('sip:[2001:db8::10]:5070;maddr=[2001:db8::1]')!;
  tt.equal(u.host, '[2001:db8::10]');
  tt.equal(u.port, 5070);
  tt.equal(u.params.get('maddr'), '[2001:db8::1]');
  tt.equal(parseUri('sip:user@[::ffff:192.0.2.1]')!.host, '[::ffff:192.0.2.1]');
  tt.equal(parseUri('sip:user@[]'), undefined);
  tt.equal(parseUri('sip:user@[2001:db8::g]'), undefined);
});

t.test('RFC 3261 section 19.1.2: escapes are kept as written', async (tt) => {
  const u = parseUri('sip:%61lice@example.com;na%6De=v%61l')!;
  tt.equal(u.user, '%61lice');
  tt.same([...u.params], [['na%6de', 'v%61l']], 'parameter names lower-cased, values as written');
  tt.equal(parseUri('sip:a%4@example.com'), undefined, 'truncated escape');
  tt.equal(parseUri('sip:a%zz@example.com'), undefined, 'non-hex escape');
});

t.test('RFC 3966: tel URIs', async (tt) => {
  const u = parseUri('tel:+1-201-555-0123;ext=42')!;
  tt.equal(u.scheme, 'tel');
  tt.equal(u.user, '+1-201-555-0123');
  tt.equal(u.host, '');
  tt.same([...u.params], [['ext', '42']]);
  tt.equal(formatUri(u), 'tel:+1-201-555-0123;ext=42');
  tt.ok(parseUri('tel:7042;phone-context=example.com'));
  tt.equal(parseUri('tel:'), undefined);
  tt.equal(parseUri('tel:+1 555'), undefined);
});

t.test('RFC 3261 section 25.1: malformed and foreign URIs', async (tt) => {
  for (const s of [
    '', 'sip', 'sip:', 'sip:@example.com', 'sip:user@', 'sip:user@exa mple.com', 'sip:us er@example.com',
    'sip:user@example.com:', 'sip:user@example.com:65536', 'sip:user@example.com;', 'sip:user@example.com?',
    '<sip:user@example.com>', 'sip:user@example.com>', 'sip:"user"@example.com', 'http://example.com/',
    'mailto:a@b', '1sip:a@b',
  ]) tt.equal(parseUri(s), undefined, JSON.stringify(s));
  tt.equal(parseUri('sip:user@example.com:65535')!.port, 65535);
});

t.test('checkUri classifies a Request-URI without allocating (RFC 3261 sections 8.2.2.1, 19.1.1)', async (tt) => {
  tt.equal(checkUri('sip:bob@example.com'), 'ok');
  tt.equal(checkUri('sips:bob@example.com;transport=tls'), 'ok');
  tt.equal(checkUri('tel:+15551234'), 'ok');
  tt.equal(checkUri('sip:bob@example.com?Route=%3Csip:x%3E'), 'has-headers');
  tt.equal(checkUri('nobodyKnowsThisScheme:totallyopaquecontent'), 'unsupported-scheme');
  tt.equal(checkUri('soap.beep://192.0.2.103:3002'), 'unsupported-scheme');
  tt.equal(checkUri('im:x'), 'unsupported-scheme');
  tt.equal(checkUri('im:'), 'bad');
  tt.equal(checkUri('im:a<b'), 'bad');
  tt.equal(checkUri('<sip:bob@example.com>'), 'bad');
  tt.equal(checkUri('sip:bob@exa mple.com'), 'bad');
  tt.equal(checkUri('bob@example.com'), 'bad', 'no scheme');
});

t.test('RFC 3261 section 19.1.1: formatUri writes back what parseUri read', async (tt) => {
  for (const s of [
    'sip:alice@atlanta.example.com',
    'sip:alice:pw@atlanta.example.com:5061;transport=tcp;lr?subject=x',
    'sips:[2001:db8::1]:5061;maddr=192.0.2.1',
    'sip:user;par=u%40example.net@example.com',
    "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
    'tel:+1-201-555-0123',
  ]) tt.equal(formatUri(parseUri(s)!), s, s);
  tt.equal(formatUri({ scheme: 'sip', host: 'h', port: 5060, params: new Map([['lr', null], ['transport', 'udp']]) }), 'sip:h:5060;lr;transport=udp');
});
