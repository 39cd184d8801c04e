/**
 * A work queue of object keys in the manner of client-go's: a key is queued at most once, a key
 * being processed is never handed to a second worker (it is re-queued when its turn ends if it
 * was added meanwhile), failures are retried with per-key exponential backoff, and delayed adds
 * keep only the earliest deadline per key (that is what expiry timers need). Keys the `background`
 * option names wait until no other key is queued (warm pool instances behind players' sessions).
 */

export interface QueueHooks {
  onDepth?: (depth: number) => void;
  onAdd?: () => void;
  onRetry?: () => void;
  /** ms the key waited in the queue before a worker took it. */
  onLatency?: (ms: number) => void;
  onWorkDuration?: (ms: number) => void;
}

export interface ProcessResult {
  /** Reconcile this key again after so many ms even if nothing changes (e.g. an expiry). */
  requeueAfterMs?: number;
}

export interface QueueOptions {
  concurrency: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  hooks?: QueueHooks;
  onError?: (key: string, err: unknown, retryInMs: number) => void;
  /** Whether a key is background work, taken only when no other key waits; asked at every add. */
  background?: (key: string) => boolean;
  /**
   * Workers background keys may hold at once: all but a quarter of `concurrency` while no
   * foreground key was taken for a while, a quarter within `busyMs` of one (a burst of players'
   * work keeps most workers, and the apiserver, to itself). At least 1.
   */
  backgroundConcurrency?: { idle: number; busy: number; busyMs: number };
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly backlog: string[] = [];
  private readonly queued = new Set<string>();
  private readonly enqueuedAt = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private active = 0;
  private activeBackground = 0;
  private lastForeground = 0;
  private readonly backgroundKeys = new Set<string>();
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly process: (key: string) => Promise<ProcessResult | void>,
    private readonly opts: QueueOptions,
  ) {}

  get length(): number {
    return this.queue.length + this.backlog.length;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    this.opts.hooks?.onAdd?.();
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    const background = this.opts.background?.(key) ?? false;
    if (this.queued.has(key)) {
      // Became foreground work while waiting in the backlog (a pool instance was claimed).
      const at = background ? -1 : this.backlog.indexOf(key);
      if (at < 0) return;
      this.backlog.splice(at, 1);
      this.queue.push(key);
      this.pump();
      return;
    }
    this.queued.add(key);
    this.enqueuedAt.set(key, Date.now());
    (background ? this.backlog : this.queue).push(key);
    this.opts.hooks?.onDepth?.(this.length);
    this.pump();
  }

  /** Adds the key after `ms`; an earlier pending deadline for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref?.();
    this.delayed.set(key, { at, timer });
  }

  /** Forgets the failure history and any pending delayed add of a key (e.g. it was deleted). */
  forget(key: string): void {
    this.failures.delete(key);
    const d = this.delayed.get(key);
    if (d) {
      clearTimeout(d.timer);
      this.delayed.delete(key);
    }
  }

  pendingDelayed(key: string): number | undefined {
    return this.delayed.get(key)?.at;
  }

  /** Stops taking new keys and resolves when in-flight work has finished. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const d of this.delayed.values()) clearTimeout(d.timer);
    this.delayed.clear();
    this.queue.length = 0;
    this.backlog.length = 0;
    this.queued.clear();
    if (this.active === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /** Resolves when the queue is empty and no worker is busy (tests and benchmarks). */
  async drained(): Promise<void> {
    while (this.active > 0 || this.length > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private backoff(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const base = this.opts.baseDelayMs ?? 200;
    return Math.min(base * 2 ** (n - 1), this.opts.maxDelayMs ?? 60_000);
  }

  private pump(): void {
    const quarter = Math.max(1, Math.floor(this.opts.concurrency / 4));
    const bg = this.opts.backgroundConcurrency ?? { idle: Math.max(1, this.opts.concurrency - quarter), busy: quarter, busyMs: 2_000 };
    const backgroundLimit = Date.now() - this.lastForeground < bg.busyMs ? bg.busy : bg.idle;
    while (this.active < this.opts.concurrency && (this.queue.length > 0 || (this.backlog.length > 0 && this.activeBackground < backgroundLimit))) {
      const fromBacklog = this.queue.length === 0;
      const key = (fromBacklog ? this.backlog.shift() : this.queue.shift()) as string;
      if (fromBacklog) {
        this.activeBackground++;
        this.backgroundKeys.add(key);
      } else this.lastForeground = Date.now();
      this.queued.delete(key);
      this.processing.add(key);
      this.active++;
      const since = this.enqueuedAt.get(key);
      this.enqueuedAt.delete(key);
      if (since !== undefined) this.opts.hooks?.onLatency?.(Date.now() - since);
      this.opts.hooks?.onDepth?.(this.length);
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const started = Date.now();
    try {
      const result = await this.process(key);
      this.failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      const delay = this.backoff(key);
      this.opts.hooks?.onRetry?.();
      this.opts.onError?.(key, err, delay);
      this.addAfter(key, delay);
    } finally {
      this.opts.hooks?.onWorkDuration?.(Date.now() - started);
      this.processing.delete(key);
      this.active--;
      if (this.backgroundKeys.delete(key)) this.activeBackground--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
      if (this.active === 0 && this.length === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
