import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { startEngine, type Engine } from '../../src/engine.js';
import { CHALLENGE_KIND, CHALLENGE_PLURAL, GROUP, SESSION_PLURAL, VERSION } from '../../src/api/group.js';
import type { ChallengeSession } from '../../src/api/session.js';
import type { Kube } from '../../src/kube/client.js';
import { desiredSession } from '../../src/reconcile/desired-session.js';
import { formatExpiry } from '../../src/reconcile/expiry.js';
import { loadSamples } from './invalid-objects.js';

export const TEST_FLAG_KEY = 'test-flag-key-0123456789abcdef';
export const TEST_TOKEN_SECRET = 'test-token-secret-0123456789abcdef0123';

export function engineEnv(kubeconfig: string, namespace: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    KUBECONFIG: kubeconfig,
    CTF_NAMESPACE: namespace,
    CTF_FLAG_SECRET: `literal:${TEST_FLAG_KEY}`,
    CTF_TOKEN_SECRET: TEST_TOKEN_SECRET,
    CTF_API: 'false',
    CTF_LEADER_ELECTION: 'false',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...extra,
  };
}

/** Captured JSON log lines of an in-process engine. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        this.raw.push(line);
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON
        }
      }
      cb();
    },
  });
}

export async function startTestEngine(kubeconfig: string, namespace: string, extra: Record<string, string> = {}): Promise<{ engine: Engine; logs: LogCapture }> {
  const config = loadConfig(engineEnv(kubeconfig, namespace, extra));
  const logs = new LogCapture();
  const log = pino({ level: 'debug' }, logs.stream);
  return { engine: await startEngine(config, log), logs };
}

/** The engine as a real child process (for kill -9 and multi-replica tests). */
export class EngineProcess {
  child: ChildProcess | undefined;
  output = '';

  constructor(private readonly env: Record<string, string>) {}

  start(): void {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ...this.env, LOG_LEVEL: this.env.LOG_LEVEL === 'silent' ? 'info' : (this.env.LOG_LEVEL ?? 'info') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  logLines(): Record<string, unknown>[] {
    return this.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    await once(c, 'exit');
  }
}

export function sessionBody(name: string, challenge: string, user: string, expiresAt: Date): object {
  return desiredSession({ name, challenge, user, expiresAt: formatExpiry(expiresAt) });
}

export async function createSession(kube: Kube, namespace: string, name: string, challenge: string, user: string, expiresAt: Date): Promise<ChallengeSession> {
  return (await kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, body: sessionBody(name, challenge, user, expiresAt) })) as ChallengeSession;
}

export async function getSession(kube: Kube, namespace: string, name: string): Promise<ChallengeSession | undefined> {
  try {
    return (await kube.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL, name })) as ChallengeSession;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export async function listSessions(kube: Kube, namespace: string): Promise<ChallengeSession[]> {
  const r = (await kube.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SESSION_PLURAL })) as { items: ChallengeSession[] };
  return r.items;
}

/** Creates every sample Challenge in the namespace. */
export async function installSamples(kube: Kube, namespace: string): Promise<string[]> {
  const names: string[] = [];
  for (const { object } of loadSamples()) {
    const o = object as { kind: string; metadata: { name: string } };
    if (o.kind !== CHALLENGE_KIND) continue;
    await kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: CHALLENGE_PLURAL, body: o });
    names.push(o.metadata.name);
  }
  return names;
}

/** Creates a copy of the web-notes sample named `name` and played by teams (spec.owner: team). */
export async function installTeamChallenge(kube: Kube, namespace: string, name: string): Promise<void> {
  const sample = loadSamples().find((s) => (s.object as { metadata?: { name?: string } }).metadata?.name === 'web-notes');
  if (!sample) throw new Error('no web-notes sample');
  const o = structuredClone(sample.object) as { metadata: { name: string }; spec: Record<string, unknown> };
  const body = { ...o, metadata: { name }, spec: { ...o.spec, owner: 'team' } };
  await kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: CHALLENGE_PLURAL, body });
}

/** Creates a copy of the web-notes sample named `name` with `spec` members replaced (e.g. a pool). */
export async function installChallengeLike(kube: Kube, namespace: string, name: string, spec: Record<string, unknown>, sampleName = 'web-notes'): Promise<void> {
  const sample = loadSamples().find((s) => (s.object as { metadata?: { name?: string } }).metadata?.name === sampleName);
  if (!sample) throw new Error(`no ${sampleName} sample`);
  const o = structuredClone(sample.object) as { metadata: { name: string }; spec: Record<string, unknown> };
  const body = { ...o, metadata: { name }, spec: { ...o.spec, ...spec } };
  await kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: CHALLENGE_PLURAL, body });
}
