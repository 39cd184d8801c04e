import { ApiException, type KubernetesObject } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Caches, type Raw } from '../../src/read-model/caches.js';
import { IndexedStore, objectKey, revision, type ObjectMetaLike, type WatchedCache } from '../../src/read-model/store.js';
import type { InvolvedObject, Writer } from '../../src/kube/writes.js';
import { OWNED_KINDS, type Owned, type OwnedCacheName } from '../../src/controller/owned-kinds.js';
import { LABEL_CHALLENGE, LABEL_TEAM_HASH, LABEL_USER_HASH } from '../../src/api/group.js';
import type { ChallengeSession, Owner } from '../../src/api/session.js';
import { teamHash, userHash } from '../../src/reconcile/names.js';

/**
 * In-memory stand-ins for orchestration unit tests (sample-controller style): caches filled by
 * hand instead of by a watch, and a writer that records every write instead of sending it.
 * Integration tests run the same code against the real apiserver.
 */

export const silentLog = pino({ level: 'silent' });

/** A cache that tests fill with `put`; it applies the transform a watch would apply. */
export class MemoryCache<T extends ObjectMetaLike> extends IndexedStore<T> implements WatchedCache<T> {
  readonly repairs: string[][] = [];

  /** `namespace`: given to objects put without one, as the apiserver would. */
  constructor(
    private readonly transform: (obj: T) => T = (o) => o,
    private readonly namespace?: string,
  ) {
    super((err) => {
      throw err;
    });
  }

  put(obj: T): T {
    const copy = structuredClone(obj);
    if (this.namespace && copy.metadata && !copy.metadata.namespace) copy.metadata.namespace = this.namespace;
    const stored = this.transform(copy);
    this.set(objectKey(stored), stored);
    return stored;
  }

  remove(obj: ObjectMetaLike): void {
    this.delete(objectKey({ metadata: { namespace: this.namespace, ...obj.metadata } }));
  }

  hasSynced(): boolean {
    return true;
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  repair(keys: string[]): void {
    this.repairs.push(keys);
  }

  /** As Informer.assume, against the stored object's revision (there is no watch here). */
  assume(obj: T): boolean {
    const rv = revision(obj);
    const key = objectKey({ metadata: { namespace: this.namespace, ...obj.metadata } });
    const held = revision(this.get(key));
    if (rv === undefined || (held !== undefined && rv <= held)) return false;
    this.put(obj);
    return true;
  }
}

export interface MemoryCaches {
  caches: Caches;
  sessions: MemoryCache<Raw>;
  challenges: MemoryCache<Raw>;
}

export function memoryCaches(namespace: string): MemoryCaches {
  const made: Record<string, MemoryCache<Raw>> = {};
  const caches = new Caches(namespace, (o) => (made[o.name] = new MemoryCache<Raw>(o.transform, namespace)));
  return { caches, sessions: made.challengesessions!, challenges: made.challenges! };
}

/** One cache per owned kind, with the kind's own trimming, as the controller builds them. */
export function memoryChildren(namespace?: string): Record<OwnedCacheName, MemoryCache<Owned>> {
  return Object.fromEntries(OWNED_KINDS.map((k) => [k.cache, new MemoryCache<Owned>(k.trim, namespace)])) as Record<OwnedCacheName, MemoryCache<Owned>>;
}

/** What LiveReads.sessionsAt selects from `sessions`: the owner's hash label and the challenge label. */
export function selectByOwner(sessions: Iterable<ChallengeSession>, owner: Owner, challenge: string | undefined): ChallengeSession[] {
  const [key, value] = owner.mode === 'team' ? [LABEL_TEAM_HASH, teamHash(owner.team)] : [LABEL_USER_HASH, userHash(owner.user)];
  return [...sessions].filter((s) => s.metadata.labels?.[key] === value && (challenge === undefined || s.metadata.labels[LABEL_CHALLENGE] === challenge));
}

export interface Write {
  verb: 'apply' | 'create' | 'patch-status' | 'patch-metadata' | 'delete' | 'event' | 'patch';
  /** Kind and name, e.g. "Pod s-1" or "ChallengeSession s-1". */
  target: string;
  body?: unknown;
  resourceVersion?: string;
  /** The write was attempted and refused with this error (see RecordingWriter.fail). */
  refused?: string;
}

export function apiError(code: number, reason: string): ApiException<string> {
  return new ApiException(code, reason, JSON.stringify({ kind: 'Status', reason, message: `${reason} (test)`, code }), {});
}

/**
 * Records writes, refused ones too. `fail` decides, per write, to throw instead (e.g. an AlreadyExists); `created`
 * gives what a create returns. Events are recorded under verb "event".
 */
export class RecordingWriter implements Writer {
  readonly writes: Write[] = [];
  fail: (w: Write) => Error | undefined = () => undefined;
  /** Called with what a create stored (e.g. to show it in a memory cache, as a watch would). */
  onCreated: (obj: unknown) => void = () => {};
  /** Called with every write that took effect (e.g. to apply it to an in-memory apiserver view). */
  onWrite: (w: Write) => void = () => {};
  private uids = 0;

