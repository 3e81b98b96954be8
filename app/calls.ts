// `npm run calls -- <command>`: the call log of a running B2BUA through its operator API
// (list, show, tail, export). The commands live in lib/operator/calls-cli.ts; this file reads
// the environment (with .env under it, as the B2BUA reads it), wires stdout/stderr and the
// signals, and sets the exit code. `calls --help` lists the commands and options.

import { join } from 'node:path';
import { envWithDotenv } from '../lib/config/env';
import { runCallsCli } from '../lib/operator/calls-cli';

/** Writes to stdout, waiting for 'drain' when its buffer is full (large exports, slow pipes). */
function writeOut(text: string): void | Promise<void> {
  if (process.stdout.write(text)) return;
  return new Promise((resolve) => process.stdout.once('drain', () => resolve()));
}

async function main(): Promise<number> {
  const cwd = process.cwd();
  let env: Record<string, string | undefined>;
  try {
    env = envWithDotenv(join(cwd, '.env'), process.env);
  } catch (err) {
    process.stderr.write(`calls: ${(err as Error).message}\n`);
    return 2;
  }
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    signals++;
    // The first signal stops the command cleanly; a second one does not wait.
    if (signals > 1) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed pipe (`calls tail | head`) ends the command quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    return await runCallsCli(process.argv.slice(2), {
      env,
      cwd,
      signal: controller.signal,
      io: {
        out: writeOut,
        err: (text) => process.stderr.write(text),
        columns: process.stdout.isTTY ? process.stdout.columns : undefined,
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`calls: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
