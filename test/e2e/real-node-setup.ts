import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { REPO_ROOT, ensureBinaries, startCluster, stopCluster, type ClusterState } from '../../scripts/lib/control-plane.js';
import { startGateway } from '../../scripts/lib/gateway.js';
import { startRealNode, stopRealNode, type RealNodeState } from '../../scripts/lib/real-node.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    kubectl: string;
    realNode: RealNodeState;
    apiServer: string;
  }
}

/**
 * One local control plane and one real node with its gateway (realNode.gateway) for the run;
 * kwok's fake node is tainted so session Pods land on the real one.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = (m: string) => process.stderr.write(`[e2e-cluster] ${m}\n`);
  const t0 = Date.now();
  const binDir = await ensureBinaries(log);
  const dir = await mkdtemp(join(tmpdir(), 'challenge-engine-e2e-'));
  let cluster: ClusterState | undefined;
  let node: RealNodeState | undefined;
  try {
    cluster = await startCluster(dir, binDir, log, { crdDir: join(REPO_ROOT, 'crds') });
    node = await startRealNode(cluster, log, { taintFakeNode: true });
    await startGateway(cluster, node, log);
  } catch (err) {
    if (node && cluster) await stopRealNode(node, cluster).catch(() => undefined);
    if (cluster) await stopCluster(cluster, { keepDir: process.env.E2E_KEEP === '1' });
    throw err;
  }
  log(`cluster and real node up in ${((Date.now() - t0) / 1000).toFixed(1)}s (node timings ${JSON.stringify(node.timings)})`);
  project.provide('kubeconfig', cluster.kubeconfig);
  project.provide('kubectl', join(binDir, 'kubectl'));
  project.provide('realNode', node);
  project.provide('apiServer', cluster.server);
  const c = cluster;
  const n = node;
  return async () => {
    if (process.env.E2E_KEEP === '1') {
      log(`E2E_KEEP=1: leaving the cluster running in ${c.dir}`);
      return;
    }
    await stopRealNode(n, c);
    await stopCluster(c);
  };
}
