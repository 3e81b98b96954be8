/**
 * The SIP message layer: the message model, the parser and serializer, the typed header views
 * and the stream framer. It depends on nothing else in lib/.
 */
export {
  SipRequest, SipResponse, canonicalName, cloneMessage, displayName, isListHeader, splitList,
} from './sip-message';
export type { SipHeader, SipMessage } from './sip-message';
export { DEFAULT_MAX_SIZE, parseMessage } from './parser';
export type { ParseOptions, ParseResult } from './parser';
export { serialize, serializeHead, startLine } from './serializer';
export { checkUri, formatUri, parseUri } from './uri';
export type { SipUri, UriCheck } from './uri';
export { formatNameAddr, getTag, isValidNameAddr, parseNameAddr } from './name-addr';
export type { NameAddr } from './name-addr';
export { formatVia, isValidVia, parseVia, parseViaHead } from './via';
export type { Via, ViaHead } from './via';
export { formatCSeq, parseCSeq } from './cseq';
export type { CSeq } from './cseq';
export { StreamFramer, headerContentLength } from './stream-framer';
export type { StreamFramerOptions } from './stream-framer';
