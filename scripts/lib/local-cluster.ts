import { join } from 'node:path';
import { REPO_ROOT, ensureBinaries, isRunning, readState, startCluster, stopCluster, type ClusterState, type Progress } from './control-plane.js';
import { startGateway } from './gateway.js';
import { readRealNodeState, realNodeRunning, startRealNode, stopRealNode, type RealNodeState } from './real-node.js';

/*
 * The local cluster of `npm run cluster:up`, `dev` and `deploy:local`: started once, reused while
 * it runs, cleaned up and started again when it was left stopped or half-started.
 */

export const clusterDir = (): string => process.env.CTF_CLUSTER_DIR ?? join(REPO_ROOT, '.cluster');

/** Why this machine cannot run the real node, or undefined when it can. */
export function realNodeUnavailable(): string | undefined {
  if (process.env.CTF_REAL_NODE === '0') return 'CTF_REAL_NODE=0 is set';
  if (process.platform !== 'linux') return `the real node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'the real node needs root (containerd, kubelet and iptables)';
  return undefined;
}

export interface LocalCluster {
  state: ClusterState;
  node: RealNodeState | undefined;
}

/** Starts (or reuses) the control plane and, when asked, the real node with its gateway. */
export async function ensureLocalCluster(progress: Progress, opts: { realNode: boolean; dir?: string }): Promise<LocalCluster> {
  const dir = opts.dir ?? clusterDir();
  let state = await readState(dir);
  if (state && (await isRunning(state))) {
    progress(`reusing the local cluster at ${state.server}`);
  } else {
    if (state) {
      progress('found a stopped or partial cluster; cleaning it up');
      const stale = await readRealNodeState(state);
      if (stale) await stopRealNode(stale, state);
      await stopCluster(state);
    }
    progress('preparing the Kubernetes binaries (the first build from Go modules takes several minutes)');
    const binDir = await ensureBinaries(progress);
    state = await startCluster(dir, binDir, progress, { crdDir: join(REPO_ROOT, 'crds') });
  }
  if (!opts.realNode) return { state, node: await runningRealNode(state) };
  const existing = await readRealNodeState(state);
  if (existing?.gateway && realNodeRunning(existing)) {
    progress(`real node already running (${existing.socket}); gateway ${existing.gateway.address}`);
    return { state, node: existing };
  }
  if (existing) await stopRealNode(existing, state);
  const node = await startRealNode(state, progress, { taintFakeNode: true });
  try {
    await startGateway(state, node, progress);
  } catch (err) {
    await stopRealNode(node, state).catch(() => undefined);
    throw err;
  }
  progress(`real node ${node.node}: containerd socket ${node.socket}; state ${node.dir}/state.json`);
  return { state, node };
}

async function runningRealNode(state: ClusterState): Promise<RealNodeState | undefined> {
  const node = await readRealNodeState(state);
  return node?.gateway && realNodeRunning(node) ? node : undefined;
}

/** Stops the real node (if any) and the control plane, and removes their state. */
export async function stopLocalCluster(progress: Progress, dir = clusterDir()): Promise<void> {
  const state = await readState(dir);
  if (!state) {
    progress('no local cluster is running');
    return;
  }
  const node = await readRealNodeState(state);
  if (node) await stopRealNode(node, state);
  await stopCluster(state);
  progress('stopped');
}
