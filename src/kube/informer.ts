import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { IndexedStore, objectKey, revision, type Handler, type IndexFunc, type ObjectMetaLike, type StoreEvent, type WatchedCache } from '../read-model/store.js';

export { objectKey, type ObjectMetaLike };

/**
 * A list-watch cache that never gives up. client-node's informer stops on any non-410 error
 * and cannot notice a watch that goes silent; this one:
 *  - relists on 410 Gone, whenever the resource version is unknown, and (optionally) at the end
 *    of the first watch after `relistEveryMs`, as a safety net for events the apiserver lost,
 *  - retries every other failure with capped exponential backoff,
 *  - asks for bookmarks and a server-side watch timeout, and aborts a watch that has been quiet
 *    for longer than `stallMs` (a frozen connection sends nothing, not even bookmarks),
 *  - only calls handlers synchronously with plain objects; handlers are expected to enqueue keys.
 * The store (an IndexedStore: indexes, handler replay) holds objects as the apiserver serialises
 * them (timestamps are strings), after `transform`.
 */

export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

export interface InformerOptions<T> {
  name: string;
  kc: KubeConfig;
  /** Collection path, e.g. /api/v1/namespaces/ns/pods */
  path: string;
  labelSelector?: string;
  /** One page of the list, as plain JSON (see listRaw). */
  list: (continueToken: string | undefined) => Promise<ListPage<T>>;
  log: Logger;
  watchTimeoutSeconds?: number;
  stallMs?: number;
  /**
   * Relist instead of resuming when a watch ends this long after the last list. A watch resumes
   * from the last resource version it saw, so an event the apiserver failed to deliver would
   * otherwise be missed until the process restarts; this bounds how long.
   */
  relistEveryMs?: number;
  onRelist?: () => void;
  onError?: () => void;
  /** Counts objects `repair` was told were behind the apiserver. */
  onStale?: (count: number) => void;
  /**
   * Trims each object before it is cached (after managedFields are dropped): keep only what the
   * cache's readers use. Handlers see the trimmed object.
   */
  transform?: (obj: T) => T;
}

export class Informer<T extends ObjectMetaLike> implements WatchedCache<T> {
  private readonly store: IndexedStore<T>;
  private resourceVersion = '';
  private stopped = true;
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private abortCurrent: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private lastActivity = 0;
  private lastRelist = 0;
  /** When the latest relist began (0: never). */
  private relistStartedAt = 0;
  private loopDone: Promise<void> | undefined;
  /**
   * Objects stored by assume() ahead of their watch event, with the revision written: watch
   * events older than it are skipped for them (they would take the cache back), until the watch
   * reaches it.
   */
  private readonly assumed = new Map<string, bigint>();

  constructor(private readonly opts: InformerOptions<T>) {
    this.store = new IndexedStore<T>((err) => opts.log.error({ err, informer: opts.name }, 'Informer handler threw'));
  }

  private trim(obj: T): T {
    const slimmed = slim(obj);
    return this.opts.transform ? this.opts.transform(slimmed) : slimmed;
  }

  /** Subscribes; an `add` handler is first called with every object already cached. */
  on(event: StoreEvent, handler: Handler<T>): void {
    this.store.on(event, handler);
  }

  off(event: StoreEvent, handler: Handler<T>): void {
    this.store.off(event, handler);
  }

  addIndexer(name: string, fn: IndexFunc<T>): void {
    this.store.addIndexer(name, fn);
  }

