/**
 * npm run dev: the whole engine on a local cluster in one command, with instances players can
 * really open where this machine allows it.
 *  1. starts (or reuses) the local control plane of `npm run cluster:up`, building the
 *     Kubernetes binaries on first use with progress on the terminal; on Linux as root also the
 *     real node (real containers, enforced NetworkPolicies) and the local gateway (Traefik,
 *     *.ctf.localhost). Elsewhere instances run on kwok's fake node and it says so in one line;
 *  2. creates the `ctf` namespace, installs the sample Challenges (and the Secret the static-flag
 *     sample reads) and, with the gateway, the forward-auth Middleware pointing at this engine;
 *  3. runs the engine (API + controller) with readable logs, restarting it when src/ changes;
 *  4. once it is ready, with the gateway: starts the web and the TCP sample for player1 and prints
 *     a link that opens the web one in a browser here and the ncat/openssl lines for the TCP one;
 *     always: a player token and curl lines for the whole journey.
 * Development secrets are generated once per cluster and kept in .cluster/dev.env.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, kubectl, type ClusterState } from './lib/control-plane.js';
import { installSampleChallenges } from './lib/deploy.js';
import { gatewayEngineEnv, type GatewayState } from './lib/gateway.js';
import { clusterDir, ensureLocalCluster, realNodeUnavailable } from './lib/local-cluster.js';
import { GATEWAY } from './lib/real-node.js';
import { TICKET_TTL_SECONDS } from '../src/sessions/access.js';
import { issueToken } from '../src/http/auth.js';

const dir = clusterDir();
const namespace = process.env.CTF_NAMESPACE ?? 'ctf';
const port = process.env.PORT ?? '8080';
const say = (m: string) => process.stderr.write(`\x1b[36m[dev]\x1b[0m ${m}\n`);

async function devSecrets(): Promise<{ token: string; flag: string }> {
  const file = join(dir, 'dev.env');
  try {
    const env = Object.fromEntries((await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => l.split('=', 2) as [string, string]));
    if (env.CTF_TOKEN_SECRET && env.CTF_FLAG_KEY) return { token: env.CTF_TOKEN_SECRET, flag: env.CTF_FLAG_KEY };
  } catch {
    // first run
  }
  const s = { token: randomBytes(32).toString('hex'), flag: randomBytes(32).toString('hex') };
  await writeFile(file, `CTF_TOKEN_SECRET=${s.token}\nCTF_FLAG_KEY=${s.flag}\n`, { mode: 0o600 });
  return s;
}

async function prepareNamespace(state: ClusterState, gw: GatewayState | undefined): Promise<void> {
  say(`installing CRDs and sample challenges into namespace ${namespace}`);
  await kubectl(state, ['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'crds')]);
  await kubectl(state, ['create', 'namespace', namespace, '--dry-run=client', '-o', 'yaml']).then((y) => kubectl(state, ['apply', '-f', '-'], y));
  await installSampleChallenges(state, namespace);
  if (!gw) return;
  const inCluster = await kubectl(state, ['-n', namespace, 'get', 'deployment', 'challenge-engine', '-o', 'name', '--ignore-not-found']);
  if (inCluster.trim()) say('an in-cluster engine (npm run deploy:local) also runs here: dev takes over the forward auth until deploy:local runs again');
  // The gateway's Pod calls this process on the bridge address for every request to an instance.
  const middleware = {
    apiVersion: 'traefik.io/v1alpha1',
    kind: 'Middleware',
    metadata: { name: 'challenge-engine-access', namespace },
    spec: { forwardAuth: { address: `http://${GATEWAY}:${port}/gateway/auth` } },
  };
  await kubectl(state, ['apply', '--server-side', '--force-conflicts', '--field-manager=challenge-engine-dev', '-f', '-'], JSON.stringify(middleware));
}

interface Endpoint { name: string; protocol: string; externalHost?: string; url?: string }
interface View { id: string; ready: boolean; phase: string; endpoints: Endpoint[] }

async function call<T>(method: string, path: string, token: string, body?: unknown): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

async function waitEngineReady(child: { exitCode: number | null }): Promise<void> {
  for (let i = 0; i < 600 && child.exitCode === null; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error('the engine did not become ready');
}

/** Starts `challenge` for the player (or finds the running one) and waits until it is ready. */
async function ready(token: string, challenge: string): Promise<View> {
  const { session } = await call<{ session: View }>('POST', '/api/challenges', token, { challenge });
  for (let i = 0; i < 6; i++) {
    const { session: v } = await call<{ session: View }>('GET', `/api/sessions/${session.id}?wait=30`, token);
    if (v.ready) return v;
  }
  throw new Error(`${challenge} did not become ready within 3 minutes (kubectl -n ${namespace} describe challengesession ${session.id})`);
}

