import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { FAKE_NODE, REPO_ROOT, freePort, kubectl, startProcess, type ClusterState, type Progress } from './control-plane.js';
import type { GatewayState } from './gateway.js';

/*
 * An optional real node for the local control plane: Debian's containerd + runc with its own
 * root, state and socket; Debian's CNI plugins on a private bridge; kubelet and kube-proxy
 * (iptables mode) of the pinned Kubernetes version; kube-router's NetworkPolicy controller only.
 *
 * Invariants that keep other clusters on this machine unharmed:
 *  - one real node per machine at a time (a lock file): kube-proxy's and kube-router's iptables
 *    chains have fixed names;
 *  - pod and service addresses are this module's own ranges, not kwok's 10.244.0.0/16;
 *  - nothing leaves the machine from a pod: no masquerade, and a guard chain (mangle FORWARD)
 *    drops forwarded pod traffic to anything but the pod range; IPv4 forwarding, which the CNI
 *    bridge plugin turns on, is restored to the value found;
 *  - teardown removes what was added: processes, iptables chains (kube-proxy --cleanup,
 *    kube-router --cleanup-config, the guard), the bridge, mounts under the node directory.
 */

const run = promisify(execFile);

export const REAL_NODE = 'real-node-0';
export const POD_CIDR = '10.245.0.0/24';
export const SERVICE_CIDR = '10.0.0.0/24';
export const BRIDGE = 'ctfrn0';
export const GATEWAY = '10.245.0.1';
export const GUARD_CHAIN = 'CTF-REAL-NODE-GUARD';
export const FAKE_NODE_TAINT = 'ctf.challenge-engine.io/fake-node';
const LOCK = '/run/challenge-engine-real-node.lock';
const IMAGE_PREFIX = 'docker.io/challenge-engine';
export const PAUSE_IMAGE = `${IMAGE_PREFIX}/pause:3.10`;
const IMAGE_TAGS: Record<string, string> = {
  pause: '3.10',
  'web-notes': '1.0',
  'pwn-echo': '1.0',
  'sql-two-tier-app': '1.0',
  'sql-two-tier-db': '1.0',
  probe: '1.0',
  traefik: 'v3.7.13',
};

export interface RealNodeState {
  dir: string;
  node: string;
  socket: string;
  podLogsDir: string;
  /** Binaries, for the cleanup modes of kube-proxy and kube-router. */
  bins: { kubeProxy: string; kubeRouter: string };
  pids: Record<string, number>;
  /** Host sysctls changed at start, with the values to restore. */
  sysctls: Record<string, string>;
  /** Network namespaces (/var/run/netns) that existed before the node started. */
  netnsBefore: string[];
  timings: Record<string, number>;
  /** The local Gateway (scripts/lib/gateway.ts), once started. */
  gateway?: GatewayState;
}

const cacheRoot = () => process.env.CTF_KUBE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'challenge-engine');

