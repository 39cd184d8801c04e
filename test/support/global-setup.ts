import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { REPO_ROOT, ensureBinaries, kubectl, startCluster, stopCluster, type ClusterState } from '../../scripts/lib/control-plane.js';
import { gatewayApiCrdFiles } from '../../scripts/lib/gateway.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    kubectl: string;
  }
}

/**
 * Starts one local control plane for the whole run (or uses the cluster KUBECONFIG points at
 * when TEST_USE_EXISTING_CLUSTER=1), installs the CRDs, and hands the kubeconfig to the tests.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const log = (m: string) => process.stderr.write(`[test-cluster] ${m}\n`);
  let state: ClusterState | undefined;
  let target: { kubeconfig: string; binDir: string; kubectl: string };
  if (process.env.TEST_USE_EXISTING_CLUSTER === '1') {
    const kubeconfig = process.env.KUBECONFIG;
    if (!kubeconfig) throw new Error('TEST_USE_EXISTING_CLUSTER=1 needs KUBECONFIG to point at the cluster');
    const binDir = process.env.KUBECTL_DIR ?? '';
    target = { kubeconfig, binDir, kubectl: binDir ? join(binDir, 'kubectl') : 'kubectl' };
    log(`using the existing cluster from ${kubeconfig}`);
  } else {
    const t0 = Date.now();
    const binDir = await ensureBinaries(log);
    const dir = await mkdtemp(join(tmpdir(), 'challenge-engine-test-'));
    state = await startCluster(dir, binDir, log, { crdDir: join(REPO_ROOT, 'crds') });
    target = { kubeconfig: state.kubeconfig, binDir, kubectl: join(binDir, 'kubectl') };
    log(`cluster up in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  }
  const k = { binDir: target.binDir, kubeconfig: target.kubeconfig, kubectlPath: target.kubectl };
  await kubectl(k, ['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'crds')]);
  await kubectl(k, ['wait', '--for=condition=Established', '--timeout=60s', '-f', join(REPO_ROOT, 'crds')]);
  if (state) {
    // The Gateway API kinds the engine's routes use, as a cluster with a gateway has them (no
    // gateway runs here: the real one is proven by the e2e project).
    const files = (await gatewayApiCrdFiles()).flatMap((f) => ['-f', f]);
    await kubectl(k, ['apply', '--server-side', '--force-conflicts', ...files]);
    await kubectl(k, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/httproutes.gateway.networking.k8s.io', 'crd/tlsroutes.gateway.networking.k8s.io']);
  }
  project.provide('kubeconfig', target.kubeconfig);
  project.provide('kubectl', target.kubectl);
  return async () => {
    if (state) await stopCluster(state);
  };
}
