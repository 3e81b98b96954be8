// Preloaded into the engine and the B2BUA by `npm run bench` when BENCH_CPU_PROFILE names a path
// (NODE_OPTIONS="--require dist/bench/cpu-profile-preload.js"; Node 20 refuses --cpu-prof in
// NODE_OPTIONS). Starts V8's sampling profiler in-process and writes <pid>.cpuprofile into
// BENCH_CPU_PROFILE_DIR when the process exits (both exit normally on SIGTERM). Does nothing
// without that variable; never throws into the application.

import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  try {
    const session = new Session();
    session.connect();
    session.post('Profiler.enable');
    // 500 us between samples: fine enough for per-call work of a few hundred microseconds.
    session.post('Profiler.setSamplingInterval', { interval: 500 });
    session.post('Profiler.start');
    let written = false;
    process.on('exit', () => {
      if (written) return;
      written = true;
      // The in-process session answers synchronously, so this completes inside the exit handler.
      session.post('Profiler.stop', (err, result) => {
        if (err || !result) return;
        try {
          writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
        } catch {
          // no profile rather than a failing exit
        }
      });
    });
  } catch {
    // profiling unavailable: run unprofiled
  }
}