async function sh(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    if (opts.allowFail) return '';
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

async function startNodeProcess(state: RealNodeState, name: string, bin: string, args: string[]): Promise<void> {
  state.pids[name] = await startProcess(state.dir, name, bin, args);
  await saveRealNodeState(state);
}

export async function saveRealNodeState(state: RealNodeState): Promise<void> {
  await writeFile(join(state.dir, 'state.json'), JSON.stringify(state, null, 2));
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, logHint?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${logHint ? `; see ${logHint}` : ''}`);
}

/** Runs scripts/real-node/setup.sh (idempotent, cached) and returns the binaries it provides. */
export async function ensureRealNodeBinaries(progress: Progress): Promise<{ binDir: string; kubeRouter: string; imagesDir: string }> {
  progress('preparing the real node (scripts/real-node/setup.sh)');
  const child = spawn('bash', [join(REPO_ROOT, 'scripts/real-node/setup.sh')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`scripts/real-node/setup.sh failed (exit ${code})`);
  const lines = out.trim().split('\n');
  const binDir = lines.at(-1) ?? '';
  const kubeRouter = lines.find((l) => l.startsWith('kube-router '))?.slice('kube-router '.length) ?? '';
  if (!binDir || !kubeRouter) throw new Error(`unexpected output of scripts/real-node/setup.sh: ${out}`);
  return { binDir, kubeRouter, imagesDir: join(cacheRoot(), 'real-node', 'images') };
}

/** A client certificate signed by the cluster CA, as a kubeconfig. */
async function clientKubeconfig(cluster: ClusterState, dir: string, name: string, subject: string): Promise<string> {
  const pki = join(cluster.dir, 'pki');
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const crt = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  await sh('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', subject]);
  await sh('openssl', ['x509', '-req', '-in', csr, '-CA', join(pki, 'ca.crt'), '-CAkey', join(pki, 'ca.key'), '-CAcreateserial', '-out', crt, '-days', '30', '-extfile', ext]);
  const b64 = async (f: string) => Buffer.from(await readFile(f)).toString('base64');
  const path = join(dir, `${name}.kubeconfig`);
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'local', cluster: { server: cluster.server, 'certificate-authority-data': await b64(join(pki, 'ca.crt')) } }],
      users: [{ name, user: { 'client-certificate-data': await b64(crt), 'client-key-data': await b64(key) } }],
      contexts: [{ name: 'local', context: { cluster: 'local', user: name } }],
      'current-context': 'local',
    }),
  );
  return path;
}

function containerdConfig(dir: string, socket: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    'version = 2',
    `root = "${dir}/containerd/root"`,
    `state = "${dir}/containerd/state"`,
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/containerd/opt"`,
    `[${cri}]`,
    `  sandbox_image = "${PAUSE_IMAGE}"`,
    '  enable_selinux = false',
    // This VM refuses negative oom_score_adj (EIO); clamp the pause and Guaranteed containers' value.
    '  restrict_oom_score_adj = true',
    `  [${cri}.containerd]`,
    '    snapshotter = "overlayfs"',
    '    default_runtime_name = "runc"',
    `    [${cri}.containerd.runtimes.runc]`,
    '      runtime_type = "io.containerd.runc.v2"',
    `      [${cri}.containerd.runtimes.runc.options]`,
    '        SystemdCgroup = false',
    `  [${cri}.cni]`,
    '    bin_dir = "/usr/lib/cni"',
    `    conf_dir = "${dir}/cni/net.d"`,
    '',
  ].join('\n');
}

function cniConfig(dir: string): string {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'ctf-real-node',
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          // No masquerade: pod traffic never leaves the machine (see the guard chain).
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: POD_CIDR }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(dir, 'cni', 'ipam') },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(cluster: ClusterState, state: RealNodeState, ports: { kubelet: number; healthz: number }): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    cgroupDriver: 'cgroupfs',
    failCgroupV1: false,
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${state.socket}`,
    address: '127.0.0.1',
    port: ports.kubelet,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: ports.healthz,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: join(cluster.dir, 'pki', 'ca.crt') } },
    authorization: { mode: 'Webhook' },
    podCIDR: POD_CIDR,
    clusterDomain: 'cluster.local',
    // Pods resolve nothing outside: their resolver is their own loopback.
    resolvConf: join(state.dir, 'resolv.conf'),
    podLogsDir: state.podLogsDir,
    volumePluginDir: join(state.dir, 'volume-plugins'),
    serializeImagePulls: false,
    evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    localStorageCapacityIsolation: false,
    registerNode: true,
    nodeStatusUpdateFrequency: '5s',
    syncFrequency: '10s',
    shutdownGracePeriod: '0s',
  });
}

function kubeProxyConfig(kubeconfig: string, ports: { healthz: number; metrics: number }): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig },
    mode: 'iptables',
    clusterCIDR: POD_CIDR,
    hostnameOverride: REAL_NODE,
    healthzBindAddress: `127.0.0.1:${ports.healthz}`,
    metricsBindAddress: `127.0.0.1:${ports.metrics}`,
    // Leave the host's conntrack sysctls and route_localnet alone.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    iptables: { localhostNodePorts: false, masqueradeAll: false, syncPeriod: '10s', minSyncPeriod: '0s' },
    // NodePorts only on the pod bridge's own address, never on the host's interfaces.
    nodePortAddresses: [`${GATEWAY}/32`],
  });
}

async function setSysctl(state: RealNodeState, key: string, value: string): Promise<void> {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`;
  const old = (await readFile(path, 'utf8')).trim();
  if (old === value) return;
  state.sysctls[key] = old;
  await writeFile(path, value);
}

