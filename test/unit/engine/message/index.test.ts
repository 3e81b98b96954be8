// The folder's public surface: everything a caller needs comes from index.ts.
import t from 'tap';
import * as message from '../../../../lib/engine/message';

t.test('index re-exports the message layer API (RFC 3261 section 7 model, parser and header views)', async (tt) => {
  for (const name of [
    'SipRequest', 'SipResponse', 'canonicalName', 'cloneMessage', 'displayName', 'isListHeader', 'splitList',
    'parseMessage', 'DEFAULT_MAX_SIZE', 'serialize', 'serializeHead', 'startLine', 'parseUri', 'formatUri', 'checkUri',
    'parseNameAddr', 'formatNameAddr', 'getTag', 'isValidNameAddr', 'parseVia', 'formatVia', 'isValidVia',
    'parseViaHead', 'parseCSeq', 'formatCSeq', 'StreamFramer', 'headerContentLength',
  ]) tt.ok(name in message, name);
  tt.equal(message.DEFAULT_MAX_SIZE, 65535);
  const r = message.parseMessage(message.serialize(new message.SipResponse(200, 'OK')));
  tt.equal(r.ok, false, 'a response without the mandatory headers is refused');
});
