/**
 * An indexed object store with event handlers, the part of a shared informer that does not talk
 * to the apiserver (client-go's ThreadSafeStore plus its handler registry). The Informer keeps
 * its cache in one; unit tests fill one by hand.
 *
 * Invariants:
 *  - indexes are updated before handlers run, so a handler sees a consistent store;
 *  - a handler added with `on('add', ...)` is first called with every object already stored,
 *    so a reader subscribing after the cache filled misses nothing (client-go replays the same);
 *  - handlers are called synchronously with plain objects; one that throws is reported and the
 *    others still run.
 */

export interface ObjectMetaLike {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
}

export type StoreEvent = 'add' | 'update' | 'delete';
export type Handler<T> = (obj: T, old?: T) => void;
/** The index values of an object: none, one or several. */
export type IndexFunc<T> = (obj: T) => string | readonly string[] | undefined;

/** What readers of a cache use: lookups by key and by index, and change notifications. */
export interface Cache<T> {
  get(key: string): T | undefined;
  list(): T[];
  /** Objects whose index `index` holds `value`. */
  byIndex(index: string, value: string): T[];
  on(event: StoreEvent, handler: Handler<T>): void;
  off(event: StoreEvent, handler: Handler<T>): void;
  hasSynced(): boolean;
}

/** A cache that is filled by a watch and can be told it missed something. */
export interface WatchedCache<T> extends Cache<T> {
  addIndexer(name: string, fn: IndexFunc<T>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Objects found behind the apiserver since `suspectedSince` (ms): relist (see Informer). */
  repair(keys: string[], suspectedSince: number): void;
  /**
   * Stores what the apiserver answered to a write of this replica ahead of its watch event, when
   * it is newer than anything the cache has seen (see Informer.assume); false when it was not.
   */
  assume(obj: T): boolean;
}

/**
 * A resource version as a number, or undefined when it is not one. The apiserver calls them
 * opaque; etcd-backed ones are etcd revisions, which only grow, and the scheduler's assume cache
 * compares them the same way. Only used to order a write's answer against watch events.
 */
export function revision(obj: ObjectMetaLike | undefined): bigint | undefined {
  const rv = obj?.metadata?.resourceVersion;
  return rv !== undefined && /^[0-9]{1,19}$/.test(rv) ? BigInt(rv) : undefined;
}

export function objectKey(obj: ObjectMetaLike): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}

function values(v: string | readonly string[] | undefined): readonly string[] {
  if (v === undefined) return [];
  return typeof v === 'string' ? [v] : v;
}

export class IndexedStore<T extends ObjectMetaLike> {
  private readonly items = new Map<string, T>();
  private readonly indexers = new Map<string, IndexFunc<T>>();
  /** index name -> index value -> keys */
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private readonly handlers: Record<StoreEvent, Handler<T>[]> = { add: [], update: [], delete: [] };

  constructor(private readonly onHandlerError: (err: unknown) => void = () => {}) {}

  get size(): number {
    return this.items.size;
  }

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  list(): T[] {
    return [...this.items.values()];
  }

  entries(): IterableIterator<[string, T]> {
    return this.items.entries();
  }

  /** Adds an index; objects already stored are indexed at once. */
  addIndexer(name: string, fn: IndexFunc<T>): void {
    if (this.indexers.has(name)) throw new Error(`index ${name} already exists`);
    this.indexers.set(name, fn);
    this.indexes.set(name, new Map());
    for (const [key, obj] of this.items) this.indexOne(name, fn, key, obj);
  }

  byIndex(index: string, value: string): T[] {
    const idx = this.indexes.get(index);
    if (!idx) throw new Error(`no index named ${index}`);
    const out: T[] = [];
    for (const key of idx.get(value) ?? []) {
      const obj = this.items.get(key);
      if (obj) out.push(obj);
    }
    return out;
  }

  on(event: StoreEvent, handler: Handler<T>): void {
    this.handlers[event].push(handler);
    if (event === 'add') for (const obj of this.list()) this.call(handler, obj);
  }

  off(event: StoreEvent, handler: Handler<T>): void {
    const list = this.handlers[event];
    const i = list.indexOf(handler);
    if (i >= 0) list.splice(i, 1);
  }

  /** Stores `obj` under `key` and tells the handlers (add, or update with the old object). */
  set(key: string, obj: T): void {
    const old = this.items.get(key);
    if (old) this.unindex(key, old);
    this.items.set(key, obj);
    this.index(key, obj);
    if (old) this.emit('update', obj, old);
    else this.emit('add', obj);
  }

  /** Removes `key`; handlers get the stored object, or `fallback` when none was stored. */
  delete(key: string, fallback?: T): void {
    const old = this.items.get(key);
    if (old) {
      this.unindex(key, old);
      this.items.delete(key);
    }
    const gone = old ?? fallback;
    if (gone) this.emit('delete', gone);
  }

  private index(key: string, obj: T): void {
    for (const [name, fn] of this.indexers) this.indexOne(name, fn, key, obj);
  }

  private indexOne(name: string, fn: IndexFunc<T>, key: string, obj: T): void {
    const idx = this.indexes.get(name);
    if (!idx) return;
    for (const v of values(fn(obj))) {
      let keys = idx.get(v);
      if (!keys) idx.set(v, (keys = new Set()));
      keys.add(key);
    }
  }

  private unindex(key: string, obj: T): void {
    for (const [name, fn] of this.indexers) {
      const idx = this.indexes.get(name);
      if (!idx) continue;
      for (const v of values(fn(obj))) {
        const keys = idx.get(v);
        keys?.delete(key);
        if (keys?.size === 0) idx.delete(v);
      }
    }
  }

  private emit(event: StoreEvent, obj: T, old?: T): void {
    // A copy: a handler may unsubscribe itself while being called.
    for (const h of [...this.handlers[event]]) this.call(h, obj, old);
  }

  private call(h: Handler<T>, obj: T, old?: T): void {
    try {
      h(obj, old);
    } catch (err) {
      this.onHandlerError(err);
    }
  }
}
