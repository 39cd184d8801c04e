import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, CHALLENGE_KIND, SESSION_KIND } from '../../src/api/index.js';

/**
 * Objects that both the zod schemas and the CRDs must reject, shared by the unit tests (zod) and
 * the integration tests (a real apiserver). Each is a valid base object with one mutation, so a
 * rejection can only come from that mutation. `field` is the path, in the apiserver's notation,
 * that the error names: a zod issue path starts with it and the apiserver's message contains it.
 */

export type Kind = typeof CHALLENGE_KIND | typeof SESSION_KIND;

export interface InvalidCase {
  name: string;
  kind: Kind;
  object: Record<string, unknown>;
  field: string;
}

type Json = Record<string, unknown>;
type Mutation = (object: Json) => void;

export function validChallenge(name = 'web-notes'): Json {
  return {
    apiVersion: API_VERSION,
    kind: CHALLENGE_KIND,
    metadata: { name },
    spec: {
      title: 'Notes',
      category: 'web',
      points: 200,
      containers: [
        {
          name: 'app',
          image: 'challenge-engine/web-notes:1.0',
          ports: [{ name: 'http', containerPort: 8080 }],
          env: [{ name: 'MODE', value: 'ctf' }],
          resources: { limits: { cpu: '500m', memory: '128Mi' } },
          readinessProbe: { httpGet: { path: '/healthz', port: 8080 } },
          scratchPaths: ['/tmp'],
        },
        { name: 'db', image: 'challenge-engine/web-notes-db:1.0', ports: [{ containerPort: 5432 }] },
      ],
      expose: [{ name: 'http', port: 8080, protocol: 'http' }],
      flag: { dynamic: { format: 'CTF{%s}', length: 32 }, containers: ['app'] },
      lifetime: { default: '1h', max: '3h', extension: '30m' },
      network: { egress: [{ cidr: '203.0.113.0/24', ports: [{ port: 443 }] }] },
    },
  };
}

export function validSession(name = 'web-notes-alice'): Json {
  return {
    apiVersion: API_VERSION,
    kind: SESSION_KIND,
    metadata: { name },
    spec: { challenge: 'web-notes', user: 'alice@example.org', team: 'red-team' },
  };
}

/** Splits "spec.containers[0].name" into ['spec', 'containers', 0, 'name']. */
function parsePath(path: string): (string | number)[] {
  return path.split('.').flatMap((part) => {
    const [key = '', ...indexes] = part.split(/[[\]]+/).filter((s) => s !== '');
    return [key, ...indexes.map(Number)];
  });
}

function parentOf(object: Json, path: string): [Record<string | number, unknown>, string | number] {
  const keys = parsePath(path);
  const last = keys.pop();
  if (last === undefined) throw new Error(`empty path`);
  let node: unknown = object;
  for (const key of keys) {
    node = (node as Record<string | number, unknown>)[key];
    if (typeof node !== 'object' || node === null) throw new Error(`${path}: nothing at ${key}`);
  }
  return [node as Record<string | number, unknown>, last];
}

const set =
  (path: string, value: unknown): Mutation =>
  (object) => {
    const [parent, key] = parentOf(object, path);
    parent[key] = value;
  };

const unset =
  (path: string): Mutation =>
  (object) => {
    const [parent, key] = parentOf(object, path);
    if (!(key in parent)) throw new Error(`${path} is not set in the base object`);
    delete parent[key];
  };

function challenge(name: string, field: string, ...mutations: Mutation[]): InvalidCase {
  const object = validChallenge();
  for (const mutate of mutations) mutate(object);
  return { name, kind: CHALLENGE_KIND, object, field };
}

function session(name: string, field: string, ...mutations: Mutation[]): InvalidCase {
  const object = validSession();
  for (const mutate of mutations) mutate(object);
  return { name, kind: SESSION_KIND, object, field };
}

