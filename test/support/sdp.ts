// Small SDP bodies for test applications (the SIPp scenarios bring their own).

export type MediaDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

export interface SdpOptions {
  /** Origin user name, handy for telling whose SDP arrived where (default 'app'). */
  origin?: string;
  /** Session version in o= (default 1). */
  version?: number;
  ip?: string;
  port?: number;
  direction?: MediaDirection;
}

export function sdp(options: SdpOptions = {}): string {
  const ip = options.ip ?? '127.0.0.1';
  const version = options.version ?? 1;
  return [
    'v=0',
    `o=${options.origin ?? 'app'} 1000 ${version} IN IP4 ${ip}`,
    's=-',
    `c=IN IP4 ${ip}`,
    't=0 0',
    `m=audio ${options.port ?? 40000} RTP/AVP 0 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    `a=${options.direction ?? 'sendrecv'}`,
    '',
  ].join('\r\n');
}

/** The a=sendrecv|sendonly|recvonly|inactive attribute of an SDP body, if any. */
export function sdpDirection(body: string | undefined): MediaDirection | undefined {
  const match = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(body ?? '');
  return match ? (match[1] as MediaDirection) : undefined;
}
