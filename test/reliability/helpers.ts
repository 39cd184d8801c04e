import type { KubernetesObject } from '@kubernetes/client-node';
import { LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import { createTokenIssuer } from '../../src/http/auth.js';
import type { Kube } from '../../src/kube/client.js';
import { BASELINE_POLICY_NAME } from '../../src/reconcile/network-policy.js';
import { EngineProcess, engineEnv, listSessions, TEST_TOKEN_SECRET } from '../support/engine.js';
import { freePort, httpJson } from '../support/faults.js';
import type { TestCluster } from '../support/kube.js';

/** Shared by the reliability tests: engine processes with the API on, tokens, and leak checks. */

const issuer = createTokenIssuer(TEST_TOKEN_SECRET);

export function token(user: string, admin = false): Promise<string> {
  return issuer.issue({ user, admin, ttlSeconds: 3600 });
}

/** A player token of a member of `team`. */
export function teamToken(user: string, team: string): Promise<string> {
  return issuer.issue({ user, team, ttlSeconds: 3600 });
}

/** A deterministic PRNG (mulberry32) so "random" fault timings can be replayed from the seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An engine child process serving the API on a free loopback port. */
export class ApiEngine {
  readonly proc: EngineProcess;
  readonly base: string;
  /** Output of earlier incarnations, kept for log assertions. */
  private readonly pastOutput: string[] = [];

  private constructor(
    readonly port: number,
    env: Record<string, string>,
  ) {
    this.proc = new EngineProcess(env);
    this.base = `http://127.0.0.1:${port}`;
  }

  static async create(cluster: TestCluster, extra: Record<string, string> = {}): Promise<ApiEngine> {
    const port = await freePort();
    return new ApiEngine(port, engineEnv(cluster.kubeconfig, cluster.namespace, { CTF_API: 'true', PORT: String(port), HOST: '127.0.0.1', ...extra }));
  }

  get pid(): number | undefined {
    return this.proc.child?.pid;
  }

  /** Starts the process and waits until /readyz answers 200; returns how long that took. */
  async start(timeoutMs = 60_000): Promise<number> {
    if (this.proc.output) this.pastOutput.push(this.proc.output);
    this.proc.output = '';
    const at = Date.now();
    this.proc.start();
    while (Date.now() - at < timeoutMs) {
      const child = this.proc.child;
      if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`the engine exited during start:\n${this.proc.output.slice(-3000)}`);
      const ok = await httpJson(this.base, 'GET', '/readyz', undefined, undefined, 1000).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return Date.now() - at;
      await sleep(100);
    }
    throw new Error(`the engine was not ready within ${timeoutMs / 1000}s:\n${this.proc.output.slice(-3000)}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.proc.kill(signal);
  }

  /** JSON log lines of every incarnation of this engine. */
  logLines(): Record<string, unknown>[] {
    return [...this.pastOutput, this.proc.output]
      .join('\n')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  }
}

type Child = KubernetesObject & { metadata?: { ownerReferences?: { uid: string; controller?: boolean }[] } };

/** Every object labelled as the engine's in the namespace, by kind. */
export async function managedObjects(kube: Kube, namespace: string) {
  const sel = { namespace, labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}` };
  const [pods, services, secrets, policies] = await Promise.all([
    kube.core.listNamespacedPod(sel),
    kube.core.listNamespacedService(sel),
    kube.core.listNamespacedSecret(sel),
    kube.net.listNamespacedNetworkPolicy(sel),
  ]);
  const tag = <T extends Child>(kind: string, items: T[]) => items.map((o) => Object.assign(o, { kind }));
  return {
    pods: pods.items,
    all: [...tag('Pod', pods.items), ...tag('Service', services.items), ...tag('Secret', secrets.items), ...tag('NetworkPolicy', policies.items)] as Child[],
  };
}

export interface LeakReport {
  sessions: ChallengeSession[];
  /** kind/name of engine objects whose controller owner is not a live session (the namespace baseline policy excepted). */
  orphans: string[];
  /** Sessions with more than one Pod. */
  duplicatePods: string[];
  /** Live sessions missing one of their four children. */
  incomplete: string[];
  children: number;
}

export async function leakReport(kube: Kube, namespace: string): Promise<LeakReport> {
  const sessions = await listSessions(kube, namespace);
  const live = new Set(sessions.filter((s) => !s.metadata.deletionTimestamp).map((s) => s.metadata.uid));
  const { pods, all } = await managedObjects(kube, namespace);
  const owned = all.filter((o) => !(o.kind === 'NetworkPolicy' && o.metadata?.name === BASELINE_POLICY_NAME));
  const orphans = owned.filter((o) => !o.metadata?.ownerReferences?.some((r) => r.controller && live.has(r.uid))).map((o) => `${o.kind}/${o.metadata?.name}`);
  const perSession = new Map<string, number>();
  for (const p of pods) {
    const s = p.metadata?.labels?.[LABEL_SESSION] ?? '';
    perSession.set(s, (perSession.get(s) ?? 0) + 1);
  }
  const duplicatePods = [...perSession].filter(([, n]) => n > 1).map(([s]) => s);
  const kindsOf = new Map<string, Set<string>>();
  for (const o of owned) {
    const uid = o.metadata?.ownerReferences?.find((r) => r.controller)?.uid ?? '';
    if (!kindsOf.has(uid)) kindsOf.set(uid, new Set());
    kindsOf.get(uid)?.add(o.kind ?? '');
  }
  const incomplete = sessions.filter((s) => (kindsOf.get(s.metadata.uid ?? '')?.size ?? 0) < 4).map((s) => s.metadata.name);
  return { sessions, orphans, duplicatePods, incomplete, children: owned.length };
}

export const phaseOf = (s: ChallengeSession) => s.status?.phase ?? 'Pending';

export function readyReason(s: ChallengeSession): string | undefined {
  return s.status?.conditions?.find((c) => c.type === 'Ready')?.reason;
}

/** Log lines that report a server-side apply or update conflict. */
export function conflictLines(lines: Record<string, unknown>[]): Record<string, unknown>[] {
  const text = (v: unknown) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));
  return lines.filter((l) => /conflict|\b409\b/i.test(`${text(l.err)} ${text(l.msg)}`));
}
