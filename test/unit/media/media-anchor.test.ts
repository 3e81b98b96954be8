// The media anchor contract pieces that need no media server: MediaError and NoMediaAnchor (MEDIA=off).

import t from 'tap';
import { MediaError, NoMediaAnchor, type MediaAnchor } from '../../../lib/media/media-anchor';
import { sdp } from '../../support/sdp';

t.test('MediaError has a name, a stable code and the engine concerned', async (tt) => {
  const cause = new Error('socket');
  const err = new MediaError('MEDIA_TIMEOUT', '127.0.0.1:2223 did not answer offer within 1500 ms', '127.0.0.1:2223', { cause });
  tt.ok(err instanceof Error);
  tt.equal(err.name, 'MediaError');
  tt.equal(err.code, 'MEDIA_TIMEOUT');
  tt.equal(err.engine, '127.0.0.1:2223');
  tt.equal(err.cause, cause);
  tt.match(String(err), /^MediaError: 127\.0\.0\.1:2223 did not answer/);
  tt.equal(new MediaError('MEDIA_REJECTED', 'x').engine, '', 'engine defaults to ""');
});

t.test('NoMediaAnchor passes SDP through unchanged and reports no figures', async (tt) => {
  const anchor: MediaAnchor = new NoMediaAnchor();
  const offer = sdp({ origin: 'caller', port: 40000 });
  const answer = sdp({ origin: 'callee', port: 40002 });
  tt.equal(await anchor.offer({ callId: 'c1', fromTag: 'a', sdp: offer }), offer);
  tt.equal(anchor.activeSessions, 1);
  tt.equal(await anchor.offer({ callId: 'c1', fromTag: 'b', toTag: 'a', sdp: offer }), offer, 'a re-offer is the same session');
  tt.equal(anchor.activeSessions, 1);
  tt.equal(await anchor.answer({ callId: 'c1', fromTag: 'a', toTag: 'b', sdp: answer }), answer);
  await anchor.ping();
  tt.equal(await anchor.delete({ callId: 'c1' }), undefined);
  tt.equal(await anchor.delete({ callId: 'unknown' }), undefined, 'an unknown call does not reject');
  tt.equal(anchor.activeSessions, 0);
  await anchor.offer({ callId: 'c2', fromTag: 'a', sdp: offer });
  await anchor.close();
  await anchor.close();
  tt.equal(anchor.activeSessions, 0, 'close forgets every session');
});
