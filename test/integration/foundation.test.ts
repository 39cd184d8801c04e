import { describe, expect, it } from 'vitest';
import { ApiException } from '@kubernetes/client-node';
import { GROUP, VERSION, CHALLENGE_PLURAL, SESSION_PLURAL } from '../../src/api/index.js';
import { invalidObjects, immutableSessionUpdate, loadSamples, validChallenge, validSession } from '../support/invalid-objects.js';
import { useCluster, waitUntil } from '../support/kube.js';

const cluster = useCluster(import.meta.filename);

function plural(kind: string): string {
  return kind === 'Challenge' ? CHALLENGE_PLURAL : SESSION_PLURAL;
}

async function create(kind: string, body: object): Promise<unknown> {
  return cluster.kube.custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: cluster.namespace, plural: plural(kind), body });
}

async function rejection(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) {
      const body = JSON.parse(String(err.body)) as { message: string };
      return { code: err.code, message: body.message };
    }
    throw err;
  }
  throw new Error('the apiserver accepted the object');
}

describe('custom resource definitions', () => {
  it('are installed and Established', async () => {
    for (const name of [`${CHALLENGE_PLURAL}.${GROUP}`, `${SESSION_PLURAL}.${GROUP}`]) {
      const out = await cluster.kubectl('get', 'crd', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}');
      expect(out, name).toBe('True');
    }
  });

  it('accept every sample Challenge', async () => {
    const samples = loadSamples();
    expect(samples.length).toBeGreaterThanOrEqual(3);
    for (const { file, object } of samples) {
      const created = (await create('Challenge', object as object).catch((err: unknown) => {
        throw new Error(`${file}: ${err instanceof ApiException ? String(err.body) : String(err)}`);
      })) as { spec: { lifetime: { default: string } } };
      expect(created.spec.lifetime.default, `${file} gets defaults from the CRD`).toMatch(/^\d/);
    }
  });

  it('apply the same defaults as the zod schemas', async () => {
    const c = validChallenge('defaults-check') as { spec: Record<string, unknown> };
    delete c.spec.lifetime;
    const created = (await create('Challenge', c)) as { spec: { lifetime: unknown; enabled: boolean; maxSessionsPerUser: number } };
    expect(created.spec.lifetime).toEqual({ default: '1h', max: '3h', extension: '30m' });
    expect(created.spec.enabled).toBe(true);
    expect(created.spec.maxSessionsPerUser).toBe(1);
  });

  it.each(invalidObjects.map((c) => [c.name, c] as const))('reject an invalid object: %s', async (_name, c) => {
    expect(invalidObjects.length).toBeGreaterThanOrEqual(15);
    const { code, message } = await rejection(create(c.kind, c.object));
    expect(code).toBe(422);
    expect(message).toContain(c.field);
  });

  it('keep a session spec immutable', async () => {
    const before = immutableSessionUpdate.before as { metadata: { name: string } };
    await create('ChallengeSession', before);
    const { code, message } = await rejection(
      cluster.kube.custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace: cluster.namespace,
          plural: SESSION_PLURAL,
          name: before.metadata.name,
          body: [{ op: 'replace', path: '/spec/user', value: 'mallory' }],
        },
      ),
    );
    expect(code).toBe(422);
    expect(message).toContain(immutableSessionUpdate.message);
  });

  it('print the promised columns for challengesessions and challenges', async () => {
    const s = validSession('columns-check') as { metadata: Record<string, unknown> };
    s.metadata.annotations = { [`${GROUP}/expires-at`]: '2030-01-01T00:00:00Z' };
    await create('ChallengeSession', s);
    const out = await cluster.kubectl('get', 'challengesessions');
    const header = out.split('\n')[0]?.split(/\s{2,}/) ?? [];
    expect(header).toEqual(expect.arrayContaining(['NAME', 'USER', 'CHALLENGE', 'PHASE', 'EXPIRES', 'AGE']));
    expect(out).toMatch(/columns-check\s+alice@example.org\s+web-notes/);
    expect(out).toContain('2030-01-01T00:00:00Z');
    // The short name `cs` is declared, but kubectl resolves it to the built-in componentstatuses
    // first; the `ctf` category lists both kinds.
    const byCategory = await cluster.kubectl('get', 'ctf');
    expect(byCategory).toContain('challengesession.ctf.challenge-engine.io/columns-check');
    expect(await cluster.kubectl('get', 'chs')).toContain('columns-check');
    const chal = await cluster.kubectl('get', 'chal');
    expect(chal.split('\n')[0]).toMatch(/NAME\s+TITLE\s+CATEGORY\s+POINTS/);
  });
});

describe('the local control plane', () => {
  it('schedules a pod onto the kwok node and reports it Running with an IP', async () => {
    await cluster.kube.core.createNamespacedPod({
      namespace: cluster.namespace,
      body: { metadata: { name: 'probe' }, spec: { containers: [{ name: 'c', image: 'example.org/probe:1' }] } },
    });
    const pod = await waitUntil('pod Running', async () => {
      const p = await cluster.kube.core.readNamespacedPod({ name: 'probe', namespace: cluster.namespace });
      return p.status?.phase === 'Running' ? p : undefined;
    });
    expect(pod.spec?.nodeName).toBeTruthy();
    expect(pod.status?.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  });

  it('garbage-collects an owned object when its owner is deleted (controller-manager runs)', async () => {
    const owner = await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: 'owner' } } });
    await cluster.kube.core.createNamespacedConfigMap({
      namespace: cluster.namespace,
      body: {
        metadata: {
          name: 'owned',
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata?.uid ?? '', controller: true }],
        },
      },
    });
    await cluster.kube.core.deleteNamespacedConfigMap({ name: 'owner', namespace: cluster.namespace });
    await waitUntil('owned ConfigMap to be collected', async () => {
      try {
        await cluster.kube.core.readNamespacedConfigMap({ name: 'owned', namespace: cluster.namespace });
        return false;
      } catch (err) {
        return err instanceof ApiException && err.code === 404;
      }
    });
  });
});
