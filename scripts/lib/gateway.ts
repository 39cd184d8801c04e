import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT, kubectl, startProcess, type ClusterState, type Progress } from './control-plane.js';
import { GATEWAY, REAL_NODE, saveRealNodeState, type RealNodeState } from './real-node.js';
import { gatewayManifests, GATEWAY_NAME, GATEWAY_NAMESPACE, GATEWAY_POD_LABELS, TLS_SECRET, type GatewaySpec } from './gateway-manifests.js';

/*
 * A real Gateway API implementation for the real node: Traefik as a Pod in `ctf-gateway`, the
 * Gateway `ctf-gateway/ctf` with an HTTP and a TLS (terminate) listener for `*.<domain>`, reachable
 * from the host on a fixed ClusterIP through kube-proxy. CRDs and RBAC are read from the Go module
 * cache (sigs.k8s.io/gateway-api, traefik), not copied into the repository.
 */

const run = promisify(execFile);
export const TRAEFIK_VERSION = 'v3.7.13';
export const GATEWAY_API_VERSION = 'v1.6.1';
/** Pods cannot reach the apiserver's loopback address; a relay on the bridge carries their API traffic. */
const APISERVER_RELAY_PORT = 6443;
const FIELD_MANAGER = 'challenge-engine-local';

export interface GatewayState {
  namespace: string;
  name: string;
  domain: string;
  /** The Gateway's status address: the Service's ClusterIP, reachable from the host and from pods. */
  address: string;
  httpPort: number;
  tlsPort: number;
  listeners: { http: string; tls: string };
  /** PEM of the CA that signed the listener's wildcard certificate. */
  caCert: string;
  tlsCert: string;
  /** Selectors for NetworkPolicies that admit traffic from the gateway (CTF_ENTRY_*_SELECTOR). */
  namespaceSelector: string;
  podSelector: string;
  /** Loopback addresses relayed to the listeners (127.0.0.1:<port>), where they could be bound. */
  hostRelays: string[];
  timings: Record<string, number>;
}

async function goModuleDir(module: string): Promise<string> {
  // Outside any module, so the repository's environment cannot change what is resolved.
  const { stdout } = await run('go', ['mod', 'download', '-json', module], { cwd: tmpdir(), env: { ...process.env, GOFLAGS: '-mod=mod' }, maxBuffer: 1 << 20 });
  const dir = (JSON.parse(stdout) as { Dir?: string; Error?: string }).Dir;
  if (!dir) throw new Error(`go mod download ${module}: ${stdout}`);
  return dir;
}

interface TraefikStaticConfig {
  entryPoints: Record<string, { address: string }>;
  providers: { kubernetesGateway: { statusAddress: { ip: string } } };
}

/** Ports and status address come from the static config baked into the image, so they cannot drift. */
export async function readTraefikConfig(): Promise<{ httpPort: number; tlsPort: number; address: string }> {
  const cfg = parse(await readFile(join(REPO_ROOT, 'scripts/gateway/traefik.yml'), 'utf8')) as TraefikStaticConfig;
  const port = (ep: string) => Number(/:(\d+)$/.exec(cfg.entryPoints[ep]?.address ?? '')?.[1]);
  const out = { httpPort: port('web'), tlsPort: port('websecure'), address: cfg.providers.kubernetesGateway.statusAddress.ip };
  if (!out.httpPort || !out.tlsPort || !out.address) throw new Error('scripts/gateway/traefik.yml lacks the web/websecure ports or statusAddress.ip');
  return out;
}

