#!/usr/bin/env node
// Makes the checkout ready to run: dependencies, native test tools, compiled output.
//
//   node scripts/ensure.mjs [--native] [--build]
//
// Always: runs `npm ci` when node_modules is missing or was installed from another
// package-lock.json (its sha256 is kept in node_modules/.ensure-lock-sha256).
// --native: installs the Debian packages behind sipp, kamailio and rtpengine when a binary is
//           missing (needs root; otherwise stops and names the packages to install).
// --build:  compiles with node_modules/.bin/tsc -p tsconfig.build.json.
//
// Runs before node_modules exists, so it uses Node's built-in modules only.
// Exit codes: 0 ready, 1 a step failed, 2 bad usage.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LOCK_FILE = join(ROOT, 'package-lock.json');
const NODE_MODULES = join(ROOT, 'node_modules');
const LOCK_STAMP = join(NODE_MODULES, '.ensure-lock-sha256');

/** Each binary the native tests need, and the Debian packages that provide it and its modules. */
const NATIVE = [
  { binary: 'sipp', packages: ['sip-tester'] },
  { binary: 'kamailio', packages: ['kamailio', 'kamailio-sqlite-modules', 'kamailio-extra-modules'] },
  { binary: 'rtpengine', packages: ['rtpengine-daemon'] },
  // Validates docker-compose.yml offline (no Docker engine: without recommends it does not pull one).
  { binary: 'docker-compose', packages: ['docker-compose'] },
  // The call-log tests run the same suite against PostgreSQL (a throwaway server per test run).
  { binary: 'postgres', packages: ['postgresql'], dirs: postgresBinDirs },
  // The operator web page is tested in headless Chromium (driven by playwright-core).
  { binary: 'chromium', packages: ['chromium'] },
  // The bench's setup latency: a capture on lo at the callers' SIP ports (kernel timestamps, us),
  // since SIPp's own -trace_rtt figures move in 4 ms ticks (CLOCK_MONOTONIC_COARSE at HZ=250).
  { binary: 'tcpdump', packages: ['tcpdump'] },
];

/** PostgreSQL's server binaries live in a versioned directory off PATH. */
function postgresBinDirs() {
  const root = '/usr/lib/postgresql';
  try {
    return readdirSync(root).map((v) => join(root, v, 'bin'));
  } catch {
    return [];
  }
}

class StepError extends Error {}

function say(message) {
  console.error(`ensure: ${message}`);
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: ROOT, ...options });
  if (result.error) throw new StepError(`${command} could not start: ${result.error.message}`);
  if (result.status !== 0) {
    const how = result.status === null ? `signal ${result.signal}` : `exit code ${result.status}`;
    throw new StepError(`${[command, ...args].join(' ')} failed (${how})`);
  }
}

function parseFlags(argv) {
  const flags = { build: false, native: false };
  for (const arg of argv) {
    if (arg === '--build') flags.build = true;
    else if (arg === '--native') flags.native = true;
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node scripts/ensure.mjs [--native] [--build]');
      process.exit(0);
    } else {
      console.error(`ensure: unknown option ${arg} (expected --native and/or --build)`);
      process.exit(2);
    }
  }
  return flags;
}

function ensureDependencies() {
  if (!existsSync(LOCK_FILE)) throw new StepError('package-lock.json is missing: cannot run npm ci');
  const wanted = createHash('sha256').update(readFileSync(LOCK_FILE)).digest('hex');
  let installed = '';
  try {
    installed = readFileSync(LOCK_STAMP, 'utf8').trim();
  } catch {
    // Missing stamp: treat as stale.
  }
  if (existsSync(NODE_MODULES) && installed === wanted) {
    say('node_modules matches package-lock.json');
    return;
  }
  say(existsSync(NODE_MODULES) ? 'package-lock.json changed: running npm ci' : 'node_modules missing: running npm ci');
  run('npm', ['ci']);
  writeFileSync(LOCK_STAMP, `${wanted}\n`);
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findBinary(name, extraDirs = () => []) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/bin', '/sbin', '/bin', ...extraDirs()];
  return dirs.map((dir) => join(dir, name)).find(isExecutable);
}

/** Debian packages among `names` that dpkg does not report as installed (none when dpkg is absent). */
function notInstalled(names) {
  const query = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Status}\\n', ...names], { encoding: 'utf8' });
  if (query.error) return [];
  const installed = new Set(
    query.stdout.split('\n')
      .filter((line) => line.endsWith(' install ok installed'))
      .map((line) => line.split(' ')[0]),
  );
  return names.filter((name) => !installed.has(name));
}

function ensureNative() {
  const missing = [];
  for (const { binary, packages, dirs } of NATIVE) {
    const path = findBinary(binary, dirs);
    const lacking = path ? notInstalled(packages) : packages;
    if (lacking.length === 0) say(`${binary} found at ${path}`);
    else say(path ? `${binary} found, but not ${lacking.join(', ')}` : `${binary} not found`);
    missing.push(...lacking);
  }
  if (missing.length === 0) return;
  const list = missing.join(' ');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new StepError(`missing Debian packages: ${list}\n`
      + `  install them as root: apt-get update && apt-get install -y --no-install-recommends ${list}`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  say('running apt-get update');
  run('apt-get', ['update'], { env });
  say(`installing ${list}`);
  run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { env });
}

function build() {
  const tsc = join(NODE_MODULES, '.bin', 'tsc');
  if (!existsSync(tsc)) throw new StepError(`${tsc} is missing: dependencies are not installed`);
  say('compiling: tsc -p tsconfig.build.json');
  run(tsc, ['-p', 'tsconfig.build.json']);
}

function main() {
  const flags = parseFlags(process.argv.slice(2));
  try {
    ensureDependencies();
    if (flags.native) ensureNative();
    if (flags.build) build();
  } catch (err) {
    if (!(err instanceof StepError)) throw err;
    console.error(`ensure: ${err.message}`);
    process.exit(1);
  }
}

main();