  private record(w: Write): void {
    const err = this.fail(w);
    this.writes.push(err ? { ...w, refused: err.message } : w);
    if (err) throw err;
    this.onWrite(w);
  }

  /** Writes that took effect, other than Events (best effort, asserted separately). */
  objectWrites(): Write[] {
    return this.writes.filter((w) => w.verb !== 'event' && !w.refused);
  }

  events(): Write[] {
    return this.writes.filter((w) => w.verb === 'event');
  }

  // async: a refused write rejects, as the real writer's calls do.
   
  async apply<T extends KubernetesObject>(obj: T): Promise<T> {
    this.record({ verb: 'apply', target: `${obj.kind} ${obj.metadata?.name}`, body: obj });
    return structuredClone(obj);
  }

   
  async createSession(namespace: string, body: object): Promise<unknown> {
    const b = body as { metadata: { name: string } };
    this.record({ verb: 'create', target: `ChallengeSession ${b.metadata.name}`, body });
    this.uids++;
    const stored = { ...structuredClone(body), metadata: { ...b.metadata, namespace, uid: `uid-${this.uids}`, resourceVersion: String(100 + this.uids), creationTimestamp: '2030-01-01T10:00:00Z' } };
    this.onCreated(structuredClone(stored));
    return stored;
  }

   
  async patchSessionStatus(_ns: string, name: string, status: Record<string, unknown>, resourceVersion?: string): Promise<void> {
    this.record({ verb: 'patch-status', target: `ChallengeSession ${name}`, body: status, resourceVersion });
  }

   
  async patchSessionMetadata(_ns: string, name: string, patch: Record<string, unknown>, resourceVersion?: string): Promise<unknown> {
    this.record({ verb: 'patch-metadata', target: `ChallengeSession ${name}`, body: patch, resourceVersion });
    return this.patched(name, patch, resourceVersion);
  }

  /** What a metadata patch returns (the stored object); undefined unless a test says. */
  patched: (name: string, patch: Record<string, unknown>, resourceVersion?: string) => unknown = () => undefined;

   
  async deleteSession(_ns: string, name: string, uid?: string, resourceVersion?: string): Promise<void> {
    this.record({ verb: 'delete', target: `ChallengeSession ${name}`, body: { uid }, resourceVersion });
  }

   
  async event(involved: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    this.record({ verb: 'event', target: `${involved.kind} ${involved.name}`, body: { type, reason, message } });
  }

  async createOutbox(_namespace: string, body: { metadata?: { name?: string } }): Promise<void> {
    this.record({ verb: 'create', target: `ConfigMap ${body.metadata?.name ?? ''}`, body });
  }

  async patchOutbox(_namespace: string, name: string, patch: Record<string, unknown>): Promise<void> {
    this.record({ verb: 'patch', target: `ConfigMap ${name}`, body: patch });
  }

  async deleteOutbox(_namespace: string, name: string): Promise<void> {
    this.record({ verb: 'delete', target: `ConfigMap ${name}` });
  }
}
