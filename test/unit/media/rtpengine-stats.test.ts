// Mapping RTPEngine delete replies into MediaQuality.

import t from 'tap';
import type { NgReply, NgValue } from 'rtpengine-client';
import { qualityFromNgReply } from '../../../lib/media/rtpengine-stats';

type Dict = { [key: string]: NgValue };

function stream(localPort: number, peerPort: number, kind: 'RTP' | 'RTCP', packets: number, bytes: number, ssrc?: number): Dict {
  const s: Dict = {
    'local port': localPort,
    'local address': '127.0.0.3',
    family: 'IPv4',
    endpoint: { family: 'IPv4', address: '127.0.0.1', port: peerPort },
    'advertised endpoint': { family: 'IPv4', address: '127.0.0.1', port: peerPort },
    'last packet': 1795267679,
    flags: [kind, 'filled'],
    stats: { packets, bytes, errors: 0 },
  };
  if (ssrc !== undefined) s.SSRC = ssrc;
  return s;
}

/** A delete reply as RTPEngine 10.5.3.5 sent it on this machine: caller "ta" sent 10 packets, callee "tb" 3. */
function realReply(): NgReply {
  const monologue = (tag: string, other: string, streams: Dict[]): Dict => ({
    tag,
    created: 1795267679,
    subscriptions: [{ tag: other, type: 'offer/answer' }],
    subscribers: [{ tag: other, type: 'offer/answer' }],
    medias: [{ index: 1, type: 'audio', protocol: 'RTP/AVP', codec: 'PCMU/8000', streams, flags: ['initialized', 'send', 'recv'] }],
  });
  return {
    created: 1795267679,
    created_us: 61774,
    'last signal': 1795267679,
    SSRC: {},
    tags: {
      ta: monologue('ta', 'tb', [stream(42390, 50030, 'RTP', 10, 1720, 43690), stream(42391, 50031, 'RTCP', 0, 0)]),
      tb: monologue('tb', 'ta', [stream(42378, 50032, 'RTP', 3, 516, 48059), stream(42379, 50033, 'RTCP', 0, 0)]),
    },
    totals: { RTP: { packets: 13, bytes: 2236, errors: 0 }, RTCP: { packets: 0, bytes: 0, errors: 0 } },
    result: 'ok',
  };
}

t.test('packets and bytes per direction come from each tag\'s RTP streams (what that party sent)', async (tt) => {
  const q = qualityFromNgReply(realReply(), 'ta', '127.0.0.1:2223', (1795267679 + 12.5) * 1000);
  tt.same(q, {
    callerToCallee: { packets: 10, bytes: 1720 },
    calleeToCaller: { packets: 3, bytes: 516 },
    engine: '127.0.0.1:2223',
    durationSec: 12.438,
  });
  const reversed = qualityFromNgReply(realReply(), 'tb', 'e', 0);
  tt.match(reversed, { callerToCallee: { packets: 3 }, calleeToCaller: { packets: 10 } }, 'the caller tag decides the direction');
  tt.equal(reversed?.durationSec, 0, 'a clock behind RTPEngine\'s gives 0, not a negative duration');
});

t.test('loss, jitter and MOS of a direction come from the RECEIVER\'s SSRC entry (MOS is reported x10)', async (tt) => {
  // Measured on RTPEngine 10.5.3.5: RTP both ways, SRs both ways, then RRs from the callee (about
  // the caller's SSRC: jitter 400 ticks = 50 ms, 5 lost) and from the caller (about the callee's
  // SSRC: jitter 160 ticks = 20 ms, 1 lost). RTPEngine filed the caller's report under the caller's
  // own SSRC (43690 = 0xaaaa here) and left the callee's entry empty.
  const reply = realReply();
  reply.SSRC = {
    '43690': {
      'cumulative loss': 1,
      'average MOS': { MOS: 40, 'round-trip time': 61941, 'round-trip time leg': 30972, jitter: 20, 'packet loss': 4, samples: 1 },
      'lowest MOS': { MOS: 40, jitter: 20, 'reported at': 1 },
      'highest MOS': { MOS: 40, jitter: 20, 'reported at': 1 },
      'MOS progression': { interval: 0, entries: [{ MOS: 40, jitter: 20, 'reported at': 1 }] },
    },
    '48059': {},
  };
  const q = qualityFromNgReply(reply, 'ta', 'e');
  tt.same(q?.calleeToCaller, { packets: 3, bytes: 516, packetsLost: 1, jitterMs: 20, mos: 4 }, 'the caller\'s reports judge callee->caller');
  tt.same(q?.callerToCallee, { packets: 10, bytes: 1720 }, 'the callee sent no usable report: no quality figures');
});

t.test('several SSRCs at the receiver (e.g. after a re-INVITE): loss adds up, MOS and jitter are sample-weighted', async (tt) => {
  const reply = realReply();
  const tags = reply.tags as Dict;
  const media = ((tags.tb as Dict).medias as Dict[])[0] as Dict;
  (media.streams as Dict[]).push(stream(42392, 50034, 'RTP', 5, 860, 7));
  reply.SSRC = {
    '48059': { 'cumulative loss': 1, 'average MOS': { MOS: 40, jitter: 2, samples: 1 } },
    '7': { 'cumulative loss': 2, 'average MOS': { MOS: 44, jitter: 6, samples: 3 } },
  };
  const q = qualityFromNgReply(reply, 'ta', 'e');
  tt.same(q?.callerToCallee, { packets: 10, bytes: 1720, packetsLost: 3, jitterMs: 5, mos: 4.3 });
  tt.same(q?.calleeToCaller, { packets: 8, bytes: 1376 });
});

t.test('unknown call, missing and malformed fields', async (tt) => {
  tt.equal(qualityFromNgReply({ result: 'ok', warning: "Call-ID not found or tags didn't match" }, 'ta', 'e'), undefined, 'no tags: no figures');
  tt.same(qualityFromNgReply({ result: 'ok', tags: {} }, 'ta', 'e'), {
    callerToCallee: { packets: 0, bytes: 0 },
    calleeToCaller: { packets: 0, bytes: 0 },
    engine: 'e',
  }, 'an empty call: zeros, no duration');
  const odd: NgReply = {
    result: 'ok',
    created: 'soon',
    tags: {
      ta: { medias: [{ streams: [{ stats: { packets: '12', bytes: 'many' }, SSRC: 'x' }, 'junk', { flags: 'RTP' }] }, 5] },
      '': { medias: 'none' },
      tb: 'junk',
    },
    SSRC: { x: { 'cumulative loss': -1, 'average MOS': { MOS: 0 } } },
  };
  tt.same(qualityFromNgReply(odd, 'ta', 'e'), {
    callerToCallee: { packets: 12, bytes: 0 },
    calleeToCaller: { packets: 0, bytes: 0 },
    engine: 'e',
  }, 'numbers in strings are read, everything else ignored');
  const noTagField: NgReply = { result: 'ok', tags: { ta: { medias: [{ streams: [stream(1, 2, 'RTP', 4, 40)] }] } } };
  tt.match(qualityFromNgReply(noTagField, 'ta', 'e'), { callerToCallee: { packets: 4 } }, 'the dictionary key names the tag when "tag" is missing');
});
