// `npm start` itself (dist/app/stack.js, what the script runs after installing and building):
// the banner, the demo extensions, readiness, Ctrl-C stopping every child, and bad settings.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { freePortRange, freePorts, releasePorts } from '../support/ports';
import { waitUntil, withTimeout } from '../support/wait';

const STACK = resolve(__dirname, '..', '..', 'dist', 'app', 'stack.js');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('npm start runs the stack, prints where phones register, and Ctrl-C stops it all', async (tt) => {
  const varDir = mkdtempSync(join(tmpdir(), 'b2bua-start-'));
  const ports = await freePorts(6);
  const range = await freePortRange(100);
  tt.teardown(() => {
    releasePorts(ports);
    rmSync(varDir, { recursive: true, force: true });
  });
  const [sip, engineSip, wire, status, ng, operator] = ports as [number, number, number, number, number, number];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    VAR_DIR: varDir,
    SIP_PORT: String(sip),
    ENGINE_SIP_PORT: String(engineSip),
    DRACHTIO_PORT: String(wire),
    ENGINE_STATUS_PORT: String(status),
    RTPENGINE_NG_PORT: String(ng),
    OPERATOR_PORT: String(operator),
    RTPENGINE_PORT_MIN: String(range.first),
    RTPENGINE_PORT_MAX: String(range.last),
  };
  const child = spawn(process.execPath, [STACK], { env, cwd: varDir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  tt.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await waitUntil(() => out, (o) => o.includes('Ctrl-C stops everything'), { timeoutMs: 30_000, description: 'the start-up banner' });
  tt.match(out, `Phones register at  sip:127.0.0.1:${sip}`, 'says where phones register');
  tt.match(out, /6001 {2}password \S{8,}/, 'prints the new demo extensions with their passwords');
  const pids = [...out.matchAll(/(kamailio|rtpengine|engine|b2bua) (\d+)/g)].map((m) => Number(m[2]));
  tt.equal(pids.length, 4, `prints four PIDs (${pids.join(', ')})`);
  const ready = await waitUntil(() => fetch(`http://127.0.0.1:${operator}/ready`).then((r) => r.status), (st) => st === 200, { description: '/ready' });
  tt.equal(ready, 200, 'the B2BUA is ready (drachtio connected, RTPEngine answering)');
  child.kill('SIGINT');
  tt.equal(await withTimeout(exited, 30_000, 'the stack to exit'), 0, 'Ctrl-C: exit 0');
  tt.same(pids.filter(alive), [], 'no child is left running');
});

t.test('a bad setting stops npm start with a message naming it', async (tt) => {
  const child = spawn(process.execPath, [STACK], { env: { PATH: process.env.PATH, SIP_PORT: 'fifty', VAR_DIR: tmpdir() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await withTimeout(new Promise<number | null>((res) => child.once('exit', (c) => res(c))), 10_000, 'exit');
  tt.equal(code, 1);
  tt.match(err, /SIP_PORT must be a whole number/);
  const child2 = spawn(process.execPath, [STACK], { env: { PATH: process.env.PATH, DIAL_PLAN: '6X?', VAR_DIR: tmpdir() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err2 = '';
  child2.stderr.on('data', (b: Buffer) => (err2 += b.toString()));
  tt.equal(await withTimeout(new Promise<number | null>((res) => child2.once('exit', (c) => res(c))), 10_000, 'exit'), 1);
  tt.match(err2, /DIAL_PLAN/, 'a B2BUA setting is checked before anything starts');
});
