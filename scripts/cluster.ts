/**
 * npm run cluster:up   starts the local control plane in the background (idempotent) and prints
 *                      `export KUBECONFIG=<path>` as its last line.
 *                      With `-- --real-node` (root only) it also adds a real node with real
 *                      containers and enforced NetworkPolicies, and a Gateway API gateway
 *                      (Traefik) for it; see docs/real-node.md and docs/local-gateway.md.
 * npm run cluster:down stops exactly the processes cluster:up started and removes its state.
 * State lives in $CTF_CLUSTER_DIR (default: .cluster/ in the repository).
 */
import { join } from 'node:path';
import { REPO_ROOT, ensureBinaries, isRunning, readState, startCluster, stopCluster, type ClusterState } from './lib/control-plane.js';
import { startGateway } from './lib/gateway.js';
import { readRealNodeState, realNodeRunning, startRealNode, stopRealNode } from './lib/real-node.js';

const dir = process.env.CTF_CLUSTER_DIR ?? join(REPO_ROOT, '.cluster');
const progress = (m: string) => process.stderr.write(`[cluster] ${m}\n`);
const wantRealNode = process.argv.includes('--real-node');

/** Adds the real node and its gateway when asked for and not already running. */
async function ensureRealNode(state: ClusterState): Promise<void> {
  if (!wantRealNode) return;
  const existing = await readRealNodeState(state);
  if (existing?.gateway && realNodeRunning(existing)) {
    progress(`real node already running (${existing.socket}); gateway ${existing.gateway.address}`);
    return;
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
}

async function up(): Promise<void> {
  const existing = await readState(dir);
  if (existing && (await isRunning(existing))) {
    progress(`already running (${existing.server})`);
    await ensureRealNode(existing);
    console.log(`export KUBECONFIG=${existing.kubeconfig}`);
    return;
  }
  if (existing) {
    progress('found a stopped or partial cluster; cleaning it up');
    const node = await readRealNodeState(existing);
    if (node) await stopRealNode(node, existing);
    await stopCluster(existing);
  }
  const binDir = await ensureBinaries(progress);
  const state = await startCluster(dir, binDir, progress, { crdDir: join(REPO_ROOT, 'crds') });
  await ensureRealNode(state);
  progress(`logs: ${join(dir, 'logs')}; stop with: npm run cluster:down`);
  console.log(`export KUBECONFIG=${state.kubeconfig}`);
}

async function down(): Promise<void> {
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

const cmd = process.argv[2];
const actions: Record<string, () => Promise<void>> = { up, down };
const action = cmd ? actions[cmd] : undefined;
if (!action) {
  console.error('usage: tsx scripts/cluster.ts up|down');
  process.exit(2);
}
action().catch((err: unknown) => {
  console.error(`[cluster] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