async function playLinks(token: string, gw: GatewayState): Promise<void> {
  const [web, tcp] = await Promise.all([ready(token, 'web-notes'), ready(token, 'pwn-echo')]);
  const { url } = await call<{ url: string }>('POST', `/api/sessions/${web.id}/access`, token);
  const host = tcp.endpoints.find((e) => e.externalHost)?.externalHost ?? '<host>';
  const local = gw.hostRelays.length > 0 ? '127.0.0.1' : gw.address;
  process.stdout.write(`
Play (player1):
  web-notes, open in a browser on this machine within ${TICKET_TTL_SECONDS} s (single-use; the browser then keeps a cookie):
    ${url}
  a fresh link later:
    curl -s -H "Authorization: Bearer $TOKEN" -X POST http://localhost:${port}/api/sessions/${web.id}/access
  pwn-echo, over TLS to the gateway (ncat: apt-get install ncat):
    ncat --ssl --ssl-servername ${host} ${local} ${gw.tlsPort}
    openssl s_client -quiet -connect ${local}:${gw.tlsPort} -servername ${host}
    pwntools: remote('${local}', ${gw.tlsPort}, ssl=True, sni='${host}')

`);
}

function printJourney(player: string, admin: string, state: ClusterState): void {
  const base = `http://localhost:${port}`;
  const h = `-H "Authorization: Bearer $TOKEN"`;
  process.stdout.write(`
challenge-engine is starting on ${base} (namespace ${namespace}); API docs: ${base}/docs
The player page, signed in as player1 (the token goes in the fragment, as a scoreboard links it):
  ${base}/play#token=${player}

  export KUBECONFIG=${state.kubeconfig}
  export TOKEN=${player}
  export ADMIN_TOKEN=${admin}

  # the catalogue
  curl -s ${h} ${base}/api/challenges
  # spawn an instance of the web sample, then wait (up to 30 s) until it is ready
  curl -s ${h} -H 'content-type: application/json' -d '{"challenge":"web-notes"}' ${base}/api/challenges
  curl -s ${h} "${base}/api/sessions?wait=30"
  # a single-use link that opens it (with the gateway)
  curl -s ${h} -X POST ${base}/api/sessions/<id>/access
  # the session's flag, as the container sees it (the organiser's view)
  kubectl -n ${namespace} get secret -l ctf.challenge-engine.io/challenge=web-notes -o jsonpath='{.items[0].data.flag}' | base64 -d; echo
  # submit a flag (use the id from the spawn response)
  curl -s ${h} -H 'content-type: application/json' -d '{"challenge":"web-notes","flag":"CTF{wrong}"}' ${base}/api/flags
  # extend, then stop
  curl -s ${h} -X POST ${base}/api/sessions/<id>/extend
  curl -s ${h} -X DELETE ${base}/api/challenges/<id>
  # organisers
  kubectl -n ${namespace} get challenges,challengesessions
  curl -s ${base}/metrics | grep challenge_engine_

`);
}

async function main(): Promise<void> {
  const missing = realNodeUnavailable();
  if (missing) say(`instances run on kwok's fake node and cannot be opened: ${missing}`);
  const { state, node } = await ensureLocalCluster(say, { realNode: !missing });
  const gw = node?.gateway;
  await prepareNamespace(state, gw);

  const secrets = await devSecrets();
  const player = await issueToken(secrets.token, { user: 'player1', team: 'local', ttlSeconds: 12 * 3600 });
  const admin = await issueToken(secrets.token, { user: 'organiser', admin: true, ttlSeconds: 12 * 3600 });
  printJourney(player, admin, state);
  const env = {
    ...process.env,
    KUBECONFIG: state.kubeconfig,
    CTF_NAMESPACE: namespace,
    CTF_TOKEN_SECRET: secrets.token,
    CTF_FLAG_SECRET: `literal:${secrets.flag}`,
    PORT: port,
    LOG_PRETTY: process.env.LOG_PRETTY ?? 'true',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    ...(gw ? gatewayEngineEnv(gw) : {}),
  };
  // The player page, rebuilt on every change to web/.
  const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');
  const web = spawn(process.execPath, [tsx, join(REPO_ROOT, 'scripts', 'build-web.ts'), '--watch'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const child = spawn(process.execPath, [join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'watch', '--clear-screen=false', join(REPO_ROOT, 'src', 'main.ts')], { env, stdio: 'inherit' });
  const stop = () => {
    web.kill('SIGTERM');
    child.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  child.on('exit', (code) => {
    web.kill('SIGTERM');
    say('engine stopped; the local cluster keeps running (npm run cluster:down stops it)');
    process.exit(code ?? 0);
  });
  if (gw) {
    await waitEngineReady(child);
    await playLinks(player, gw).catch((err: unknown) => say(`could not start the samples: ${err instanceof Error ? err.message : String(err)}`));
  }
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
