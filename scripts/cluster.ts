/**
 * npm run cluster:up   starts the local control plane in the background (idempotent) and prints
 *                      `export KUBECONFIG=<path>` as its last line.
 *                      With `-- --real-node` (root only) it also adds a real node with real
 *                      containers and enforced NetworkPolicies, and a Gateway API gateway
 *                      (Traefik) for it; see docs/real-node.md and docs/local-gateway.md.
 * npm run cluster:down stops exactly the processes cluster:up, dev and deploy:local started and
 *                      removes their state (the deployed engine goes with the cluster).
 * State lives in $CTF_CLUSTER_DIR (default: .cluster/ in the repository).
 */
import { join } from 'node:path';
import { clusterDir, ensureLocalCluster, stopLocalCluster } from './lib/local-cluster.js';

const progress = (m: string) => process.stderr.write(`[cluster] ${m}\n`);

async function up(): Promise<void> {
  const { state } = await ensureLocalCluster(progress, { realNode: process.argv.includes('--real-node') });
  progress(`logs: ${join(clusterDir(), 'logs')}; stop with: npm run cluster:down`);
  console.log(`export KUBECONFIG=${state.kubeconfig}`);
}

const cmd = process.argv[2];
const actions: Record<string, () => Promise<void>> = { up, down: () => stopLocalCluster(progress) };
const action = cmd ? actions[cmd] : undefined;
if (!action) {
  console.error('usage: tsx scripts/cluster.ts up|down');
  process.exit(2);
}
action().catch((err: unknown) => {
  console.error(`[cluster] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