/**
 * Drops forwarded pod traffic to anything but the pod range, so no packet leaves the machine even
 * where IPv4 forwarding is on. In the mangle table: ACCEPT rules of kube-proxy and kube-router in
 * the filter table cannot bypass it.
 */
async function installGuard(): Promise<void> {
  await removeGuard();
  await sh('iptables', ['-w', '-t', 'mangle', '-N', GUARD_CHAIN]);
  await sh('iptables', ['-w', '-t', 'mangle', '-A', GUARD_CHAIN, '-d', POD_CIDR, '-j', 'RETURN']);
  await sh('iptables', ['-w', '-t', 'mangle', '-A', GUARD_CHAIN, '-j', 'DROP']);
  await sh('iptables', ['-w', '-t', 'mangle', '-I', 'FORWARD', '1', '-s', POD_CIDR, '-j', GUARD_CHAIN]);
}

async function removeGuard(): Promise<void> {
  for (;;) {
    try {
      await run('iptables', ['-w', '-t', 'mangle', '-D', 'FORWARD', '-s', POD_CIDR, '-j', GUARD_CHAIN]);
    } catch {
      break;
    }
  }
  await sh('iptables', ['-w', '-t', 'mangle', '-F', GUARD_CHAIN], { allowFail: true });
  await sh('iptables', ['-w', '-t', 'mangle', '-X', GUARD_CHAIN], { allowFail: true });
}

