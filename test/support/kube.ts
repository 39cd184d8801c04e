import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, inject } from 'vitest';
import { createKube, type Kube } from '../../src/kube/client.js';

const execFileP = promisify(execFile);

export interface TestCluster {
  kube: Kube;
  kubeconfig: string;
  /** This test file's namespace; deleted after the file's tests. */
  namespace: string;
  kubectl: (...args: string[]) => Promise<string>;
}

export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

/** Creates a namespace (and waits for its default ServiceAccount) for the calling test file. */
export async function createNamespace(kube: Kube, prefix: string, labels: Record<string, string> = {}): Promise<string> {
  const name = `${prefix.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 40)}-${randomBytes(3).toString('hex')}`.replace(/^-+/, '');
  await kube.core.createNamespace({ body: { metadata: { name, labels } } });
  await waitUntil(`default ServiceAccount in ${name}`, async () => kube.core.readNamespacedServiceAccount({ name: 'default', namespace: name }));
  return name;
}

/** Wires a test file to the run's cluster: clients, a namespace of its own and kubectl. */
export function useCluster(file: string, labels: Record<string, string> = {}): TestCluster {
  const env = {} as TestCluster;
  beforeAll(async () => {
    env.kubeconfig = inject('kubeconfig');
    env.kube = createKube(env.kubeconfig);
    env.namespace = await createNamespace(env.kube, basename(file).replace(/\.test\.ts$/, ''), labels);
    const kubectlPath = inject('kubectl');
    env.kubectl = async (...args: string[]) => {
      const { stdout } = await execFileP(kubectlPath, ['--kubeconfig', env.kubeconfig, '-n', env.namespace, ...args], { maxBuffer: 16 << 20 });
      return stdout;
    };
  });
  afterAll(async () => {
    if (env.namespace) await env.kube.core.deleteNamespace({ name: env.namespace }).catch(() => undefined);
  });
  return env;
}
