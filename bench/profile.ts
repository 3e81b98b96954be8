// Reading V8 CPU profiles (node --cpu-prof, .cpuprofile JSON): self time per function, the hot
// spots a benchmark note lists.

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  readonly fn: string;
  /** file:line, relative to the repository where it is inside it. */
  readonly where: string;
  readonly selfMs: number;
  /** Percent of the busy time (idle excluded). */
  readonly selfPercent: number;
  /** For a native or internal function: the nearest caller in a file of ours or a package, where most of its time came from. */
  readonly via?: string;
}

export interface ProfileSummary {
  readonly file: string;
  readonly busyMs: number;
  readonly idleMs: number;
  readonly top: HotSpot[];
}

/** The `count` functions with the most self time in one .cpuprofile. */
export function summariseProfile(file: string, root: string, count = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const place = (n: ProfileNode): string => {
    const { url, lineNumber, functionName } = n.callFrame;
    const path = url.startsWith('file://') ? relative(root, url.slice('file://'.length)) : url;
    return path && !path.startsWith('node:') ? `${functionName || '(anonymous)'} ${path}:${lineNumber + 1}` : '';
  };
  /** The first ancestor frame in a file (not node's own internals). */
  const caller = (id: number): string => {
    for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      const where = n ? place(n) : '';
      if (where) return where;
    }
    return '';
  };
  const self = new Map<string, { fn: string; where: string; us: number; via: Map<string, number> }>();
  let idle = 0;
  let busy = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    const node = byId.get(id);
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += dt;
      return;
    }
    busy += dt;
    const path = url.startsWith('file://') ? relative(root, url.slice('file://'.length)) : url;
    const where = path ? `${path}:${lineNumber + 1}` : '';
    const key = `${functionName}@${where}`;
    const entry = self.get(key) ?? { fn: functionName || '(anonymous)', where, us: 0, via: new Map<string, number>() };
    entry.us += dt;
    if (!url.startsWith('file://')) {
      const from = caller(id);
      if (from) entry.via.set(from, (entry.via.get(from) ?? 0) + dt);
    }
    self.set(key, entry);
  });
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((e) => {
      const via = [...e.via.entries()].sort((a, b) => b[1] - a[1])[0];
      return {
        fn: e.fn,
        where: e.where,
        selfMs: Math.round(e.us / 1000),
        selfPercent: busy > 0 ? Math.round((1000 * e.us) / busy) / 10 : 0,
        ...(via ? { via: `${via[0]} (${Math.round((100 * via[1]) / e.us)}%)` } : {}),
      };
    });
  return { file, busyMs: Math.round(busy / 1000), idleMs: Math.round(idle / 1000), top };
}

/** The profile bench/cpu-profile-preload.ts wrote for process `pid` in `dir`, if any. */
export function profilesOf(dir: string, pid: number): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f === `${pid}.cpuprofile`)
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}