async function takeLock(): Promise<void> {
  try {
    const pid = Number((await readFile(LOCK, 'utf8')).trim());
    if (pid && pid !== process.pid) {
      try {
        process.kill(pid, 0);
        throw new Error(`another real node is running on this machine (owner pid ${pid}, ${LOCK}); only one at a time`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await writeFile(LOCK, String(process.pid));
}

export interface RealNodeOptions {
  /** Taint kwok's fake node NoSchedule so that every new pod lands on the real node. */
  taintFakeNode?: boolean;
}

/** Starts containerd, kubelet, kube-proxy and kube-router for `cluster`; returns once the node is Ready. */
export async function startRealNode(cluster: ClusterState, progress: Progress, opts: RealNodeOptions = {}): Promise<RealNodeState> {
  const t0 = Date.now();
  const { binDir, kubeRouter, imagesDir } = await ensureRealNodeBinaries(progress);
  const tBuilt = Date.now();
  await takeLock();
  const dir = join(cluster.dir, 'real-node');
  await rm(dir, { recursive: true, force: true });
  for (const d of ['logs', 'containerd', 'cni/net.d', 'cni/ipam', 'kubelet', 'pod-logs', 'volume-plugins', 'pki']) await mkdir(join(dir, d), { recursive: true });
  const state: RealNodeState = {
    dir,
    node: REAL_NODE,
    socket: join(dir, 'containerd', 'containerd.sock'),
    podLogsDir: join(dir, 'pod-logs'),
    bins: { kubeProxy: join(binDir, 'kube-proxy'), kubeRouter },
    pids: {},
    sysctls: {},
    netnsBefore: await readdir('/var/run/netns').catch(() => [] as string[]),
    timings: { setupMs: tBuilt - t0 },
  };
  try {
    // Bridged pod-to-pod traffic must traverse iptables for NetworkPolicy to apply to it.
    await setSysctl(state, 'net.bridge.bridge-nf-call-iptables', '1');
    // The CNI bridge plugin (isGateway) turns IPv4 forwarding on with the first Pod; record the
    // value found so that teardown restores it. The guard keeps pod traffic on this machine meanwhile.
    state.sysctls['net.ipv4.ip_forward'] = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
    await installGuard();
    // The bridge with its gateway address exists before the first Pod, so the host side can bind it.
    await sh('ip', ['link', 'add', BRIDGE, 'type', 'bridge'], { allowFail: true });
    await sh('ip', ['addr', 'replace', `${GATEWAY}/24`, 'dev', BRIDGE]);
    await sh('ip', ['link', 'set', BRIDGE, 'up']);
    await writeFile(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions ndots:1 attempts:1 timeout:1\n');
    await writeFile(join(dir, 'cni', 'net.d', '10-ctf-real-node.conflist'), cniConfig(dir));
    await writeFile(join(dir, 'containerd', 'config.toml'), containerdConfig(dir, state.socket));

    progress('starting containerd');
    await startNodeProcess(state, 'containerd', 'containerd', ['--config', join(dir, 'containerd', 'config.toml')]);
    await waitFor('containerd', 30_000, async () => (await sh('ctr', ['-a', state.socket, 'version'])).includes('Server'), join(dir, 'logs', 'containerd.log'));

    progress('importing the local images into containerd (k8s.io namespace)');
    const tImport = Date.now();
    for (const [name, tag] of Object.entries(IMAGE_TAGS)) {
      await sh('ctr', ['-a', state.socket, '-n', 'k8s.io', 'images', 'import', '--base-name', `${IMAGE_PREFIX}/${name}`, join(imagesDir, `${name}.tar`)]);
      const ref = `${IMAGE_PREFIX}/${name}:${tag}`;
      if (!(await sh('ctr', ['-a', state.socket, '-n', 'k8s.io', 'images', 'ls', '-q'])).split('\n').includes(ref)) throw new Error(`image ${ref} missing after import`);
    }
    state.timings.imageImportMs = Date.now() - tImport;

    progress('starting kubelet');
    const pkiDir = join(dir, 'pki');
    await kubectl(cluster, ['create', 'clusterrolebinding', `ctf-${REAL_NODE}`, '--clusterrole=system:node', `--user=system:node:${REAL_NODE}`]).catch(() => undefined);
    const kubeletKubeconfig = await clientKubeconfig(cluster, pkiDir, 'kubelet', `/O=system:nodes/CN=system:node:${REAL_NODE}`);
    const [kubeletPort, kubeletHealthz, proxyHealthz, proxyMetrics] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    await writeFile(join(dir, 'kubelet', 'config.yaml'), kubeletConfig(cluster, state, { kubelet: kubeletPort, healthz: kubeletHealthz }));
    await startNodeProcess(state, 'kubelet', join(binDir, 'kubelet'), [
      `--config=${join(dir, 'kubelet', 'config.yaml')}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--hostname-override=${REAL_NODE}`,
      `--node-labels=challenge-engine.io/real-node=true`,
      '--v=1',
    ]);
    await waitFor('the real node to register', 90_000, async () => (await kubectl(cluster, ['get', 'node', REAL_NODE, '-o', 'name'])).includes(REAL_NODE), join(dir, 'logs', 'kubelet.log'));
    // nodeipam is off in the local control plane; kube-router reads the pod range from the Node.
    await kubectl(cluster, ['patch', 'node', REAL_NODE, '--type=merge', '-p', JSON.stringify({ spec: { podCIDR: POD_CIDR, podCIDRs: [POD_CIDR] } })]).catch(() => undefined);

    progress('starting kube-proxy (iptables) and kube-router (NetworkPolicy only)');
    const proxyKubeconfig = await clientKubeconfig(cluster, pkiDir, 'kube-proxy', '/CN=system:kube-proxy');
    await writeFile(join(dir, 'kube-proxy.yaml'), kubeProxyConfig(proxyKubeconfig, { healthz: proxyHealthz, metrics: proxyMetrics }));
    await startNodeProcess(state, 'kube-proxy', join(binDir, 'kube-proxy'), [`--config=${join(dir, 'kube-proxy.yaml')}`, '--v=1']);
    await startNodeProcess(state, 'kube-router', kubeRouter, kubeRouterArgs(cluster));

    if (opts.taintFakeNode) await kubectl(cluster, ['taint', 'node', FAKE_NODE, `${FAKE_NODE_TAINT}=true:NoSchedule`, '--overwrite']);
    await waitFor('the real node to become Ready', 120_000, async () => {
      const out = await kubectl(cluster, ['get', 'node', REAL_NODE, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      return out.trim() === 'True';
    }, join(dir, 'logs', 'kubelet.log'));
    await waitFor('kube-router policy chains', 60_000, async () => (await sh('iptables', ['-w', '-S', 'KUBE-ROUTER-FORWARD'])).length > 0, join(dir, 'logs', 'kube-router.log'));
    state.timings.startMs = Date.now() - tBuilt;
    await saveRealNodeState(state);
    progress(`real node ${REAL_NODE} Ready (${((Date.now() - tBuilt) / 1000).toFixed(1)}s after setup)`);
    return state;
  } catch (err) {
    await stopRealNode(state, cluster).catch(() => undefined);
    throw err;
  }
}

function kubeRouterArgs(cluster: ClusterState): string[] {
  return [
    `--kubeconfig=${cluster.kubeconfig}`,
    `--hostname-override=${REAL_NODE}`,
    '--run-firewall=true',
    '--run-router=false',
    '--run-service-proxy=false',
    '--run-loadbalancer=false',
    '--enable-cni=false',
    '--enable-ipv4=true',
    '--enable-ipv6=false',
    `--service-cluster-ip-range=${SERVICE_CIDR}`,
    '--iptables-sync-period=30s',
    '--health-port=0',
    '--metrics-port=0',
    '--v=1',
  ];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopProcess(pid: number | undefined, signalGroup = true): Promise<void> {
  if (pid === undefined || !alive(pid)) return;
  try {
    process.kill(signalGroup ? -pid : pid, 'SIGTERM');
  } catch {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
  }
  const deadline = Date.now() + 10_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Stops the node's processes and removes every container, mount, chain and sysctl change it made. */
export async function stopRealNode(state: RealNodeState, cluster?: ClusterState): Promise<void> {
  // Helpers started next to the node (the gateway's apiserver relay) go first.
  for (const [name, pid] of Object.entries(state.pids)) if (!NODE_PROCESSES.includes(name)) await stopProcess(pid);
  await stopProcess(state.pids['kube-router']);
  await stopProcess(state.pids['kube-proxy']);
  await stopProcess(state.pids.kubelet);
  // Pods' sandboxes and containers, while containerd still runs.
  if (state.pids.containerd !== undefined && alive(state.pids.containerd)) {
    const crictl = ['-a', state.socket, '-n', 'k8s.io'];
    for (const id of (await sh('ctr', [...crictl, 'tasks', 'ls', '-q'], { allowFail: true })).split('\n').filter(Boolean)) {
      await sh('ctr', [...crictl, 'tasks', 'kill', '-s', 'SIGKILL', id], { allowFail: true });
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const id of (await sh('ctr', [...crictl, 'tasks', 'ls', '-q'], { allowFail: true })).split('\n').filter(Boolean)) {
      await sh('ctr', [...crictl, 'tasks', 'delete', '-f', id], { allowFail: true });
    }
    for (const id of (await sh('ctr', [...crictl, 'containers', 'ls', '-q'], { allowFail: true })).split('\n').filter(Boolean)) {
      await sh('ctr', [...crictl, 'containers', 'delete', id], { allowFail: true });
    }
  }
  await stopProcess(state.pids.containerd);
  // Leftover shims (their own process groups) belong to this node's containerd state dir.
  for (const line of (await sh('pgrep', ['-a', 'containerd-shim'], { allowFail: true })).split('\n')) {
    const [pid, ...argv] = line.trim().split(' ');
    if (pid && argv.join(' ').includes(state.dir)) await stopProcess(Number(pid), false);
  }
  // Chains: each owner cleans up its own.
  await sh(state.bins.kubeProxy, ['--cleanup'], { allowFail: true });
  await sh(state.bins.kubeRouter, ['--cleanup-config', '--run-router=false', '--run-service-proxy=false'], { allowFail: true });
  await removeKubeRouterLeftovers();
  await removeKubeletChains();
  await removeGuard();
  await sh('ip', ['link', 'delete', BRIDGE], { allowFail: true });
  await unmountUnder(state.dir);
  // Pod network namespaces the CNI made and a killed containerd could not remove.
  for (const ns of await readdir('/var/run/netns').catch(() => [] as string[])) {
    if (ns.startsWith('cni-') && !(state.netnsBefore ?? []).includes(ns)) await sh('ip', ['netns', 'delete', ns], { allowFail: true });
  }
  for (const [key, value] of Object.entries(state.sysctls)) await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, value).catch(() => undefined);
  if (cluster) {
    await kubectl(cluster, ['delete', 'node', REAL_NODE, '--ignore-not-found']).catch(() => undefined);
    await kubectl(cluster, ['taint', 'node', FAKE_NODE, `${FAKE_NODE_TAINT}-`]).catch(() => undefined);
  }
  try {
    const owner = Number((await readFile(LOCK, 'utf8')).trim());
    if (owner === process.pid || !alive(owner)) await rm(LOCK, { force: true });
  } catch {
    // no lock
  }
}

/**
 * kube-router's firewall chains and ipsets, should its --cleanup-config have left some (v2.1.0
 * leaves them all). Only kube-router's own name prefixes are touched.
 */
async function removeKubeRouterLeftovers(): Promise<void> {
  const isOurs = (chain: string) => /^KUBE-(ROUTER-|POD-FW-|NWPLCY-)/.test(chain);
  const rules = (await sh('iptables', ['-w', '-S'], { allowFail: true })).split('\n');
  for (const rule of rules) {
    const m = /^-A (INPUT|FORWARD|OUTPUT) (.*-j (\S+).*)$/.exec(rule);
    if (m && isOurs(m[3] as string)) await sh('iptables', ['-w', '-D', m[1] as string, ...splitRule(m[2] as string)], { allowFail: true });
  }
  const chains = rules.map((r) => /^-N (\S+)$/.exec(r)?.[1]).filter((c): c is string => !!c && isOurs(c));
  for (const c of chains) await sh('iptables', ['-w', '-F', c], { allowFail: true });
  for (const c of chains) await sh('iptables', ['-w', '-X', c], { allowFail: true });
  for (const set of (await sh('ipset', ['list', '-n'], { allowFail: true })).split('\n')) {
    if (/^(KUBE-(SRC|DST)-|kube-router-)/.test(set)) await sh('ipset', ['destroy', set], { allowFail: true });
  }
}

/** Splits an iptables -S rule into arguments, keeping quoted comments whole. */
function splitRule(rule: string): string[] {
  return [...rule.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? (m[2] as string));
}

/** The chains kubelet creates by itself (it has no cleanup flag), in both address families. */
async function removeKubeletChains(): Promise<void> {
  for (const cmd of ['iptables', 'ip6tables']) {
    for (const hook of ['INPUT', 'OUTPUT']) {
      for (;;) {
        try {
          await run(cmd, ['-w', '-D', hook, '-j', 'KUBE-FIREWALL']);
        } catch {
          break;
        }
      }
    }
    const chains: [string, string][] = [['filter', 'KUBE-FIREWALL'], ['filter', 'KUBE-KUBELET-CANARY'], ['nat', 'KUBE-KUBELET-CANARY'], ['mangle', 'KUBE-KUBELET-CANARY'], ['mangle', 'KUBE-IPTABLES-HINT']];
    for (const [table, chain] of chains) {
      await sh(cmd, ['-w', '-t', table, '-F', chain], { allowFail: true });
      await sh(cmd, ['-w', '-t', table, '-X', chain], { allowFail: true });
    }
  }
}

/** Unmounts, deepest first, everything kubelet and containerd mounted below `dir`. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await sh('umount', ['-l', m], { allowFail: true });
}

/** Containers containerd knows in the k8s.io namespace (ids). */
export async function containerdContainers(state: RealNodeState): Promise<string[]> {
  return (await sh('ctr', ['-a', state.socket, '-n', 'k8s.io', 'containers', 'ls', '-q'])).split('\n').filter(Boolean);
}

/** The current log of a container of a pod on the real node (kubelet's files; no apiserver-to-kubelet path needed). */
export async function podContainerLog(state: RealNodeState, namespace: string, pod: string, container: string): Promise<string> {
  const dirs = (await readdir(state.podLogsDir)).filter((d) => d.startsWith(`${namespace}_${pod}_`));
  let text = '';
  for (const d of dirs) {
    const cdir = join(state.podLogsDir, d, container);
    for (const f of (await readdir(cdir).catch(() => [] as string[])).sort()) {
      text += (await readFile(join(cdir, f), 'utf8').catch(() => ''))
        .split('\n')
        .map((l) => l.replace(/^\S+ (stdout|stderr) [FP] /, ''))
        .join('\n');
    }
  }
  return text;
}

/** The real node recorded in a cluster's directory, if any. */
export async function readRealNodeState(cluster: ClusterState): Promise<RealNodeState | undefined> {
  try {
    return JSON.parse(await readFile(join(cluster.dir, 'real-node', 'state.json'), 'utf8')) as RealNodeState;
  } catch {
    return undefined;
  }
}

const NODE_PROCESSES = ['containerd', 'kubelet', 'kube-proxy', 'kube-router'];

/** True when every process of the recorded real node (and its helpers) is alive. */
export function realNodeRunning(state: RealNodeState): boolean {
  return NODE_PROCESSES.every((c) => state.pids[c] !== undefined) && Object.values(state.pids).every((pid) => alive(pid));
}
