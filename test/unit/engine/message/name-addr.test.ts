// name-addr / addr-spec values (RFC 3261 sections 20.10, 20.20, 20.39 and 25.1) and getTag.
import t from 'tap';
import { formatNameAddr, getTag, isValidNameAddr, parseNameAddr } from '../../../../lib/engine/message/name-addr';

t.test('RFC 3261 section 25.1: the forms of name-addr and addr-spec', async (tt) => {
  const q = parseNameAddr('"Alice \\"A\\" Liddell" <sip:alice@example.com>;tag=88sja8x;expires=60')!;
  tt.equal(q.display, 'Alice "A" Liddell');
  tt.equal(q.uri, 'sip:alice@example.com');
  tt.same([...q.params], [['tag', '88sja8x'], ['expires', '60']]);

  const tok = parseNameAddr('Bob   Smith <sips:bob@example.com;transport=tls>')!;
  tt.equal(tok.display, 'Bob   Smith', 'token display name as written');
  tt.equal(tok.uri, 'sips:bob@example.com;transport=tls', 'URI params stay in the URI');
  tt.equal(tok.params.size, 0);

  const bare = parseNameAddr('<sip:carol@example.com>')!;
  tt.equal(bare.display, undefined);
  tt.equal(bare.uri, 'sip:carol@example.com');

  const spec = parseNameAddr('sip:dave@example.com;tag=xyz;lr')!;
  tt.equal(spec.uri, 'sip:dave@example.com', 'addr-spec: parameters belong to the header (RFC 3261 section 20.10)');
  tt.same([...spec.params], [['tag', 'xyz'], ['lr', null]]);

  const lws = parseNameAddr('  <sip:e@example.com>  ;  TAG  =  abc  ;  flag ')!;
  tt.same([...lws.params], [['tag', 'abc'], ['flag', null]], 'LWS around ; and =, names lower-cased');

  const quotedParam = parseNameAddr('<sip:f@example.com>;p="a;b,c>d"')!;
  tt.equal(quotedParam.params.get('p'), '"a;b,c>d"', 'quoted values keep their quotes');

  tt.equal(parseNameAddr('"" <sip:g@example.com>')!.display, undefined, 'an empty quoted name is no name');
  tt.equal(parseNameAddr('isbn:2983792873')!.uri, 'isbn:2983792873', 'any scheme (RFC 4475 section 3.3.4)');
  tt.equal(parseNameAddr('<urn:service:sos>')!.uri, 'urn:service:sos');
  tt.equal(parseNameAddr('sip:[2001:db8::1]:5060;received=2001:db8::9')!.params.get('received'), '2001:db8::9');
});

t.test('RFC 4475 section 3.1.2: malformed values', async (tt) => {
  for (const s of [
    '', '   ', '"Mr. J. User <sip:j.user@example.com>', '"Watson, Thomas" < sip:t.watson@example.org >',
    'Bell, Alexander <sip:a.g.bell@example.com>', '<sip:a@example.com', 'sip:a@example.com>',
    '<sip:a@example.com>;;', '<sip:a@example.com>;tag=', '<sip:a@example.com> junk', '<>', '<nocolon>',
    'sip:a@example.com?x=y', 'sip:a,b@example.com', 'no-scheme@example.com', '<sip:a b@example.com>',
    '"x" sip:a@example.com', '<sip:a@example.com>;p="unterminated',
  ]) {
    tt.equal(parseNameAddr(s), undefined, JSON.stringify(s));
    tt.notOk(isValidNameAddr(s), JSON.stringify(s));
  }
  tt.ok(isValidNameAddr('<sip:a@example.com>;tag=1'));
});

t.test('RFC 3261 section 19.3: getTag', async (tt) => {
  tt.equal(getTag('<sip:a@example.com>;tag=abc'), 'abc');
  tt.equal(getTag('"A" <sip:a@example.com>;foo=1;tag=abc;bar'), 'abc');
  tt.equal(getTag('sip:a@example.com;tag=abc'), 'abc', 'addr-spec');
  tt.equal(getTag('sip:a@example.com ;   TAG    = 1918181833n'), '1918181833n', 'LWS and case (RFC 4475 wsinv)');
  tt.equal(getTag('<sip:a@example.com;tag=uri-param>'), undefined, 'a URI parameter is not the tag');
  tt.equal(getTag('<sip:a@example.com;tag=uri>;tag=hdr'), 'hdr');
  tt.equal(getTag('"x>;tag=fake" <sip:a@example.com>;tag=real'), 'real', 'quoted display names do not fool it');
  tt.equal(getTag('"x" <sip:a@example.com>'), undefined);
  tt.equal(getTag('<sip:a@example.com>;tagx=1;xtag=2'), undefined);
  tt.equal(getTag('<sip:a@example.com>;tag'), undefined, 'tag without a value');
  tt.equal(getTag('<sip:a@example.com>'), undefined);
  tt.equal(getTag(''), undefined);
  tt.equal(getTag("<sip:a@example.com>;tag=_token~1'+`*%!-."), "_token~1'+`*%!-.", 'every token character');
  // quoted display names take the in-place scan too; quotes it cannot place take the full parser
  tt.equal(getTag('"sipp" <sip:sipp@127.0.0.1:5061>;tag=123SIPpTag001'), '123SIPpTag001');
  tt.equal(getTag('"a\\"b>" <sip:a@example.com> ; TAG = q1'), 'q1', 'escaped quote and > inside the display name');
  tt.equal(getTag('"a" <sip:a@example.com;tag=uri>'), undefined, 'after a quoted name, a URI parameter is still not the tag');
  tt.equal(getTag('"a" <sip:a@example.com>;p="x;tag=no";tag=yes'), 'yes', 'a quoted parameter value');
  tt.equal(getTag('<sip:a@example.com>;p=">";tag=yes'), 'yes');
  tt.equal(getTag('"unterminated <sip:a@example.com>;tag=1'), undefined, 'malformed');
  for (const s of ['"x" <sip:a@example.com>;tag=1', '"x;y" <sip:a@e.com>;a=b;tag=2;c', '"" <sip:a@e.com>;tag=3', '"x" <sip:a@e.com>;p="\\"";tag=4']) {
    tt.equal(getTag(s), parseNameAddr(s)?.params.get('tag'), `same as the full parser: ${s}`);
  }
});

t.test('RFC 3261 section 20.10: formatNameAddr', async (tt) => {
  tt.equal(formatNameAddr({ uri: 'sip:a@example.com', params: new Map() }), '<sip:a@example.com>');
  tt.equal(formatNameAddr({ display: 'Alice', uri: 'sip:a@example.com', params: new Map([['tag', '1']]) }), 'Alice <sip:a@example.com>;tag=1');
  tt.equal(formatNameAddr({ display: 'Bell, Alexander', uri: 'sip:a@example.com', params: new Map() }), '"Bell, Alexander" <sip:a@example.com>', 'quoted when not all tokens');
  tt.equal(formatNameAddr({ display: 'say "hi" \\o/', uri: 'sip:a@example.com', params: new Map([['lr', null]]) }), '"say \\"hi\\" \\\\o/" <sip:a@example.com>;lr');
  for (const s of ['"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8', 'sip:x@example.com;tag=1']) {
    const n = parseNameAddr(s)!;
    tt.same(parseNameAddr(formatNameAddr(n)), n, `${s} survives format -> parse`);
  }
});
