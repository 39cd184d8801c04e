import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { open, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { REPO_ROOT, freePort } from '../../scripts/lib/control-plane.js';
import { ENGINE_ENV, ENGINE_NODE_FLAGS } from '../../scripts/lib/engine-command.js';

/**
 * The engine as a child process: `node dist/main.js` (built once by the runner) with its
 * configuration in the environment, its JSON log kept in a file and scanned for milestones,
 * and its memory and CPU read from /proc.
 */

export const BENCH_FLAG_KEY = 'bench-flag-key-0123456789abcdef';
export const BENCH_TOKEN_SECRET = 'bench-token-secret-0123456789abcdef0123456789';
const CLOCK_TICKS = 100;

export interface EngineOptions {
  kubeconfig: string;
  namespace: string;
  logFile: string;
  env?: Record<string, string>;
  /** Directory for a V8 CPU profile (written when the process exits on SIGTERM). */
  cpuProfileDir?: string;
  /** Another entry point than dist/main.js, run through tsx (e.g. bench/flag-server.ts). */
  tsxEntry?: string;
}

export { freePort };

export interface LogMilestone {
  msg: string;
  /** pino's own timestamp (ms since the epoch). */
  time: number;
  line: Record<string, unknown>;
}

/** Every engine process started and not yet exited, so the runner can stop them on any exit path. */
export const liveEngines = new Set<EngineProcess>();

export class EngineProcess {
  child: ChildProcess | undefined;
  port = 0;
  startedAt = 0;
  /** Where this start's output begins in the (appended) log file. */
  private logOffset = 0;
  private exited: Promise<void> | undefined;

  constructor(private readonly o: EngineOptions) {}

  get pid(): number {
    const pid = this.child?.pid;
    if (pid === undefined) throw new Error('the engine is not running');
    return pid;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    // The environment the engine ships with, unless this process's says otherwise (to compare).
    const env = {
      ...ENGINE_ENV,
      ...process.env,
      KUBECONFIG: this.o.kubeconfig,
      CTF_NAMESPACE: this.o.namespace,
      CTF_FLAG_SECRET: `literal:${BENCH_FLAG_KEY}`,
      CTF_TOKEN_SECRET: BENCH_TOKEN_SECRET,
      CTF_API: 'true',
      CTF_LEADER_ELECTION: 'false',
      PORT: String(this.port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      LOG_PRETTY: 'false',
      ...this.o.env,
    };
    // The flags the engine ships with, then BENCH_ENGINE_NODE_ARGS: node/V8 flags for the engine
    // alone, to compare settings (many V8 flags are refused in NODE_OPTIONS; a later one wins).
    const extra = (process.env.BENCH_ENGINE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const nodeArgs = [...ENGINE_NODE_FLAGS, ...extra, ...(this.o.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${this.o.cpuProfileDir}`] : [])];
    const args = this.o.tsxEntry ? [...nodeArgs, '--import', 'tsx', this.o.tsxEntry] : [...nodeArgs, join(REPO_ROOT, 'dist', 'main.js')];
    // Output goes straight to a file: a pipe the busy benchmark process drains late would
    // block the engine's synchronous stdout writes and distort what is measured.
    const log = await open(this.o.logFile, 'a');
    this.logOffset = (await log.stat()).size;
    this.startedAt = Date.now();
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    this.child = child;
    liveEngines.add(this);
    this.exited = once(child, 'exit').then(() => {
      liveEngines.delete(this);
    });
  }

  private async output(): Promise<string> {
    const buf = await readFile(this.o.logFile);
    return buf.subarray(this.logOffset).toString('utf8');
  }

  private async tail(): Promise<string> {
    return (await this.output().catch(() => '')).slice(-2000);
  }

  /** The first log line of this start whose msg is `msg` (needs LOG_LEVEL=info for info lines). */
  async milestone(msg: string, timeoutMs: number): Promise<LogMilestone> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const text of (await this.output()).split('\n')) {
        if (!text.startsWith('{') || !text.includes(msg)) continue;
        try {
          const line = JSON.parse(text) as Record<string, unknown>;
          if (line.msg === msg) return { msg, time: typeof line.time === 'number' ? line.time : Date.now(), line };
        } catch {
          // a line still being written
        }
      }
      this.assertAlive(await this.tail());
      if (Date.now() > deadline) throw new Error(`the engine did not log "${msg}" within ${timeoutMs / 1000}s; output: ${await this.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private assertAlive(tail: string): void {
    const c = this.child;
    if (c && (c.exitCode !== null || c.signalCode !== null)) throw new Error(`the engine exited (${String(c.exitCode ?? c.signalCode)}): ${tail}`);
  }

  /** Polls /readyz until it answers 200 (caches synced, apiserver reachable). */
  async waitReady(timeoutMs = 120_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      this.assertAlive(await this.tail());
      const status = await httpStatus(`${this.baseUrl}/readyz`).catch(() => 0);
      if (status === 200) return Date.now();
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the engine was not ready within ${timeoutMs / 1000}s; output: ${await this.tail()}`);
  }

  /** The engine's Prometheus metrics, parsed into name{labels} -> value. */
  async metrics(): Promise<Map<string, number>> {
    const text = await httpText(`${this.baseUrl}/metrics`);
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const i = line.lastIndexOf(' ');
      out.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
    return out;
  }

  async rssBytes(): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    if (!m) throw new Error('no VmRSS in /proc status');
    return Number(m[1]) * 1024;
  }

  /** User plus system CPU time of the process so far, in seconds. */
  async cpuSeconds(): Promise<number> {
    const stat = await readFile(`/proc/${this.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLOCK_TICKS;
  }

  /**
   * Ends the process. With a CPU profile to write it shuts down gracefully (SIGTERM, SIGKILL
   * after 30 s); otherwise nothing after the measurement needs its shutdown, so SIGKILL.
   */
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    if (!this.o.cpuProfileDir) return this.kill();
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
    await this.exited;
    clearTimeout(t);
  }

  /** SIGKILL, as a crash would; nothing is flushed or handed over. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await this.exited;
  }
}

export function httpText(url: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Sum of the samples of one metric name whose labels contain every `match` fragment. */
export function metricSum(m: Map<string, number>, name: string, ...match: string[]): number {
  let total = 0;
  for (const [k, v] of m) {
    if (k !== name && !k.startsWith(`${name}{`)) continue;
    if (match.every((f) => k.includes(f))) total += v;
  }
  return total;
}