export const invalidObjects: readonly InvalidCase[] = [
  // Required fields, types and bounds.
  challenge('challenge without a title', 'spec.title', unset('spec.title')),
  challenge('empty title', 'spec.title', set('spec.title', '')),
  challenge('title over 100 characters', 'spec.title', set('spec.title', 'x'.repeat(101))),
  challenge('negative points', 'spec.points', set('spec.points', -1)),
  challenge('points above 100000', 'spec.points', set('spec.points', 100_001)),
  challenge('fractional points', 'spec.points', set('spec.points', 1.5)),
  challenge('more than 20 tags', 'spec.tags', set('spec.tags', Array.from({ length: 21 }, (_, i) => `t${i}`))),
  challenge('no containers', 'spec.containers', set('spec.containers', [])),
  challenge('no exposed ports', 'spec.expose', set('spec.expose', [])),
  challenge('maxSessionsPerUser of zero', 'spec.maxSessionsPerUser', set('spec.maxSessionsPerUser', 0)),
  challenge('challenge name with a dot', 'metadata.name', set('metadata.name', 'web.notes')),

  // Containers.
  challenge('image with upper-case letters', 'spec.containers[0].image', set('spec.containers[0].image', 'Challenge-Engine/Web:1.0')),
  challenge('container name that is not a DNS label', 'spec.containers[1].name', set('spec.containers[1].name', 'Db_1')),
  challenge('duplicate container names', 'spec.containers[1]', set('spec.containers[1].name', 'app')),
  challenge('environment variable name starting with a digit', 'spec.containers[0].env[0].name', set('spec.containers[0].env[0].name', '1MODE')),
  challenge('container port 0', 'spec.containers[1].ports[0].containerPort', set('spec.containers[1].ports[0].containerPort', 0)),
  challenge('container port above 65535', 'spec.containers[1].ports[0].containerPort', set('spec.containers[1].ports[0].containerPort', 65_536)),
  challenge('memory limit in MB', 'spec.containers[0].resources.limits.memory', set('spec.containers[0].resources.limits.memory', '128MB')),
  challenge('relative scratch path', 'spec.containers[0].scratchPaths[0]', set('spec.containers[0].scratchPaths[0]', 'tmp')),
  challenge(
    'probe with both tcpSocket and httpGet',
    'spec.containers[0].readinessProbe',
    set('spec.containers[0].readinessProbe.tcpSocket', { port: 8080 }),
  ),
  challenge('probe with neither tcpSocket nor httpGet', 'spec.containers[0].readinessProbe', unset('spec.containers[0].readinessProbe.httpGet')),

  // Exposure.
  challenge('exposed protocol udp', 'spec.expose[0].protocol', set('spec.expose[0].protocol', 'udp')),
  challenge('exposed port that no container listens on', 'spec.expose', set('spec.expose[0].port', 9090)),

  // Flag.
  challenge('both dynamic and static flag', 'spec.flag', set('spec.flag.static', { secretRef: { name: 'flag', key: 'flag' } })),
  challenge('neither dynamic nor static flag', 'spec.flag', unset('spec.flag.dynamic')),
  challenge('flag format without %s', 'spec.flag.dynamic.format', set('spec.flag.dynamic.format', 'CTF{}')),
  challenge('flag format with a second %', 'spec.flag.dynamic.format', set('spec.flag.dynamic.format', 'CTF{%s%d}')),
  challenge('flag length below 8', 'spec.flag.dynamic.length', set('spec.flag.dynamic.length', 4)),
  challenge('unknown flag delivery', 'spec.flag.delivery', set('spec.flag.delivery', 'stdin')),
  challenge('flag file path naming a directory', 'spec.flag.filePath', set('spec.flag.delivery', 'file'), set('spec.flag.filePath', '/run/flag/')),
  challenge('flag for a container that does not exist', 'spec.flag.containers', set('spec.flag.containers', ['app', 'worker'])),
  challenge('secret name with upper-case letters', 'spec.flag.static.secretRef.name', unset('spec.flag.dynamic'), set('spec.flag.static', { secretRef: { name: 'Flag', key: 'flag' } })),

  // Ownership.
  challenge('owner that is neither user nor team', 'spec.owner', set('spec.owner', 'clan')),

  // Lifetime.
  challenge('default lifetime longer than the maximum', 'spec.lifetime.default', set('spec.lifetime.default', '4h')),
  challenge('default lifetime under a minute', 'spec.lifetime.default', set('spec.lifetime.default', '30s')),
  challenge('maximum lifetime over a week', 'spec.lifetime.max', set('spec.lifetime.max', '169h')),
  challenge('extension step under a minute', 'spec.lifetime.extension', set('spec.lifetime.extension', '59s')),
  challenge('lifetime in days', 'spec.lifetime.default', set('spec.lifetime.default', '1d')),

  // Network.
  challenge('egress to a host name', 'spec.network.egress[0].cidr', set('spec.network.egress[0].cidr', 'example.com')),
  challenge('egress CIDR with an octet above 255', 'spec.network.egress[0].cidr', set('spec.network.egress[0].cidr', '300.0.113.0/24')),
  challenge('egress CIDR with a /33 prefix', 'spec.network.egress[0].cidr', set('spec.network.egress[0].cidr', '203.0.113.0/33')),
  challenge('egress port above 65535', 'spec.network.egress[0].ports[0].port', set('spec.network.egress[0].ports[0].port', 70_000)),

  // Sessions.
  session('session without a spec', 'spec', unset('spec')),
  session('session without a user', 'spec.user', unset('spec.user')),
  session('user starting with a dot', 'spec.user', set('spec.user', '.alice')),
  session('user with a space', 'spec.user', set('spec.user', 'alice smith')),
  session('user over 128 characters', 'spec.user', set('spec.user', 'a'.repeat(129))),
  session('team with a slash', 'spec.team', set('spec.team', 'red/blue')),
  session('team-owned session without a team', 'spec.team', unset('spec.team'), set('spec.owner', 'team')),
  session('session owner that is neither user nor team', 'spec.owner', set('spec.owner', 'clan')),
  session('challenge that is not a DNS label', 'spec.challenge', set('spec.challenge', 'Web_Notes')),
  session('session name starting with a digit', 'metadata.name', set('metadata.name', '1-web-notes')),
  session('session name over 52 characters', 'metadata.name', set('metadata.name', `s${'x'.repeat(52)}`)),
];