  byIndex(index: string, value: string): T[] {
    return this.store.byIndex(index, value);
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return this.store.list();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Starts the loop; resolves once the first list has filled the store. */
  start(): Promise<void> {
    if (!this.stopped) return this.waitForSync();
    this.stopped = false;
    this.loopDone = this.loop();
    return this.waitForSync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abortCurrent?.();
    this.wake?.();
    await this.loopDone;
  }

  /** Forces the current watch to end and the next one to relist; used by tests and the watchdog. */
  restartWatch(relist = false): void {
    if (relist) this.resourceVersion = '';
    this.abortCurrent?.();
  }

  /**
   * Called with objects found behind the apiserver since `suspectedSince` (ms): the watch lost
   * their events. Reports them and relists, unless a relist is already pending or began after
   * the evidence was gathered (it held those objects; another would not do better).
   */
  repair(keys: string[], suspectedSince: number): void {
    this.opts.onStale?.(keys.length);
    this.opts.log.warn({ informer: this.opts.name, objects: keys }, 'Cache missed an update the apiserver has; relisting');
    if (this.resourceVersion === '' || this.relistStartedAt >= suspectedSince) return;
    this.restartWatch(true);
  }

  /**
   * Stores `obj`, the apiserver's answer to a write of this replica, before the watch delivers
   * it, so the replica's next read shows its own write at once (the kube-scheduler's assume
   * cache). Only when its revision is past everything the watch has delivered: otherwise the
   * store already holds it or something later (a deletion included), and storing it would bring
   * back an older state. Until the watch catches up, its older events for that key are skipped.
   * Takes `obj` over (it is trimmed in place, as a watched object is): callers hand in an answer
   * they only read afterwards.
   */
  assume(obj: T): boolean {
    const rv = revision(obj);
    const seen = revision({ metadata: { resourceVersion: this.resourceVersion } });
    if (rv === undefined || seen === undefined || rv <= seen || !this.synced) return false;
    const trimmed = this.trim(obj);
    const key = objectKey(trimmed);
    const held = this.assumed.get(key);
    if (held !== undefined && held >= rv) return false;
    this.assumed.set(key, rv);
    this.store.set(key, trimmed);
    return true;
  }

  /** Whether a watch event (or listed item) for `key` is older than what assume() stored. */
  private behindAssumed(key: string, obj: T): boolean {
    const held = this.assumed.get(key);
    if (held === undefined) return false;
    const rv = revision(obj);
    if (rv !== undefined && rv < held) return true;
    this.assumed.delete(key);
    return false;
  }

  private waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  private async relist(): Promise<void> {
    this.relistStartedAt = Date.now();
    const seen = new Map<string, T>();
    let token: string | undefined;
    let rv = '';
    do {
      const page = await this.opts.list(token);
      for (const item of page.items) {
        // An object unchanged since it was cached is kept as it is: a periodic relist of a large
        // cache then costs the list and the comparison, not a transform of every object.
        const key = objectKey(item);
        const old = this.store.get(key);
        const same = old !== undefined && old.metadata?.resourceVersion === item.metadata?.resourceVersion;
        seen.set(key, same ? old : this.trim(item));
      }
      token = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (token);
    const listed = revision({ metadata: { resourceVersion: rv } });
    for (const [key] of [...this.store.entries()]) {
      // Written after the list was taken (assume()): the list cannot know of it yet.
      const held = this.assumed.get(key);
      if (held !== undefined && listed !== undefined && held > listed) continue;
      if (!seen.has(key)) this.store.delete(key);
    }
    for (const [key, obj] of seen) {
      if (this.behindAssumed(key, obj)) continue;
      const old = this.store.get(key);
      if (old === obj || (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion)) continue;
      this.store.set(key, obj);
    }
    // What the list holds replaces what was assumed before it.
    for (const [key, held] of this.assumed) if (listed === undefined || held <= listed) this.assumed.delete(key);
    this.resourceVersion = rv;
    this.lastRelist = Date.now();
    this.opts.onRelist?.();
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private async loop(): Promise<void> {
    let backoff = 250;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist();
        if (this.stopped) break;
        await this.watchOnce();
        backoff = 250;
        const every = this.opts.relistEveryMs;
        if (every !== undefined && every > 0 && Date.now() - this.lastRelist >= every) this.resourceVersion = '';
      } catch (err) {
        if (this.stopped) break;
        const code = (err as { statusCode?: number; code?: number }).statusCode ?? (err as { code?: number }).code;
        if (code === 410) {
          this.resourceVersion = '';
          continue;
        }
        this.opts.onError?.();
        this.opts.log.warn({ informer: this.opts.name, err: (err as Error).message, retryInMs: backoff }, 'Watch failed; retrying');
        await this.sleep(backoff);
        // Capped low: an apiserver that comes back should be noticed within seconds.
        backoff = Math.min(backoff * 2, 5_000);
        // After repeated failures the stored resource version may be compacted: relist.
        if (backoff >= 4_000) this.resourceVersion = '';
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  /** One watch from the current resource version; resolves when the server ends it normally. */
  private watchOnce(): Promise<void> {
    const timeoutSeconds = this.opts.watchTimeoutSeconds ?? 240 + Math.floor(Math.random() * 60);
    const stallMs = this.opts.stallMs ?? (timeoutSeconds + 30) * 1000;
    return new Promise<void>((resolve, reject) => {
      let finished = false;
      let abort: AbortController | undefined;
      const finish = (err?: unknown) => {
        if (finished) return;
        finished = true;
        clearInterval(watchdog);
        this.abortCurrent = undefined;
        abort?.abort();
        if (err) reject(err instanceof Error ? err : Object.assign(new Error('watch failed'), err));
        else resolve();
      };
      this.lastActivity = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - this.lastActivity > stallMs) {
          this.opts.log.warn({ informer: this.opts.name, quietMs: Date.now() - this.lastActivity }, 'Watch went silent; restarting it');
          finish(new Error('watch stalled'));
        }
      }, Math.min(5_000, Math.max(250, stallMs / 4)));
      this.abortCurrent = () => finish();
      const params: Record<string, string | number | boolean> = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds,
      };
      if (this.opts.labelSelector) params.labelSelector = this.opts.labelSelector;
      new Watch(this.opts.kc)
        .watch(this.opts.path, params, (type: string, obj: T & { code?: number }) => this.onEvent(type, obj, finish), (err: unknown) => finish(err ?? undefined))
        .then((ctrl) => {
          abort = ctrl;
          if (finished) ctrl.abort();
        })
        .catch((err: unknown) => finish(err));
    });
  }

  private onEvent(type: string, obj: T & { code?: number }, finish: (err?: unknown) => void): void {
    this.lastActivity = Date.now();
    const rv = obj.metadata?.resourceVersion;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED': {
        if (this.behindAssumed(objectKey(obj), obj)) break;
        const trimmed = this.trim(obj);
        this.store.set(objectKey(trimmed), trimmed);
        break;
      }
      case 'DELETED':
        this.assumed.delete(objectKey(obj));
        this.store.delete(objectKey(obj), obj);
        break;
      case 'BOOKMARK':
        break;
      case 'ERROR':
        finish(Object.assign(new Error(`watch error event ${String(obj.code)}`), { statusCode: obj.code }));
        return;
      default:
        return;
    }
    if (rv) this.resourceVersion = rv;
  }
}

/**
 * Drops metadata.managedFields before an object is cached: nothing in the engine reads them, and
 * for objects written with server-side apply they are often the largest part of the object.
 */
function slim<T extends ObjectMetaLike>(obj: T): T {
  const meta = obj.metadata as { managedFields?: unknown } | undefined;
  if (meta?.managedFields !== undefined) delete meta.managedFields;
  return obj;
}
