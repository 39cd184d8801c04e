import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, writeFile, rm, open, access } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { createPki, type Pki } from './pki.js';

/**
 * A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, admin client
 * certificate), kube-controller-manager (garbage collection, namespace deletion, service
 * accounts), kube-scheduler and kwok with one fake Node so pods get scheduled and reach Running.
 * Every process is started by this module, recorded in state.json and stopped by its pid only.
 */

const execFileP = promisify(execFile);
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FAKE_NODE = 'kwok-node-0';

export interface ClusterState {
  dir: string;
  binDir: string;
  kubeconfig: string;
  server: string;
  pids: Record<string, number>;
  startedAt: string;
  /** Each component's command line (binary first), so a stopped component can be started again as it was. */
  argv?: Record<string, string[]>;
}

export type Progress = (message: string) => void;

const COMPONENTS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok'] as const;
export type Component = (typeof COMPONENTS)[number];

/** Runs scripts/kube-binaries.sh, streaming its progress, and returns the directory of binaries. */
export async function ensureBinaries(progress: Progress, extraArgs: string[] = []): Promise<string> {
  const child = spawn('bash', [join(REPO_ROOT, 'scripts', 'kube-binaries.sh'), ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  let partial = '';
  child.stderr.on('data', (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') progress(line);
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`scripts/kube-binaries.sh failed with exit code ${String(code)}`);
  const dir = out.trim().split('\n').pop();
  if (!dir) throw new Error('scripts/kube-binaries.sh printed no directory');
  return dir;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  srv.close();
  if (addr === null || typeof addr === 'string') throw new Error('could not allocate a port');
  return addr.port;
}

/** Starts a component, recording its command line in the state so it can be started again as it was. */
async function launch(state: ClusterState, name: Component, bin: string, args: string[]): Promise<number> {
  (state.argv ??= {})[name] = [bin, ...args];
  return startProcess(state.dir, name, bin, args);
}

/** Starts a detached process logging to <dir>/logs/<name>.log; returns its pid. */
export async function startProcess(dir: string, name: string, bin: string, args: string[]): Promise<number> {
  const logFile = await open(join(dir, 'logs', `${name}.log`), 'a');
  // detached: own process group, so the cluster outlives `npm run cluster:up` and can be
  // stopped as a group without touching anything else.
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', logFile.fd, logFile.fd] });
  child.unref();
  await logFile.close();
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  return child.pid;
}

function kubeconfigYaml(server: string, pki: { ca: string; cert: string; key: string }): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server, 'certificate-authority-data': b64(pki.ca) } }],
    users: [{ name: 'admin', user: { 'client-certificate-data': b64(pki.cert), 'client-key-data': b64(pki.key) } }],
    contexts: [{ name: 'local', context: { cluster: 'local', user: 'admin', namespace: 'default' } }],
    'current-context': 'local',
  });
}

interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
}

