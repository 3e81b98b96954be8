/**
 * Reported to applications at authentication. drachtio-srf reads `^v(\d+)\.(\d+)\.(\d+)` from it
 * (it pings only servers >= v0.8.2), so it names the drachtio-server version whose behaviour the
 * engine follows, and then says what it is.
 */
export const ENGINE_VERSION = 'v0.9.10-ts-engine-0.1.0';
