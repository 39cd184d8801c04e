/**
 * npm run dev: the whole engine on a local cluster in one command.
 *  1. starts (or reuses) the local control plane of `npm run cluster:up`, building the
 *     Kubernetes binaries on first use with progress on the terminal;
 *  2. creates the `ctf` namespace, installs the sample Challenges (and the Secret the static-flag
 *     sample reads);
 *  3. prints a player token and curl lines for the whole player journey;
 *  4. runs the engine (API + controller) with readable logs, restarting it when src/ changes.
 * Development secrets are generated once per cluster and kept in .cluster/dev.env.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, ensureBinaries, isRunning, kubectl, readState, startCluster, stopCluster, type ClusterState } from './lib/control-plane.js';
import { issueToken } from '../src/http/auth.js';

const dir = process.env.CTF_CLUSTER_DIR ?? join(REPO_ROOT, '.cluster');
const namespace = process.env.CTF_NAMESPACE ?? 'ctf';
const port = process.env.PORT ?? '8080';
const say = (m: string) => process.stderr.write(`\x1b[36m[dev]\x1b[0m ${m}\n`);

async function cluster(): Promise<ClusterState> {
  const existing = await readState(dir);
  if (existing && (await isRunning(existing))) {
    say(`reusing the local cluster at ${existing.server}`);
    return existing;
  }
  if (existing) await stopCluster(existing);
  say('preparing the Kubernetes binaries (the first build from Go modules takes several minutes)');
  const binDir = await ensureBinaries((m) => say(m));
  return startCluster(dir, binDir, (m) => say(m), { crdDir: join(REPO_ROOT, 'crds') });
}

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

async function main(): Promise<void> {
  const state = await cluster();
  say(`installing CRDs and sample challenges into namespace ${namespace}`);
  await kubectl(state, ['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'crds')]);
  await kubectl(state, ['create', 'namespace', namespace, '--dry-run=client', '-o', 'yaml']).then((y) => kubectl(state, ['apply', '-f', '-'], y));
  await kubectl(state, ['-n', namespace, 'create', 'secret', 'generic', 'crypto-baby-rsa-flag', '--from-literal=flag=CTF{static_dev_flag}', '--dry-run=client', '-o', 'yaml']).then((y) =>
    kubectl(state, ['-n', namespace, 'apply', '-f', '-'], y),
  );
  await kubectl(state, ['-n', namespace, 'apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'challenges')]);

  const secrets = await devSecrets();
  const player = await issueToken(secrets.token, { user: 'player1', team: 'local', ttlSeconds: 12 * 3600 });
  const admin = await issueToken(secrets.token, { user: 'organiser', admin: true, ttlSeconds: 12 * 3600 });
  const base = `http://localhost:${port}`;
  const h = `-H "Authorization: Bearer $TOKEN"`;
  process.stdout.write(`
challenge-engine is starting on ${base} (namespace ${namespace}); API docs: ${base}/docs

  export KUBECONFIG=${state.kubeconfig}
  export TOKEN=${player}
  export ADMIN_TOKEN=${admin}

  # the catalogue
  curl -s ${h} ${base}/api/challenges
  # spawn an instance of the web sample, then wait (up to 30 s) until it is ready
  curl -s ${h} -H 'content-type: application/json' -d '{"challenge":"web-notes"}' ${base}/api/challenges
  curl -s ${h} "${base}/api/sessions?wait=30"
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
  const env = {
    ...process.env,
    KUBECONFIG: state.kubeconfig,
    CTF_NAMESPACE: namespace,
    CTF_TOKEN_SECRET: secrets.token,
    CTF_FLAG_SECRET: `literal:${secrets.flag}`,
    PORT: port,
    LOG_PRETTY: process.env.LOG_PRETTY ?? 'true',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  };
  const child = spawn(process.execPath, [join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'watch', '--clear-screen=false', join(REPO_ROOT, 'src', 'main.ts')], { env, stdio: 'inherit' });
  const stop = () => child.kill('SIGTERM');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  child.on('exit', (code) => {
    say('engine stopped; the local cluster keeps running (npm run cluster:down stops it)');
    process.exit(code ?? 0);
  });
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
