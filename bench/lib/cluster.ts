import { mkdtemp, readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { REPO_ROOT, ensureBinaries, fakeNode, startCluster, stopCluster, type ClusterState } from '../../scripts/lib/control-plane.js';
import { createKube } from '../../src/kube/client.js';

/**
 * The benchmark's own local control plane, in a temporary directory, and a raw HTTPS client
 * for it with the admin certificate (for /metrics and /version, which the typed clients do not
 * cover).
 */

export interface Tls {
  ca: string;
  cert: string;
  key: string;
}

export interface BenchCluster {
  state: ClusterState;
  tls: Tls;
  kubeconfig: string;
  binDir: string;
  stop(): Promise<void>;
}

export async function startBenchCluster(progress: (m: string) => void): Promise<BenchCluster> {
  const binDir = await ensureBinaries(progress);
  const dir = await mkdtemp(join(tmpdir(), 'challenge-engine-bench-'));
  const state = await startCluster(dir, binDir, progress, { crdDir: join(REPO_ROOT, 'crds') });
  try {
    await addServiceRange(state.kubeconfig, progress);
    await addNodes(state.kubeconfig, EXTRA_NODES, progress);
  } catch (err) {
    await stopCluster(state);
    throw err;
  }
  const pki = join(dir, 'pki');
  const tls = {
    ca: await readFile(join(pki, 'ca.crt'), 'utf8'),
    cert: await readFile(join(pki, 'admin.crt'), 'utf8'),
    key: await readFile(join(pki, 'admin.key'), 'utf8'),
  };
  let stopped = false;
  return {
    state,
    tls,
    kubeconfig: state.kubeconfig,
    binDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      // A throwaway cluster needs no graceful shutdown: kill the process groups this run
      // started (by their recorded ids), then let stopCluster confirm and remove the directory.
      for (const pid of Object.values(state.pids)) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await stopCluster(state);
    },
  };
}

/**
 * Every session has a ClusterIP Service, and the local control plane's service range is a /24
 * (about 250 addresses). A second range through the ServiceCIDR API (GA since Kubernetes 1.33)
 * makes room for the thousands of sessions the scenarios create.
 */
export const EXTRA_SERVICE_CIDR = '10.128.0.0/16';

async function addServiceRange(kubeconfig: string, progress: (m: string) => void): Promise<void> {
  const kube = createKube(kubeconfig);
  await kube.net.createServiceCIDR({ body: { metadata: { name: 'bench-services' }, spec: { cidrs: [EXTRA_SERVICE_CIDR] } } });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const s = await kube.net.readServiceCIDR({ name: 'bench-services' });
    if (s.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
      progress(`service range ${EXTRA_SERVICE_CIDR} added`);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the ServiceCIDR ${EXTRA_SERVICE_CIDR} did not become Ready`);
}

/**
 * The control plane has one fake node with 256 CPUs. The sample challenges request 50-200 m of
 * CPU per Pod, so one node holds about 3,000 sessions; the full run keeps more than that
 * Running at once. kwok manages every node carrying its annotation, so more nodes are just
 * objects.
 */
export const EXTRA_NODES = 8;

async function addNodes(kubeconfig: string, count: number, progress: (m: string) => void): Promise<void> {
  const kube = createKube(kubeconfig);
  const names = Array.from({ length: count }, (_, i) => `bench-node-${i + 1}`);
  for (const name of names) {
    await kube.core.createNode({ body: fakeNode(name) });
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const nodes = await kube.core.listNode();
    const ready = nodes.items.filter((n) => names.includes(n.metadata?.name ?? '') && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    if (ready.length === names.length) {
      progress(`${count} more fake nodes ready`);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('the extra fake nodes did not become Ready');
}

/** GET a path on the apiserver as admin. */
export function apiGet(cluster: Pick<BenchCluster, 'state' | 'tls'>, path: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, cluster.state.server), { ...cluster.tls, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode ?? 0} ${body.slice(0, 200)}`));
        else resolve(body);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  kubernetes: string;
  controlPlane: string;
  loadAverageAtStart: number[];
}

export async function machineInfo(cluster: BenchCluster): Promise<MachineInfo> {
  let kubernetes = 'unknown';
  try {
    kubernetes = (JSON.parse(await apiGet(cluster, '/version')) as { gitVersion?: string }).gitVersion ?? 'unknown';
  } catch {
    // reported as unknown
  }
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kubernetes,
    // The cache directory names the versions of every binary (kube, etcd, kwok).
    controlPlane: basename(join(cluster.binDir, '..')),
    loadAverageAtStart: loadavg().map((v) => Math.round(v * 100) / 100),
  };
}
