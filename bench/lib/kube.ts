import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Watch } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../../scripts/lib/control-plane.js';
import { CHALLENGE_KIND, CHALLENGE_PLURAL, GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import { createKube, type Kube } from '../../src/kube/client.js';
import { getJson } from '../../src/kube/raw.js';
import { desiredSession } from '../../src/reconcile/desired-session.js';

/**
 * Apiserver helpers shared by the scenarios: namespaces, the challenges every scenario installs,
 * sessions created directly (as a scoreboard or an operator would), bounded-concurrency loops
 * and watches that timestamp what they see.
 */

export { createKube, type Kube };

/** Typed clients for the benchmark itself; connection reuse comes from src/kube/client.ts. */
export const createBenchKube = createKube;

export const PSA_LABELS = {
  'pod-security.kubernetes.io/enforce': 'restricted',
  'pod-security.kubernetes.io/enforce-version': 'latest',
};

/** Runs `fn` over `items` with at most `concurrency` calls in flight; rejects on the first error. */
export async function pool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

export async function withRetry<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const code = (err as { code?: number }).code;
      // Only transient answers (throttling, timeouts, resets) are worth another try.
      if (i >= attempts || (code !== undefined && code !== 429 && code < 500)) throw err;
      await new Promise((r) => setTimeout(r, 200 * i));
    }
  }
}

export async function createNamespace(kube: Kube, name: string, labels: Record<string, string> = {}): Promise<void> {
  await kube.core.createNamespace({ body: { metadata: { name, labels: { 'challenge-engine.io/bench': 'true', ...labels } } } });
}

/** Starts deleting a namespace (a missing one is fine). */
export async function deleteNamespace(kube: Kube, name: string): Promise<void> {
  try {
    await kube.core.deleteNamespace({ name });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
}

/** Waits until a namespace no longer exists; false when `waitMs` passes first. */
export async function namespaceGone(kube: Kube, name: string, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await kube.core.readNamespace({ name });
    } catch (err) {
      if ((err as { code?: number }).code === 404) return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export interface ChallengeDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown> & { flag?: { static?: { secretRef: { name: string; key: string } } } };
}

/** The sample Challenges in challenges/*.yaml. */
export function sampleChallenges(): ChallengeDoc[] {
  const dir = join(REPO_ROOT, 'challenges');
  const out: ChallengeDoc[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      const o = doc.toJS() as ChallengeDoc | null;
      if (o?.kind === CHALLENGE_KIND) out.push(o);
    }
  }
  return out;
}

/** The samples plus `extra` renamed copies of the dynamic-flag samples (e.g. pwn-echo-2). */
export function challengeDocs(extra = 0): ChallengeDoc[] {
  const samples = sampleChallenges();
  const docs: ChallengeDoc[] = [...samples];
  const dynamic = samples.filter((c) => !c.spec.flag?.static);
  for (let i = 0; i < extra; i++) {
    const base = dynamic[i % dynamic.length];
    if (!base) break;
    docs.push({ ...structuredClone(base), metadata: { name: `${base.metadata.name}-${Math.floor(i / dynamic.length) + 2}` } });
  }
  return docs;
}

/**
 * Installs challengeDocs(extra), and the Secret the static-flag sample reads, so a user can hold
 * more sessions than there are samples. Returns the challenge names.
 */
export async function installChallenges(kube: Kube, namespace: string, extra = 0): Promise<string[]> {
  const docs = challengeDocs(extra);
  for (const c of docs) {
    const ref = c.spec.flag?.static?.secretRef;
    if (ref) {
      await kube.core.createNamespacedSecret({ namespace, body: { metadata: { name: ref.name }, stringData: { [ref.key]: 'CTF{bench_static_flag}' } } }).catch((err: unknown) => {
        if ((err as { code?: number }).code !== 409) throw err;
      });
    }
    await kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: CHALLENGE_PLURAL, body: c });
  }
  return docs.map((c) => c.metadata.name);
}

/** RFC 3339 with milliseconds, which the engine's expiry parser accepts. */
export function isoMs(ms: number): string {
  return new Date(ms).toISOString();
}

/** A session as the API writes it; the expiry keeps milliseconds, which the expiry scenario measures. */
export function sessionObject(name: string, challenge: string, user: string, expiresAtMs: number): object {
  return desiredSession({ name, challenge, user, expiresAt: isoMs(expiresAtMs) });
}

export interface CreatedSession {
  name: string;
  uid: string;
  createdAt: number;
}

export async function createSessionDirect(kube: Kube, namespace: string, name: string, challenge: string, user: string, expiresAtMs: number): Promise<CreatedSession> {
  const created = (await withRetry(() =>
    kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, body: sessionObject(name, challenge, user, expiresAtMs) }),
  )) as { metadata: { uid: string } };
  return { name, uid: created.metadata.uid, createdAt: Date.now() };
}

export interface WatchedObject {
  metadata?: { name?: string; uid?: string; creationTimestamp?: string; annotations?: Record<string, string>; resourceVersion?: string };
  spec?: { pool?: boolean; challenge?: string };
  status?: { phase?: string; readyAt?: string; solved?: boolean; claimedAt?: string };
}