/** An update the CRD must refuse: the spec of an existing session never changes. */
export const immutableSessionUpdate = {
  name: 'changing the user of an existing session',
  kind: SESSION_KIND,
  before: validSession(),
  after: { ...validSession(), spec: { challenge: 'web-notes', user: 'mallory', team: 'red-team' } },
  field: 'spec',
  message: 'spec is immutable',
} as const;

const ROOT = new URL('../../', import.meta.url);

function readYamlDir(dir: string): { file: string; object: unknown }[] {
  const url = new URL(`${dir}/`, ROOT);
  return readdirSync(fileURLToPath(url))
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .flatMap((file) =>
      parseAllDocuments(readFileSync(new URL(file, url), 'utf8')).map((doc) => {
        if (doc.errors.length > 0) throw new Error(`${dir}/${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
        return { file: `${dir}/${file}`, object: doc.toJS() as unknown };
      }),
    )
    .filter((d) => d.object != null);
}

/** Every document of every YAML file in challenges/, with the file it came from. */
export function loadSamples(): { file: string; object: unknown }[] {
  return readYamlDir('challenges');
}

export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  required?: string[];
  'x-kubernetes-validations'?: { rule: string; message?: string; fieldPath?: string }[];
  [keyword: string]: unknown;
}

export interface CrdManifest {
  apiVersion: string;
  kind: 'CustomResourceDefinition';
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; singular?: string; shortNames?: string[]; categories?: string[] };
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources?: { status?: object };
      additionalPrinterColumns?: { name: string; type: string; jsonPath: string }[];
      schema: { openAPIV3Schema: JsonSchema };
    }[];
  };
}

/** The CustomResourceDefinitions in crds/. */
export function loadCrds(): CrdManifest[] {
  return readYamlDir('crds').map(({ file, object }) => {
    const crd = object as CrdManifest;
    if (crd.kind !== 'CustomResourceDefinition') throw new Error(`${file} is not a CustomResourceDefinition`);
    return crd;
  });
}