/** GET a path on the apiserver as admin; resolves with the status code, or 0 when unreachable. */
function apiGet(server: string, path: string, tls: TlsMaterial): Promise<{ status: number; body: string }> {
  return new Promise((resolveP) => {
    const req = request(new URL(path, server), { ...tls, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolveP({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolveP({ status: 0, body: '' }));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, dir?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${dir ? ` (logs in ${join(dir, 'logs')})` : ''}`);
}

async function tlsFromPki(pki: Pick<Pki, 'caCert' | 'adminCert' | 'adminKey'>): Promise<TlsMaterial> {
  return {
    ca: await readFile(pki.caCert, 'utf8'),
    cert: await readFile(pki.adminCert, 'utf8'),
    key: await readFile(pki.adminKey, 'utf8'),
  };
}

export async function kubectl(
  state: Pick<ClusterState, 'binDir' | 'kubeconfig'> & { kubectlPath?: string },
  args: string[],
  input?: string,
): Promise<string> {
  const child = execFile(state.kubectlPath ?? join(state.binDir, 'kubectl'), ['--kubeconfig', state.kubeconfig, ...args], { maxBuffer: 16 << 20 });
  if (input !== undefined) child.stdin?.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${stderr.trim()}`);
  return stdout;
}

/** Starts a cluster whose state lives in `dir` (created; must not hold a running cluster). */
export async function startCluster(dir: string, binDir: string, progress: Progress, opts: { crdDir?: string } = {}): Promise<ClusterState> {
  const started = Date.now();
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'logs'), { recursive: true });
  await mkdir(join(dir, 'pki'), { recursive: true });
  const pki = await createPki(join(dir, 'pki'));
  const tls = await tlsFromPki(pki);
  const [etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort] = await Promise.all(Array.from({ length: 6 }, freePort));
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, kubeconfigYaml(server, tls), { mode: 0o600 });
  const state: ClusterState = { dir, binDir, kubeconfig, server, pids: {}, startedAt: new Date().toISOString() };
  const bin = (n: string) => join(binDir, n);
  const save = () => writeFile(join(dir, 'state.json'), JSON.stringify(state, null, 2));

  try {
    progress('starting etcd');
    state.pids.etcd = await launch(state, 'etcd', bin('etcd'), [
      '--name=local',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=local=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    await save();

    progress('starting kube-apiserver');
    state.pids['kube-apiserver'] = await launch(state, 'kube-apiserver', bin('kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--cert-dir=${join(dir, 'pki')}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--tls-cert-file=${pki.servingCert}`,
      `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=false',
      // CTF_APISERVER_PROFILING=1 serves /debug/pprof (admin only), to see what bounds a benchmark.
      `--profiling=${process.env.CTF_APISERVER_PROFILING === '1'}`,
    ]);
    await save();
    await waitFor('kube-apiserver /readyz', 90_000, async () => (await apiGet(server, '/readyz', tls)).status === 200, dir);

    if (opts.crdDir) {
      // Before the controller-manager starts, so its garbage collector watches the custom
      // resources from the beginning instead of after its next discovery pass (30 s).
      progress('installing the CustomResourceDefinitions');
      await kubectl(state, ['apply', '--server-side', '--force-conflicts', '-f', opts.crdDir]);
      await kubectl(state, ['wait', '--for=condition=Established', '--timeout=60s', '-f', opts.crdDir]);
    }

    const common = [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      '--bind-address=127.0.0.1',
      '--leader-elect=false',
    ];
    progress('starting kube-controller-manager, kube-scheduler and kwok');
    state.pids['kube-controller-manager'] = await launch(state, 'kube-controller-manager', bin('kube-controller-manager'), [
      ...common,
      `--secure-port=${kcmPort}`,
      `--service-account-private-key-file=${pki.saKey}`,
      `--root-ca-file=${pki.caCert}`,
      `--cluster-signing-cert-file=${pki.caCert}`,
      `--cluster-signing-key-file=${pki.caKey}`,
      '--use-service-account-credentials=false',
      '--controllers=*,-nodeipam',
    ]);
    state.pids['kube-scheduler'] = await launch(state, 'kube-scheduler', bin('kube-scheduler'), [...common, `--secure-port=${schedPort}`]);
    state.pids.kwok = await launch(state, 'kwok', bin('kwok'), [
      `--kubeconfig=${kubeconfig}`,
      `--config=${join(binDir, 'kwok-stages.yaml')}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom',
      '--cidr=10.244.0.0/16',
      '--node-ip=10.243.0.1',
      '--node-lease-duration-seconds=40',
      `--server-address=127.0.0.1:${kwokPort}`,
    ]);
    await save();

    progress(`creating fake node ${FAKE_NODE}`);
    await kubectl(state, ['apply', '-f', '-'], JSON.stringify(fakeNode(FAKE_NODE)));
    await waitFor('the fake node to become Ready', 60_000, async () => {
      const r = await apiGet(server, `/api/v1/nodes/${FAKE_NODE}`, tls);
      if (r.status !== 200) return false;
      const node = JSON.parse(r.body) as { status?: { conditions?: { type: string; status: string }[] } };
      return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    }, dir);
    await waitFor('the default ServiceAccount', 60_000, async () => (await apiGet(server, '/api/v1/namespaces/default/serviceaccounts/default', tls)).status === 200, dir);
    progress(`control plane ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return state;
  } catch (err) {
    await stopCluster(state);
    throw err;
  }
}

/** A Node that kwok manages (annotation kwok.x-k8s.io/node=fake) with room for many pods. */
export function fakeNode(name: string) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok' },
    },
    spec: {},
    status: {
      allocatable: { cpu: '256', memory: '1Ti', pods: '20000' },
      capacity: { cpu: '256', memory: '1Ti', pods: '20000' },
      nodeInfo: { architecture: 'amd64', operatingSystem: 'linux', kubeletVersion: 'fake', kubeProxyVersion: 'fake', bootID: '', containerRuntimeVersion: '', kernelVersion: '', machineID: '', osImage: '', systemUUID: '' },
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops the processes recorded in the state (newest first), SIGTERM then SIGKILL. */
export async function stopCluster(state: ClusterState, opts: { keepDir?: boolean } = {}): Promise<void> {
  const order = [...COMPONENTS].reverse();
  for (const name of order) {
    const pid = state.pids[name];
    if (pid === undefined || !alive(pid)) continue;
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
  const deadline = Date.now() + 10_000;
  for (const name of order) {
    const pid = state.pids[name];
    if (pid === undefined) continue;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  if (!opts.keepDir) await rm(state.dir, { recursive: true, force: true });
}

export async function readState(dir: string): Promise<ClusterState | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

/** True when every recorded process is alive and the apiserver answers /readyz. */
export async function isRunning(state: ClusterState): Promise<boolean> {
  if (!COMPONENTS.every((c) => state.pids[c] !== undefined && alive(state.pids[c]))) return false;
  try {
    await access(state.kubeconfig);
    const tls = await tlsFromPki({ caCert: join(state.dir, 'pki', 'ca.crt'), adminCert: join(state.dir, 'pki', 'admin.crt'), adminKey: join(state.dir, 'pki', 'admin.key') });
    return (await apiGet(state.server, '/readyz', tls)).status === 200;
  } catch {
    return false;
  }
}

/**
 * Stopping, starting and freezing single components, for fault-injection tests. Every call acts
 * on the pid recorded in the state only, and start records the new pid in state.json, so
 * `stopCluster` on a freshly read state stops the restarted process too.
 */

function recordedPid(state: ClusterState, name: Component): number {
  const pid = state.pids[name];
  if (pid === undefined) throw new Error(`no ${name} process is recorded in ${join(state.dir, 'state.json')}`);
  return pid;
}

/** Stops one component (SIGTERM to its process group, SIGKILL after `graceMs`) and waits until it is gone. */
export async function stopComponent(state: ClusterState, name: Component, opts: { graceMs?: number; signal?: NodeJS.Signals } = {}): Promise<void> {
  const pid = recordedPid(state, name);
  if (!alive(pid)) return;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  };
  // A frozen process cannot act on SIGTERM.
  signalGroup('SIGCONT');
  signalGroup(opts.signal ?? 'SIGTERM');
  const deadline = Date.now() + (opts.graceMs ?? 10_000);
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) signalGroup('SIGKILL');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
}

/** Starts a stopped component again with the command line it had, and records its new pid. */
export async function startComponent(state: ClusterState, name: Component): Promise<number> {
  const argv = state.argv?.[name];
  if (!argv || argv.length === 0) throw new Error(`the command line of ${name} is not recorded in ${join(state.dir, 'state.json')}`);
  const previous = state.pids[name];
  if (previous !== undefined && alive(previous)) throw new Error(`${name} is still running (pid ${previous})`);
  const [bin = '', ...args] = argv;
  state.pids[name] = await startProcess(state.dir, name, bin, args);
  await writeFile(join(state.dir, 'state.json'), JSON.stringify(state, null, 2));
  return state.pids[name];
}

/** Freezes a component with SIGSTOP: its sockets stay open but nothing is answered. */
export function pauseComponent(state: ClusterState, name: Component): void {
  process.kill(recordedPid(state, name), 'SIGSTOP');
}

/** Thaws a component frozen by pauseComponent. */
export function resumeComponent(state: ClusterState, name: Component): void {
  process.kill(recordedPid(state, name), 'SIGCONT');
}

/** True when the apiserver of the state answers /readyz with 200. */
export async function apiserverReady(state: ClusterState): Promise<boolean> {
  try {
    const tls = await tlsFromPki({ caCert: join(state.dir, 'pki', 'ca.crt'), adminCert: join(state.dir, 'pki', 'admin.crt'), adminKey: join(state.dir, 'pki', 'admin.key') });
    return (await apiGet(state.server, '/readyz', tls)).status === 200;
  } catch {
    return false;
  }
}

export { execFileP };
