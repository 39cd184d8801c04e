import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/**
 * CPU accounting over a window, from /proc: each named process (utime + stime of
 * /proc/<pid>/stat) and the whole machine (/proc/stat), so a report can say which process a
 * measurement was bounded by, and how much of the machine went to processes outside the run.
 */

const TICKS = 100;

function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]);
  } catch {
    return undefined;
  }
}

/** Busy ticks of the whole machine (all cores): everything but idle and iowait. */
function machineTicks(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return user + nice + system + irq + softirq + steal;
}

export interface CpuUsage {
  seconds: number;
  /** Cores used on average over the window, by process name. */
  byProcess: Record<string, number>;
  /** Cores used by the machine as a whole, and by processes not named. */
  machine: number;
  others: number;
  cores: number;
}

export class CpuMeter {
  private readonly start: Map<string, number>;
  private readonly machineStart: number;
  private readonly t0: number;

  constructor(private readonly pids: Record<string, number>) {
    this.t0 = Date.now();
    this.machineStart = machineTicks();
    this.start = new Map(Object.entries(pids).map(([name, pid]) => [name, processTicks(pid) ?? Number.NaN]));
  }

  stop(): CpuUsage {
    const seconds = (Date.now() - this.t0) / 1000;
    const byProcess: Record<string, number> = {};
    let named = 0;
    for (const [name, pid] of Object.entries(this.pids)) {
      const end = processTicks(pid);
      const begin = this.start.get(name) ?? Number.NaN;
      const cores = end === undefined ? Number.NaN : (end - begin) / TICKS / seconds;
      byProcess[name] = Math.round(cores * 100) / 100;
      if (Number.isFinite(cores)) named += cores;
    }
    const machine = (machineTicks() - this.machineStart) / TICKS / seconds;
    return {
      seconds,
      byProcess,
      machine: Math.round(machine * 100) / 100,
      others: Math.round(Math.max(0, machine - named) * 100) / 100,
      cores: cpus().length,
    };
  }
}

export function cpuColumns(): string[] {
  return ['engine', 'benchmark (load, watches)', 'kube-apiserver', 'etcd', 'controller-manager', 'scheduler', 'kwok', 'other processes', 'machine (of cores)'];
}

/** One table row of cores used, in the order of cpuColumns(). */
export function cpuRow(u: CpuUsage): string[] {
  const p = u.byProcess;
  const f = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(2));
  return [f(p.engine), f(p.benchmark), f(p['kube-apiserver']), f(p.etcd), f(p['kube-controller-manager']), f(p['kube-scheduler']), f(p.kwok), f(u.others), `${f(u.machine)} of ${u.cores}`];
}
