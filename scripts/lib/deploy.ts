import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { execFileP, REPO_ROOT, kubectl, type ClusterState, type Progress } from './control-plane.js';
import type { RealNodeState } from './real-node.js';

/*
 * The engine deployed into the local cluster the way organisers deploy it: its own image, built
 * here without Docker (scripts/image/build-engine.sh) and imported into the real node's
 * containerd, then `kubectl apply -k` of overlays/local with generated Secrets put over the
 * base's placeholders by an overlay written to the cluster's directory (never into the repository).
 */

export const ENGINE_IMAGE = 'docker.io/challenge-engine/engine';
export const ENGINE_NAMESPACE = 'ctf';
export const ENGINE_DEPLOYMENT = 'challenge-engine';
/** The API as players on this machine reach it: the gateway's HTTP listener, relayed on loopback. */
export const LOCAL_API_HOST = 'play.ctf.localhost';

/** What a deployment needs of a cluster: kubectl, its kubeconfig and a directory of its own. */
export type DeployTarget = Pick<ClusterState, 'binDir' | 'kubeconfig' | 'dir'>;

export interface EngineImage {
  archive: string;
  tag: string;
  ref: string;
}

export interface LocalSecrets {
  flagKey: string;
  tokenSecret: string;
}

/** Runs the image build (cached by its sources) and returns the archive and its tag. */
export async function buildEngineImage(progress: Progress): Promise<EngineImage> {
  progress('building the engine image (scripts/image/build-engine.sh)');
  const child = spawn('bash', [join(REPO_ROOT, 'scripts/image/build-engine.sh')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`scripts/image/build-engine.sh failed (exit ${code})`);
  const [archive, tag] = out.trim().split('\n').slice(-2);
  if (!archive || !tag) throw new Error(`unexpected output of scripts/image/build-engine.sh: ${out}`);
  return { archive, tag, ref: `${ENGINE_IMAGE}:${tag}` };
}

/** Imports the image into the real node's containerd (k8s.io namespace), where kubelet finds it. */
export async function importEngineImage(node: RealNodeState, image: EngineImage): Promise<void> {
  const ctr = ['-a', node.socket, '-n', 'k8s.io'];
  await execFileP('ctr', [...ctr, 'images', 'import', '--base-name', ENGINE_IMAGE, image.archive], { maxBuffer: 16 << 20 });
  const { stdout } = await execFileP('ctr', [...ctr, 'images', 'ls', '-q'], { maxBuffer: 16 << 20 });
  if (!stdout.split('\n').includes(image.ref)) throw new Error(`image ${image.ref} missing after import`);
}

/** The Secrets' values, generated once per cluster and kept (mode 0600) in its directory. */
export async function localSecrets(dir: string): Promise<LocalSecrets> {
  const file = join(dir, 'secrets.json');
  try {
    const s = JSON.parse(await readFile(file, 'utf8')) as Partial<LocalSecrets>;
    if (s.flagKey && s.tokenSecret) return { flagKey: s.flagKey, tokenSecret: s.tokenSecret };
  } catch {
    // first deployment
  }
  const s = { flagKey: randomBytes(32).toString('hex'), tokenSecret: randomBytes(32).toString('hex') };
  await mkdir(dir, { recursive: true });
  await writeFile(file, JSON.stringify(s), { mode: 0o600 });
  return s;
}

/**
 * The overlay of overlays/local that `kubectl apply -k` gets: the image tag just built and, unless
 * `placeholders` is set, the generated Secrets in place of the CHANGE-ME values.
 */
export function deployKustomization(dir: string, tag: string, secrets: LocalSecrets | undefined): string {
  const doc: Record<string, unknown> = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: [relative(dir, join(REPO_ROOT, 'overlays', 'local'))],
    images: [{ name: ENGINE_IMAGE, newTag: tag }],
  };
  // The Pods start again when the Secrets change (the engine reads them at start only).
  const checksum = secrets ? createHash('sha256').update(`${secrets.flagKey}\n${secrets.tokenSecret}`).digest('hex').slice(0, 16) : 'placeholders';
  const annotation = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: ENGINE_DEPLOYMENT }, spec: { template: { metadata: { annotations: { 'challenge-engine.io/secrets-checksum': checksum } } } } };
  doc.patches = [{ patch: JSON.stringify(annotation) }];
  if (secrets) {
    doc.generatorOptions = { disableNameSuffixHash: true };
    doc.secretGenerator = [
      { name: 'challenge-engine-flag-key', behavior: 'replace', literals: [`flag-key=${secrets.flagKey}`] },
      { name: 'challenge-engine-token', behavior: 'replace', literals: [`token-secret=${secrets.tokenSecret}`] },
    ];
  }
  return JSON.stringify(doc, null, 2);
}

