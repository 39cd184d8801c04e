import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Table } from './report.js';

/**
 * Summaries of V8 CPU profiles (`node --cpu-prof`): self time by function and by package, so a
 * report can say where an engine process spent its CPU without opening a profiler.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Sampled time that was not idle. */
  busyMs: number;
  byFunction: { name: string; where: string; ms: number; share: number }[];
  byArea: { area: string; ms: number; share: number }[];
}

/** Where a frame comes from: a package, a Node internal module, the engine's own code, or V8. */
function areaOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  if (url.startsWith('node:')) return url;
  const own = /\/(dist|src|bench)\/(.+?)\.[jt]s$/.exec(url);
  if (own) return `engine: ${own[1] === 'dist' ? 'src' : own[1]}/${own[2]}`;
  return url;
}

function shortUrl(url: string): string {
  const nm = /node_modules\/(.+)$/.exec(url);
  if (nm) return nm[1] as string;
  const own = /\/((?:dist|src|bench)\/.+)$/.exec(url);
  return own ? (own[1] as string) : url;
}

/** Now on the clock V8 stamps profile samples with (CLOCK_MONOTONIC, microseconds), shared by all processes. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** A time window in monotonicMicros() terms. */
export type Window = [number, number];

export async function summarizeProfile(file: string, top = 15, windows?: Window[]): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    const delta = p.timeDeltas[i] ?? 0;
    t += delta;
    if (windows && !windows.some(([a, b]) => t >= a && t <= b)) continue;
    self.set(id, (self.get(id) ?? 0) + delta / 1000);
  }
  const fn = new Map<string, { name: string; where: string; ms: number }>();
  const area = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += ms;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') {
      idle += ms;
      continue;
    }
    const name = functionName || '(anonymous)';
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${name}@${where}`;
    const f = fn.get(key) ?? { name, where, ms: 0 };
    f.ms += ms;
    fn.set(key, f);
    const a = areaOf(url, functionName);
    area.set(a, (area.get(a) ?? 0) + ms);
  }
  const busy = total - idle;
  const share = (ms: number) => Math.round((ms / Math.max(busy, 1e-9)) * 1000) / 10;
  return {
    file,
    totalMs: Math.round(total),
    busyMs: Math.round(busy),
    byFunction: [...fn.values()].sort((a, b) => b.ms - a.ms).slice(0, top).map((f) => ({ ...f, ms: Math.round(f.ms), share: share(f.ms) })),
    byArea: [...area].sort((a, b) => b[1] - a[1]).slice(0, top).map(([a, ms]) => ({ area: a, ms: Math.round(ms), share: share(ms) })),
  };
}

/** Summaries of every .cpuprofile in `dir`, restricted to `windows` when given. */
export async function summarizeProfiles(dir: string, top = 15, windows?: Window[]): Promise<ProfileSummary[]> {
  let files: string[] = [];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  } catch {
    return [];
  }
  return Promise.all(files.map((f) => summarizeProfile(join(dir, f), top, windows)));
}

export function profileTables(label: string, s: ProfileSummary): Table[] {
  return [
    {
      title: `CPU profile of ${label}: self time by area (${s.busyMs} ms busy of ${s.totalMs} ms sampled)`,
      columns: ['area', 'ms', '% of busy'],
      rows: s.byArea.slice(0, 10).map((a) => [a.area, a.ms, `${a.share}%`]),
    },
    {
      title: `CPU profile of ${label}: hottest functions (self time)`,
      columns: ['function', 'where', 'ms', '% of busy'],
      rows: s.byFunction.slice(0, 12).map((f) => [`\`${f.name}\``, f.where, f.ms, `${f.share}%`]),
    },
  ];
}