/**
 * A watch that timestamps events as they arrive. It records, per object name, when it was first
 * seen, first seen in a phase, and deleted; and lets callers wait for a predicate over them.
 */
export class Observer {
  readonly firstSeen = new Map<string, number>();
  readonly phaseAt = new Map<string, Map<string, number>>();
  readonly deletedAt = new Map<string, number>();
  readonly last = new Map<string, WatchedObject>();
  /** For the names passed to trackStatus: how many different statuses the watch has shown. */
  private readonly statuses = new Map<string, { seen: number; last: string }>();
  private abort: AbortController | undefined;
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  private failed: Error | undefined;
  private restarts = 0;

  /** `phasesOf`: the phases an object is in (default: its status.phase), each timestamped when first seen. */
  constructor(
    private readonly kube: Kube,
    private readonly path: string,
    private readonly phasesOf: (obj: WatchedObject) => string[] = (obj) => (obj.status?.phase ? [obj.status.phase] : []),
  ) {}

  static sessions(kube: Kube, namespace: string, phasesOf?: (obj: WatchedObject) => string[]): Observer {
    return new Observer(kube, `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${SESSION_PLURAL}`, phasesOf);
  }

  static pods(kube: Kube, namespace: string): Observer {
    return new Observer(kube, `/api/v1/namespaces/${namespace}/pods`);
  }

  /** Starts watching from "now" (resourceVersion of a fresh list) and resolves once connected. */
  async start(): Promise<void> {
    await this.watchFrom(await this.listAll());
  }

  /** Lists what exists (recording it) and returns the list's resource version. */
  private async listAll(): Promise<string> {
    let token: string | undefined;
    let rv = '';
    do {
      const q = new URLSearchParams({ limit: '1000', ...(token ? { continue: token } : {}) });
      const page = await getJson<{ metadata?: { resourceVersion?: string; continue?: string }; items: WatchedObject[] }>(this.kube.kc, `${this.path}?${q.toString()}`);
      for (const o of page.items) this.record('ADDED', o);
      rv = page.metadata?.resourceVersion ?? rv;
      token = page.metadata?.continue || undefined;
    } while (token);
    return rv;
  }

  private async watchFrom(resourceVersion: string): Promise<void> {
    let rv = resourceVersion;
    this.abort = await new Watch(this.kube.kc).watch(
      this.path,
      { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 3600 },
      (type: string, obj: WatchedObject) => {
        rv = obj.metadata?.resourceVersion ?? rv;
        if (type !== 'BOOKMARK') this.record(type, obj);
      },
      (err: unknown) => {
        if (!this.abort) return;
        // A dropped watch resumes from the last version seen, a bounded number of times.
        if (this.restarts++ < 20) {
          this.watchFrom(rv).catch((e: unknown) => this.fail(e));
        } else this.fail(err ?? new Error('watch ended'));
      },
    );
  }

  private fail(err: unknown): void {
    this.failed = err instanceof Error ? err : new Error(String(err));
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  private record(type: string, obj: WatchedObject): void {
    const name = obj.metadata?.name;
    if (!name) return;
    const now = Date.now();
    if (type === 'DELETED') {
      if (!this.deletedAt.has(name)) this.deletedAt.set(name, now);
      this.last.delete(name);
    } else {
      if (!this.firstSeen.has(name)) this.firstSeen.set(name, now);
      this.last.set(name, obj);
      const tracked = this.statuses.get(name);
      if (tracked && obj.status !== undefined) {
        const text = JSON.stringify(obj.status);
        if (text !== tracked.last) this.statuses.set(name, { seen: tracked.seen + 1, last: text });
      }
      for (const phase of this.phasesOf(obj)) {
        let m = this.phaseAt.get(name);
        if (!m) this.phaseAt.set(name, (m = new Map<string, number>()));
        if (!m.has(phase)) m.set(phase, now);
      }
    }
    if (this.waiters.length > 0) this.waiters = this.waiters.filter((w) => (w.check() ? (w.resolve(), false) : true));
  }

  /**
   * Counts the status versions of `name` from now on: each is one status write by its only
   * writer (the engine), so a session's status writes can be told from everything else.
   */
  trackStatus(name: string): void {
    if (!this.statuses.has(name)) this.statuses.set(name, { seen: 0, last: '' });
  }

  /** Status versions of a tracked object seen so far. */
  statusVersions(name: string): number {
    return this.statuses.get(name)?.seen ?? 0;
  }

  /** The first time `name` was seen in `phase`. */
  when(name: string, phase: string): number | undefined {
    return this.phaseAt.get(name)?.get(phase);
  }

  count(phase: string, names?: Iterable<string>): number {
    let n = 0;
    for (const name of names ?? this.phaseAt.keys()) if (this.phaseAt.get(name)?.has(phase)) n++;
    return n;
  }

  /** Resolves when `check` holds, re-evaluated on every event; false when the time is up. */
  async until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== ok);
        resolve(false);
      }, timeoutMs);
      const ok = () => resolve(true);
      this.waiters.push({ check, resolve: ok });
    });
    clearTimeout(timer);
    if (this.failed) throw this.failed;
    return done && check();
  }

  stop(): void {
    const a = this.abort;
    this.abort = undefined;
    a?.abort();
    for (const w of this.waiters.splice(0)) w.resolve();
  }
}
