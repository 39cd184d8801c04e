/**
 * npm run deploy:local: the engine as organisers run it, on this machine's local cluster.
 *  1. starts (or reuses) the local control plane with the real node and its gateway (root, Linux);
 *  2. builds the engine's image without Docker and imports it into the node's containerd;
 *  3. `kubectl apply -k overlays/local` with generated Secrets, plus the sample Challenges;
 *  4. waits for both replicas and prints the player API on the gateway, a token and curl lines.
 * Idempotent: run it again after changing src/ to roll out a new image. npm run cluster:down
 * removes everything.
 */
import { issueToken } from '../src/http/auth.js';
import { deployLocal, ENGINE_NAMESPACE, LOCAL_API_HOST } from './lib/deploy.js';
import { ensureLocalCluster, realNodeUnavailable } from './lib/local-cluster.js';

const say = (m: string) => process.stderr.write(`\x1b[36m[deploy]\x1b[0m ${m}\n`);

async function main(): Promise<void> {
  const missing = realNodeUnavailable();
  if (missing) throw new Error(`${missing}; deploy:local runs the engine's Pods on it (npm run dev runs the engine on this machine instead)`);
  const { state, node } = await ensureLocalCluster(say, { realNode: true });
  if (!node?.gateway) throw new Error('the real node has no gateway');
  const { secrets, image } = await deployLocal(state, node, say);
  const player = await issueToken(secrets.tokenSecret, { user: 'player1', team: 'local', ttlSeconds: 12 * 3600 });
  const admin = await issueToken(secrets.tokenSecret, { user: 'organiser', admin: true, ttlSeconds: 12 * 3600 });
  const base = `http://${LOCAL_API_HOST}:${node.gateway.httpPort}`;
  const h = '-H "Authorization: Bearer $TOKEN"';
  const reachable = node.gateway.hostRelays.length > 0;
  process.stdout.write(`
challenge-engine ${image.tag} runs in namespace ${ENGINE_NAMESPACE} (2 replicas), behind the gateway at ${base}
${reachable ? '' : `(127.0.0.1:${node.gateway.httpPort} was taken: reach the gateway at ${node.gateway.address} with curl --connect-to)\n`}
The player page, signed in as player1 (open it in a browser on this machine):
  ${base}/play#token=${player}

  export KUBECONFIG=${state.kubeconfig}
  export TOKEN=${player}
  export ADMIN_TOKEN=${admin}

  curl -s ${h} ${base}/api/challenges
  curl -s ${h} -H 'content-type: application/json' -d '{"challenge":"web-notes"}' ${base}/api/challenges
  curl -s ${h} "${base}/api/sessions?wait=30"
  # a single-use link that opens the instance in a browser on this machine
  curl -s ${h} -X POST ${base}/api/sessions/<id>/access
  kubectl -n ${ENGINE_NAMESPACE} get deployment,pods,challengesessions

`);
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