export interface DeployOptions {
  /** Keep the base's placeholder Secrets (the engine must refuse them). */
  placeholders?: boolean;
  /** Wait for the rollout (default true). */
  wait?: boolean;
  /** Also install the sample Challenges (default true). */
  samples?: boolean;
}

export interface Deployment {
  image: EngineImage;
  secrets: LocalSecrets;
  /** The kustomization applied. */
  dir: string;
  timings: Record<string, number>;
}

/** Builds and imports the image, applies the deployment and waits until it is rolled out. */
export async function deployLocal(cluster: DeployTarget, node: RealNodeState, progress: Progress, opts: DeployOptions = {}): Promise<Deployment> {
  const t0 = Date.now();
  const image = await buildEngineImage(progress);
  const tBuilt = Date.now();
  await importEngineImage(node, image);
  const tImported = Date.now();
  progress(`imported ${image.ref} into the real node (${((tImported - tBuilt) / 1000).toFixed(1)}s)`);
  const dir = join(cluster.dir, 'deploy');
  const secrets = await localSecrets(dir);
  await writeFile(join(dir, 'kustomization.yaml'), deployKustomization(dir, image.tag, opts.placeholders ? undefined : secrets), { mode: 0o600 });
  progress(`kubectl apply -k ${relative(REPO_ROOT, join(REPO_ROOT, 'overlays', 'local'))} (with ${opts.placeholders ? 'its placeholder' : 'generated'} Secrets)`);
  await kubectl(cluster, ['apply', '--server-side', '--force-conflicts', '--field-manager=challenge-engine-deploy', '-k', dir]);
  if (opts.samples ?? true) await installSampleChallenges(cluster);
  const tApplied = Date.now();
  if (opts.wait ?? true) {
    progress('waiting for both replicas to be Ready');
    await kubectl(cluster, ['-n', ENGINE_NAMESPACE, 'rollout', 'status', `deployment/${ENGINE_DEPLOYMENT}`, '--timeout=180s']);
  }
  const timings = { buildMs: tBuilt - t0, importMs: tImported - tBuilt, applyMs: tApplied - tImported, rolloutMs: Date.now() - tApplied };
  progress(`engine ${image.tag} deployed in ${((Date.now() - t0) / 1000).toFixed(1)}s (${JSON.stringify(timings)})`);
  return { image, secrets, dir, timings };
}

/** The sample Challenges of challenges/, and the Secret the static-flag sample reads. */
export async function installSampleChallenges(cluster: DeployTarget, namespace = ENGINE_NAMESPACE): Promise<void> {
  const secret = await kubectl(cluster, ['-n', namespace, 'create', 'secret', 'generic', 'crypto-baby-rsa-flag', `--from-literal=flag=CTF{static_${randomBytes(8).toString('hex')}}`, '--dry-run=client', '-o', 'yaml']);
  // Created once: a later run keeps the flag players may already have.
  await kubectl(cluster, ['-n', namespace, 'create', '-f', '-'], secret).catch((err: Error) => {
    if (!/AlreadyExists/.test(err.message)) throw err;
  });
  await kubectl(cluster, ['-n', namespace, 'apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'challenges')]);
}
