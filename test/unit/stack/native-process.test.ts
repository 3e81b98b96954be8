// NativeProcess: a child's output reaches its log file whole (appended in batches, not a write per
// line), while the child runs and after it exits; lines are still reported one by one.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { NativeProcess, waitForLine } from '../../../lib/stack/native-process';
import { waitUntil } from '../../support/wait';

const logger = pino({ level: 'silent' });

function scratch(tt: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'native-process-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function fileText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

t.test('every line of a chatty child lands in its log file, in order, once it has exited', async (tt) => {
  const logFile = join(scratch(tt), 'child.log');
  // 3,000 lines written one write each, on stdout and stderr, then "done".
  const script = "for (let i = 0; i < 3000; i++) (i % 3 ? process.stdout : process.stderr).write(`line ${i}\\n`); process.stdout.write('done\\n');";
  const seen: string[] = [];
  const proc = await NativeProcess.start({
    name: 'chatty',
    command: process.execPath,
    args: ['-e', script],
    logger,
    logFile,
    ready: async (p) => {
      p.on('line', (l) => seen.push(l));
    },
  });
  await proc.exited;
  const text = await waitUntil(() => fileText(logFile), (s) => s.includes('done\n'), { description: 'the last line in the log file' });
  const lines = text.trimEnd().split('\n');
  tt.equal(lines.length, 3001, 'every line, none twice');
  const numbers = lines.filter((l) => l.startsWith('line ')).map((l) => Number(l.slice(5)));
  tt.same([...numbers].sort((a, b) => a - b), Array.from({ length: 3000 }, (_, i) => i), 'lines 0-2999 all there');
  const stdoutOnly = numbers.filter((n) => n % 3 !== 0);
  tt.same(stdoutOnly, [...stdoutOnly].sort((a, b) => a - b), 'one stream\'s lines keep their order');
  await waitUntil(() => seen.length, (n) => n >= 3001, { description: 'every line reported' });
  tt.equal(seen.filter((l) => l.startsWith('line ')).length, 3000, 'each line reported on its own as well');
});

t.test('a line written by a child that keeps running reaches the file without waiting for its exit', async (tt) => {
  const logFile = join(scratch(tt), 'quiet.log');
  const proc = await NativeProcess.start({
    name: 'quiet',
    command: process.execPath,
    args: ['-e', "console.log('ready'); setInterval(() => {}, 1000);"],
    logger,
    logFile,
    ready: (p) => waitForLine(p, (l) => l === 'ready').then(() => undefined),
  });
  tt.teardown(() => proc.stop());
  await waitUntil(() => fileText(logFile), (s) => s === 'ready\n', { timeoutMs: 3000, description: 'the line in the file while the child runs' });
  tt.ok(proc.running, 'the child is still running');
  await proc.stop();
  tt.equal(fileText(logFile), 'ready\n', 'nothing more, nothing lost at stop');
});