/** The Gateway API CRDs (standard channel) of the pinned version, from the module cache. */
export async function gatewayApiCrdFiles(): Promise<string[]> {
  const std = join(await goModuleDir(`sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}`), 'config/crd/standard');
  return (await readdir(std)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').map((f) => join(std, f));
}

/** The CRD and RBAC documents of the pinned versions, from the module cache. */
async function upstreamDocuments(): Promise<{ crdFiles: string[]; clusterRoles: Record<string, unknown>[] }> {
  const gw = await goModuleDir(`sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}`);
  const traefik = await goModuleDir(`github.com/traefik/traefik/v3@${TRAEFIK_VERSION}`);
  // One channel only: the standard bundle's admission policy refuses experimental CRDs over it.
  const std = join(gw, 'config/crd/standard');
  const crdFiles = (await readdir(std)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').map((f) => join(std, f));
  const ref = join(traefik, 'docs/content/reference/dynamic-configuration');
  crdFiles.push(join(ref, 'kubernetes-crd-definition-v1.yml'));
  const clusterRoles: Record<string, unknown>[] = [];
  for (const [file, name] of [['kubernetes-gateway-rbac.yml', 'ctf-gateway-traefik-gateway'], ['kubernetes-crd-rbac.yml', 'ctf-gateway-traefik-crd']] as const) {
    for (const doc of parseAllDocuments(await readFile(join(ref, file), 'utf8'))) {
      const obj = doc.toJS() as { kind?: string; metadata?: { name?: string } } | null;
      // Upstream's bindings name a ServiceAccount in `default`; ours are made for ctf-gateway/traefik.
      if (obj?.kind === 'ClusterRole') clusterRoles.push({ ...obj, metadata: { name } });
    }
  }
  if (clusterRoles.length !== 2) throw new Error(`expected 2 ClusterRoles in traefik's RBAC files, found ${clusterRoles.length}`);
  return { crdFiles, clusterRoles };
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { maxBuffer: 1 << 20 });
}

/** A throwaway CA and a wildcard certificate for `*.<domain>` signed by it. */
async function makeCertificate(dir: string, domain: string): Promise<{ ca: string; cert: string; key: string }> {
  const p = (f: string) => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '30', '-subj', '/CN=challenge-engine-local-gateway-ca']);
  await writeFile(p('tls.ext'), `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:*.${domain},DNS:${domain}\n`);
  await openssl(['req', ...ec, '-keyout', p('tls.key'), '-out', p('tls.csr'), '-subj', `/CN=*.${domain}`]);
  await openssl(['x509', '-req', '-in', p('tls.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('tls.crt'), '-days', '30', '-extfile', p('tls.ext')]);
  return { ca: p('ca.crt'), cert: p('tls.crt'), key: p('tls.key') };
}

/** Node code of the relay (a separate detached process, so it outlives `npm run cluster:up`). */
const RELAY_JS = `
const net = require('node:net');
const [host, port, toHost, toPort] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(Number(toPort), toHost);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
  c.pipe(u).pipe(c);
}).listen(Number(port), host, () => console.log('relay ' + host + ':' + port + ' -> ' + toHost + ':' + toPort));
`;

async function startApiserverRelay(cluster: ClusterState, node: RealNodeState): Promise<void> {
  const api = new URL(cluster.server);
  node.pids['apiserver-relay'] = await startProcess(node.dir, 'apiserver-relay', process.execPath, ['-e', RELAY_JS, GATEWAY, String(APISERVER_RELAY_PORT), api.hostname, api.port]);
  await saveRealNodeState(node);
  await waitFor('the apiserver relay', 10_000, () => canConnect(GATEWAY, APISERVER_RELAY_PORT));
}

/**
 * Browsers resolve every *.localhost name to the loopback address, so the listeners are also
 * relayed from 127.0.0.1 on the same ports: links on *.ctf.localhost open on this machine. A port
 * already taken is reported and skipped (the ClusterIP still works).
 */
async function startHostRelays(node: RealNodeState, address: string, ports: number[], progress: Progress): Promise<string[]> {
  const relayed: string[] = [];
  for (const port of ports) {
    const name = `gateway-relay-${port}`;
    node.pids[name] = await startProcess(node.dir, name, process.execPath, ['-e', RELAY_JS, '127.0.0.1', String(port), address, String(port)]);
    await saveRealNodeState(node);
    const pid = node.pids[name];
    // A relay that cannot bind exits at once; only then could another process answer the connect.
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    try {
      await waitFor(`the gateway relay on 127.0.0.1:${port}`, 5_000, async () => { await new Promise((r) => setTimeout(r, 300)); return alive() && (await canConnect('127.0.0.1', port)) && alive(); });
      relayed.push(`127.0.0.1:${port}`);
    } catch {
      delete node.pids[name];
      await saveRealNodeState(node);
      progress(`127.0.0.1:${port} is taken: links on *.ctf.localhost will not open in a browser here (the gateway stays reachable at ${address}:${port})`);
    }
  }
  return relayed;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Installs the Gateway API (standard channel) and Traefik CRDs, then Traefik and the Gateway;
 * returns once the Gateway is Programmed. Records the result in the real node's state.
 */
export async function startGateway(cluster: ClusterState, node: RealNodeState, progress: Progress): Promise<GatewayState> {
  const t0 = Date.now();
  const domain = process.env.CTF_LOCAL_DOMAIN ?? 'ctf.localhost';
  const { httpPort, tlsPort, address } = await readTraefikConfig();
  const dir = join(node.dir, 'gateway');
  await mkdir(dir, { recursive: true });

  progress(`installing Gateway API ${GATEWAY_API_VERSION} (standard) and Traefik CRDs`);
  const { crdFiles, clusterRoles } = await upstreamDocuments();
  await kubectl(cluster, ['apply', '--server-side', '--force-conflicts', `--field-manager=${FIELD_MANAGER}`, ...crdFiles.flatMap((f) => ['-f', f])]);
  await kubectl(cluster, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  const tCrds = Date.now();

  await startApiserverRelay(cluster, node);
  const certs = await makeCertificate(dir, domain);
  const spec: GatewaySpec = {
    domain,
    address,
    httpPort,
    tlsPort,
    node: REAL_NODE,
    image: `docker.io/challenge-engine/traefik:${TRAEFIK_VERSION}`,
    apiserver: { ip: GATEWAY, port: APISERVER_RELAY_PORT },
    tls: { cert: await readFile(certs.cert, 'utf8'), key: await readFile(certs.key, 'utf8') },
  };
  progress(`starting Traefik ${TRAEFIK_VERSION} and Gateway ${GATEWAY_NAMESPACE}/${GATEWAY_NAME} (*.${domain})`);
  const objects = [...clusterRoles, ...gatewayManifests(spec)];
  await kubectl(cluster, ['apply', '--server-side', '--force-conflicts', `--field-manager=${FIELD_MANAGER}`, '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  const ns = ['-n', GATEWAY_NAMESPACE];
  try {
    await kubectl(cluster, [...ns, 'wait', '--for=condition=Available', '--timeout=120s', 'deployment/traefik']);
    await kubectl(cluster, [...ns, 'wait', '--for=condition=Programmed', '--timeout=60s', `gateway/${GATEWAY_NAME}`]);
  } catch (err) {
    throw new Error(`${(err as Error).message}; see ${join(node.podLogsDir)}/${GATEWAY_NAMESPACE}_traefik-*`);
  }
  const relayed = await startHostRelays(node, address, [httpPort, tlsPort], progress);
  const state: GatewayState = {
    namespace: GATEWAY_NAMESPACE,
    name: GATEWAY_NAME,
    domain,
    address,
    httpPort,
    tlsPort,
    listeners: { http: 'http', tls: 'tls' },
    caCert: certs.ca,
    tlsCert: certs.cert,
    namespaceSelector: `kubernetes.io/metadata.name=${GATEWAY_NAMESPACE}`,
    podSelector: `app.kubernetes.io/name=${GATEWAY_POD_LABELS['app.kubernetes.io/name']}`,
    hostRelays: relayed,
    timings: { crdsMs: tCrds - t0, readyMs: Date.now() - tCrds },
  };
  node.gateway = state;
  await saveRealNodeState(node);
  progress(`gateway ${address} (http :${httpPort}, tls :${tlsPort}, *.${domain}) Programmed in ${((Date.now() - t0) / 1000).toFixed(1)}s; secret ${TLS_SECRET}, CA ${certs.ca}`);
  return state;
}

/** The engine settings that publish instances on the local gateway (as overlays/local does in-cluster). */
export function gatewayEngineEnv(gw: GatewayState): Record<string, string> {
  return {
    CTF_EXTERNAL_DOMAIN: gw.domain,
    CTF_GATEWAY: `${gw.namespace}/${gw.name}`,
    CTF_GATEWAY_HTTP_LISTENER: gw.listeners.http,
    CTF_GATEWAY_TLS_LISTENER: gw.listeners.tls,
    CTF_GATEWAY_AUTH_FILTER: 'traefik.io/Middleware/challenge-engine-access',
    CTF_PUBLIC_HTTP_SCHEME: 'http',
    CTF_PUBLIC_HTTP_PORT: String(gw.httpPort),
    CTF_PUBLIC_TLS_PORT: String(gw.tlsPort),
    CTF_ENTRY_NAMESPACE_SELECTOR: gw.namespaceSelector,
    CTF_ENTRY_POD_SELECTOR: gw.podSelector,
  };
}
