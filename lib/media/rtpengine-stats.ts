// Turning RTPEngine's `delete` (or `query`) reply into MediaQuality.
//
// The reply (RTPEngine 10.5, see its ng_call_stats) holds, besides `result`:
//   created, created_us      when the call was created on RTPEngine (Unix seconds + microseconds)
//   tags                     one "monologue" per SIP tag; tags[T].medias[].streams[] are the sockets
//                            facing party T: a stream flagged "RTP" counts in stats.packets/bytes
//                            what RTPEngine RECEIVED FROM party T (so: what T sent), and carries in
//                            "SSRC" the SSRC T sends with
//   SSRC                     per SSRC (decimal string): "cumulative loss" and "average MOS"
//                            { MOS (x10), jitter (ms), packet loss (%), samples }. They come from
//                            the RTCP receiver reports SENT BY the owner of that SSRC, so they
//                            describe what that party RECEIVED: the entry of the callee's SSRC
//                            judges the caller->callee direction, and the other way round.
//                            (Measured on 10.5: RRs from both sides are needed before any MOS
//                            appears; entries without reports are empty.)
//   totals                   { RTP: {packets, bytes, errors}, RTCP: {...} } for the whole call
// Every field is read defensively: any of them may be missing or of another type.

import type { NgReply, NgValue } from 'rtpengine-client';
import type { MediaDirectionStats, MediaQuality } from './media-anchor';

type NgDict = { [key: string]: NgValue | undefined };

function asDict(value: NgValue | undefined): NgDict | undefined {
  return value !== undefined && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
}

function asList(value: NgValue | undefined): NgValue[] {
  return Array.isArray(value) ? value : [];
}

/** A finite number from an integer or a numeric string; undefined otherwise. */
function asNumber(value: NgValue | undefined): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim())) return Number(value);
  return undefined;
}

/** What one party sent: RTP packet and byte counts, and the SSRCs it sent with. */
interface PartySent {
  packets: number;
  bytes: number;
  ssrcs: Set<string>;
}

function sentBy(monologue: NgDict | undefined, into: PartySent): void {
  for (const media of asList(monologue?.medias)) {
    for (const streamValue of asList(asDict(media)?.streams)) {
      const stream = asDict(streamValue);
      if (!stream) continue;
      const flags = asList(stream.flags).filter((f): f is string => typeof f === 'string');
      // RTCP sockets are flagged "RTCP"; an rtcp-mux stream is the RTP one.
      if (flags.includes('RTCP') && !flags.includes('RTP')) continue;
      const stats = asDict(stream.stats);
      into.packets += asNumber(stats?.packets) ?? 0;
      into.bytes += asNumber(stats?.bytes) ?? 0;
      const ssrc = asNumber(stream.SSRC);
      if (ssrc !== undefined && ssrc !== 0) into.ssrcs.add(String(ssrc >>> 0));
    }
  }
}

/**
 * Loss, jitter and MOS of a direction from the SSRC entries of its RECEIVING party (RTCP-based;
 * absent without reports).
 */
function direction(sent: PartySent, receiver: PartySent, ssrcStats: NgDict | undefined): MediaDirectionStats {
  const out: MediaDirectionStats = { packets: sent.packets, bytes: sent.bytes };
  let lost: number | undefined;
  let weight = 0;
  let mosSum = 0;
  let jitterSum = 0;
  let mosWeight = 0;
  for (const ssrc of receiver.ssrcs) {
    const entry = asDict(ssrcStats?.[ssrc]);
    if (!entry) continue;
    const cumulativeLoss = asNumber(entry['cumulative loss']);
    if (cumulativeLoss !== undefined) lost = (lost ?? 0) + Math.max(0, cumulativeLoss);
    const average = asDict(entry['average MOS']);
    if (!average) continue;
    const samples = Math.max(1, asNumber(average.samples) ?? 1);
    const mos = asNumber(average.MOS);
    const jitter = asNumber(average.jitter);
    if (jitter !== undefined) {
      jitterSum += jitter * samples;
      weight += samples;
    }
    // RTPEngine reports MOS times ten (43 = 4.3); 0 means "not computed".
    if (mos !== undefined && mos > 0) {
      mosSum += mos * samples;
      mosWeight += samples;
    }
  }
  if (lost !== undefined) out.packetsLost = lost;
  if (weight > 0) out.jitterMs = round(jitterSum / weight, 1);
  if (mosWeight > 0) out.mos = round(mosSum / mosWeight / 10, 2);
  return out;
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * MediaQuality from a delete/query reply. `callerTag` is the fromTag of the call's first offer:
 * its monologue gives callerToCallee; every other monologue (the callee, or after a transfer each
 * party the caller was bridged to) adds to calleeToCaller. Undefined when the reply describes no
 * call (RTPEngine answers a delete of an unknown call with only a warning).
 */
export function qualityFromNgReply(reply: NgReply, callerTag: string, engine: string, nowMs = Date.now()): MediaQuality | undefined {
  const tags = asDict(reply.tags);
  if (!tags) return undefined;
  const caller: PartySent = { packets: 0, bytes: 0, ssrcs: new Set() };
  const others: PartySent = { packets: 0, bytes: 0, ssrcs: new Set() };
  for (const [key, value] of Object.entries(tags)) {
    const monologue = asDict(value);
    const tag = typeof monologue?.tag === 'string' ? monologue.tag : key;
    sentBy(monologue, tag === callerTag ? caller : others);
  }
  const ssrcStats = asDict(reply.SSRC);
  const quality: MediaQuality = {
    callerToCallee: direction(caller, others, ssrcStats),
    calleeToCaller: direction(others, caller, ssrcStats),
    engine,
  };
  const created = asNumber(reply.created);
  if (created !== undefined && created > 0) {
    const createdSec = created + (asNumber(reply.created_us) ?? 0) / 1e6;
    quality.durationSec = round(Math.max(0, nowMs / 1000 - createdSec), 3);
  }
  return quality;
}
