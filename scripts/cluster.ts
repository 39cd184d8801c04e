/**
 * npm run cluster:up   starts the local control plane in the background (idempotent) and prints
 *                      `export KUBECONFIG=<path>` as its last line.
 * npm run cluster:down stops exactly the processes cluster:up started and removes its state.
 * State lives in $CTF_CLUSTER_DIR (default: .cluster/ in the repository).
 */
import { join } from 'node:path';
import { REPO_ROOT, ensureBinaries, isRunning, readState, startCluster, stopCluster } from './lib/control-plane.js';

const dir = process.env.CTF_CLUSTER_DIR ?? join(REPO_ROOT, '.cluster');
const progress = (m: string) => process.stderr.write(`[cluster] ${m}\n`);

async function up(): Promise<void> {
  const existing = await readState(dir);
  if (existing && (await isRunning(existing))) {
    progress(`already running (${existing.server})`);
    console.log(`export KUBECONFIG=${existing.kubeconfig}`);
    return;
  }
  if (existing) {
    progress('found a stopped or partial cluster; cleaning it up');
    await stopCluster(existing);
  }
  const binDir = await ensureBinaries(progress);
  const state = await startCluster(dir, binDir, progress, { crdDir: join(REPO_ROOT, 'crds') });
  progress(`logs: ${join(dir, 'logs')}; stop with: npm run cluster:down`);
  console.log(`export KUBECONFIG=${state.kubeconfig}`);
}

async function down(): Promise<void> {
  const state = await readState(dir);
  if (!state) {
    progress('no local cluster is running');
    return;
  }
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
