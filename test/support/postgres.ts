// A throwaway PostgreSQL server for tests (Debian's postgresql package; CI installs it): the
// starter shared with the benchmarks, on a free loopback port from this test run's allocator,
// with durability off for speed.

import { startThrowawayPostgres, type ThrowawayPostgres } from '../../bench/postgres-server';
import { freePorts, releasePorts } from './ports';

export type TestPostgres = ThrowawayPostgres;

/**
 * Starts PostgreSQL on 127.0.0.1 (trust auth, fsync off) and resolves once it accepts a
 * connection. `stop()` kills it by PID and removes its directory. Throws an Error saying
 * `apt-get install postgresql` when the server binaries are missing.
 */
export async function startTestPostgres(): Promise<TestPostgres> {
  const [port] = await freePorts(1);
  try {
    const server = await startThrowawayPostgres({ port: port!, durable: false });
    return {
      ...server,
      createDatabase: (name) => server.createDatabase(name),
      stop: async () => {
        await server.stop();
        releasePorts([port!]);
      },
    };
  } catch (err) {
    releasePorts([port!]);
    throw err;
  }
}
