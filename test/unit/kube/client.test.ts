import { Agent as HttpAgent, createServer } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fromKubeConfig, PooledKubeConfig, sharedAgent } from '../../../src/kube/client.js';

function kubeconfigFor(server: string): PooledKubeConfig {
  const kc = new PooledKubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'not-a-secret' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

const closers: (() => void)[] = [];
afterEach(() => closers.splice(0).forEach((c) => c()));

describe('sharedAgent', () => {
  it('pools TLS connections for an https server', async () => {
    const agent = await sharedAgent(kubeconfigFor('https://127.0.0.1:6443'));
    expect(agent).toBeInstanceOf(HttpsAgent);
  });

  it('uses a plain http agent for an http server such as kubectl proxy', async () => {
    const agent = await sharedAgent(kubeconfigFor('http://127.0.0.1:8001'));
    expect(agent).toBeInstanceOf(HttpAgent);
    expect(agent).not.toBeInstanceOf(HttpsAgent);
  });

  it('returns the same agent for the same kubeconfig', async () => {
    const kc = kubeconfigFor('https://127.0.0.1:6443');
    expect(await sharedAgent(kc)).toBe(await sharedAgent(kc));
  });

  it('lets the typed clients reach an http server over one kept-alive connection', async () => {
    const sockets = new Set<unknown>();
    const server = createServer((req, res) => {
      sockets.add(req.socket);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'ns' }, spec: { holderIdentity: req.headers.authorization } }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const { port } = server.address() as AddressInfo;
    const kube = fromKubeConfig(kubeconfigFor(`http://127.0.0.1:${port}`));
    for (let i = 0; i < 3; i++) {
      const lease = await kube.coord.readNamespacedLease({ name: 'l', namespace: 'ns' });
      expect(lease.spec?.holderIdentity).toBe('Bearer not-a-secret');
    }
    expect(sockets.size).toBe(1);
  });
});
