import { describe, it, expect } from 'vitest';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import {
  challengeSpecSchema,
  sessionSpecSchema,
  sessionStatusSchema,
  ANNOTATION_EXPIRES_AT,
  CHALLENGE_KIND,
  CHALLENGE_PLURAL,
  CIDR_PATTERN,
  CONDITION_REASON_PATTERN,
  CONDITION_TYPE_PATTERN,
  DNS_LABEL,
  DNS_SUBDOMAIN,
  DURATION_PATTERN,
  ENV_NAME_PATTERN,
  FLAG_FORMAT_PATTERN,
  GROUP,
  IMAGE_PATTERN,
  QUANTITY_PATTERN,
  SESSION_KIND,
  SESSION_NAME_PATTERN,
  SESSION_PLURAL,
  USER_PATTERN,
  VERSION,
} from '../../src/api/index.js';
import { loadCrds, loadSamples, type CrdManifest, type JsonSchema } from '../support/invalid-objects.js';

/**
 * Proves, without a cluster, that the CRDs in crds/ and the zod schemas in src/api describe the
 * same objects: the OpenAPI keywords are compared node by node, the apiserver's defaulting is
 * replayed against zod's, and the CEL rules that stand in for zod refinements are checked to
 * exist. What only an apiserver can show (CEL evaluation, error messages) is left to the
 * integration tests, which send test/support/invalid-objects.ts to a real one.
 */

const crds = loadCrds();

function crdFor(kind: string): CrdManifest {
  const crd = crds.find((c) => c.spec.names.kind === kind);
  if (!crd) throw new Error(`no CRD for ${kind}`);
  return crd;
}

function rootSchema(kind: string): JsonSchema {
  const version = crdFor(kind).spec.versions.find((v) => v.name === VERSION);
  if (!version) throw new Error(`${kind} has no version ${VERSION}`);
  return version.schema.openAPIV3Schema;
}

/** The node at "spec.containers[].name" ("[]" steps into array items). */
function nodeAt(schema: JsonSchema, path: string): JsonSchema {
  let node = schema;
  for (const step of path.split('.')) {
    const [name = '', ...brackets] = step.split('[]');
    const next = node.properties?.[name];
    if (!next) throw new Error(`no property ${name} in ${path}`);
    node = next;
    for (let i = 0; i < brackets.length; i++) {
      if (!node.items) throw new Error(`${name} in ${path} is not an array`);
      node = node.items;
    }
  }
  return node;
}

function zodJsonSchema(schema: z.ZodType): JsonSchema {
  // Input view: fields with defaults are optional, exactly as in the CRD.
  return z.toJSONSchema(schema, { io: 'input' }) as JsonSchema;
}

// additionalProperties is left out on purpose: zod's strict objects reject unknown fields where
// the apiserver prunes them (or rejects them under strict field validation), and a structural
// schema may not say additionalProperties: false. format is left out because the CRD carries
// metav1.Condition's date-time and int64 formats, which zod does not express.
const KEYWORDS = ['type', 'required', 'enum', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'minItems', 'maxItems', 'default'] as const;

function normalise(keyword: (typeof KEYWORDS)[number], value: unknown): unknown {
  if (value === undefined) return undefined;
  switch (keyword) {
    case 'pattern':
      // RegExp.source escapes "/" the way zod prints it; both sides go through the same function.
      return new RegExp(value as string).source;
    case 'required':
    case 'enum':
      return (value as string[]).length === 0 ? undefined : [...(value as string[])].sort();
    case 'minimum':
    case 'maximum':
      // zod writes the safe-integer range for a plain .int(); the CRD leaves it unbounded.
      return Math.abs(value as number) === Number.MAX_SAFE_INTEGER ? undefined : value;
    default:
      return value;
  }
}

/** Every place where the two schemas disagree, as "path: keyword zod=… crd=…". Empty when they agree. */
function schemaDifferences(zodNode: JsonSchema, crdNode: JsonSchema, path: string): string[] {
  const out: string[] = [];
  for (const keyword of KEYWORDS) {
    const a = normalise(keyword, zodNode[keyword]);
    const b = normalise(keyword, crdNode[keyword]);
    if (!isDeepStrictEqual(a, b)) out.push(`${path}: ${keyword} zod=${JSON.stringify(a)} crd=${JSON.stringify(b)}`);
  }
  const names = new Set([...Object.keys(zodNode.properties ?? {}), ...Object.keys(crdNode.properties ?? {})]);
  for (const name of names) {
    const a = zodNode.properties?.[name];
    const b = crdNode.properties?.[name];
    if (!a || !b) out.push(`${path}.${name}: only in ${a ? 'zod' : 'the CRD'}`);
    else out.push(...schemaDifferences(a, b, `${path}.${name}`));
  }
  if (zodNode.items && crdNode.items) out.push(...schemaDifferences(zodNode.items, crdNode.items, `${path}[]`));
  else if (zodNode.items || crdNode.items) out.push(`${path}[]: items only in ${zodNode.items ? 'zod' : 'the CRD'}`);
  return out;
}

/** The apiserver's structural defaulting: fill absent fields from `default`, then descend, defaulted values included. */
function applyCrdDefaults(value: unknown, schema: JsonSchema): unknown {
  if (Array.isArray(value)) return schema.items ? value.map((v) => applyCrdDefaults(v, schema.items as JsonSchema)) : value;
  if (typeof value !== 'object' || value === null || !schema.properties) return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const [name, property] of Object.entries(schema.properties)) {
    if (out[name] === undefined && property.default !== undefined) out[name] = structuredClone(property.default);
  }
  for (const [name, property] of Object.entries(schema.properties)) {
    if (out[name] !== undefined) out[name] = applyCrdDefaults(out[name], property);
  }
  return out;
}

/** Calls visit on every node with its dotted path. */
function walk(node: JsonSchema, path: string, visit: (node: JsonSchema, path: string) => void): void {
  visit(node, path);
  for (const [name, child] of Object.entries(node.properties ?? {})) walk(child, path ? `${path}.${name}` : name, visit);
  if (node.items) walk(node.items, `${path}[]`, visit);
}

const pairs = [
  { name: 'Challenge spec', zod: challengeSpecSchema, crd: () => nodeAt(rootSchema(CHALLENGE_KIND), 'spec') },
  { name: 'ChallengeSession spec', zod: sessionSpecSchema, crd: () => nodeAt(rootSchema(SESSION_KIND), 'spec') },
  { name: 'ChallengeSession status', zod: sessionStatusSchema, crd: () => nodeAt(rootSchema(SESSION_KIND), 'status') },
];

describe('CRD manifests', () => {
  it.each([
    [CHALLENGE_KIND, CHALLENGE_PLURAL, ['chal'], false],
    [SESSION_KIND, SESSION_PLURAL, ['cs', 'chs'], true],
  ] as const)('%s is served as %s in group and version of src/api', (kind, plural, shortName, hasStatus) => {
    const crd = crdFor(kind);
    expect(crd.metadata.name).toBe(`${plural}.${GROUP}`);
    expect(crd.spec).toMatchObject({ group: GROUP, scope: 'Namespaced', names: { kind, plural, shortNames: [...shortName], categories: ['ctf'] } });
    expect(crd.spec.versions).toHaveLength(1);
    expect(crd.spec.versions[0]).toMatchObject({ name: VERSION, served: true, storage: true });
    expect(crd.spec.versions[0]?.subresources?.status !== undefined).toBe(hasStatus);
  });

  it.each([
    [CHALLENGE_KIND, ['Title', 'Category', 'Points', 'Age']],
    [SESSION_KIND, ['User', 'Claimed-By', 'Challenge', 'Phase', 'Admitted', 'Expires', 'Age']],
  ])('%s printer columns point at fields that exist', (kind, names) => {
    const columns = crdFor(kind).spec.versions[0]?.additionalPrinterColumns ?? [];
    expect(columns.map((c) => c.name)).toEqual(names);
    for (const column of columns.filter((c) => c.jsonPath.startsWith('.spec.') || c.jsonPath.startsWith('.status.'))) {
      const node = nodeAt(rootSchema(kind), column.jsonPath.slice(1));
      expect(node.type, column.name).toBe(column.type === 'integer' ? 'integer' : 'string');
    }
  });

  it('shows the expiry annotation, escaped the way the apiserver’s JSONPath needs', () => {
    const expires = crdFor(SESSION_KIND).spec.versions[0]?.additionalPrinterColumns?.find((c) => c.name === 'Expires');
    expect(expires).toEqual({ name: 'Expires', type: 'string', jsonPath: `.metadata.annotations.${ANNOTATION_EXPIRES_AT.replaceAll('.', '\\.')}` });
  });
});

describe.each(pairs)('$name', ({ zod, crd }) => {
  it('has the same properties, required fields, enums, patterns, bounds and defaults as zod', () => {
    expect(schemaDifferences(zodJsonSchema(zod), crd(), '')).toEqual([]);
  });
});

describe('the comparison', () => {
  const zodSpec = zodJsonSchema(challengeSpecSchema);
  const seeded: [string, (spec: JsonSchema) => void, string][] = [
    ['a different maximum', (s) => (nodeAt(s, 'points').maximum = 1000), '.points: maximum'],
    ['a missing enum value', (s) => (nodeAt(s, 'expose[]').properties!.protocol!.enum = ['http']), '.expose[].protocol: enum'],
    ['a different pattern', (s) => (nodeAt(s, 'containers[].image').pattern = '^[a-z]+$'), '.containers[].image: pattern'],
    ['an extra required field', (s) => s.required!.push('description'), ': required'],
    ['a missing property', (s) => delete s.properties!.tags, '.tags: only in zod'],
    ['an extra property', (s) => (s.properties!.hint = { type: 'string' }), '.hint: only in the CRD'],
    ['a different nested default', (s) => (nodeAt(s, 'lifetime.max').default = '4h'), '.lifetime.max: default'],
    ['a missing maxItems', (s) => delete nodeAt(s, 'containers[].env').maxItems, '.containers[].env: maxItems'],
  ];

  it.each(seeded)('notices %s', (_what, disagree, expected) => {
    const spec = structuredClone(nodeAt(rootSchema(CHALLENGE_KIND), 'spec'));
    disagree(spec);
    expect(schemaDifferences(zodSpec, spec, '')).toEqual([expect.stringContaining(expected)]);
  });
});

describe('patterns', () => {
  // The CRD must spell each pattern exactly as the constant exported from src/api.
  const challenge = rootSchema(CHALLENGE_KIND);
  const session = rootSchema(SESSION_KIND);
  it.each([
    [challenge, 'spec.containers[].image', IMAGE_PATTERN],
    [challenge, 'spec.containers[].name', DNS_LABEL],
    [challenge, 'spec.containers[].env[].name', ENV_NAME_PATTERN],
    [challenge, 'spec.containers[].resources.limits.memory', QUANTITY_PATTERN],
    [challenge, 'spec.flag.dynamic.format', FLAG_FORMAT_PATTERN],
    [challenge, 'spec.flag.static.secretRef.name', DNS_SUBDOMAIN],
    [challenge, 'spec.flag.envName', ENV_NAME_PATTERN],
    [challenge, 'spec.lifetime.max', DURATION_PATTERN],
    [challenge, 'spec.network.egress[].cidr', CIDR_PATTERN],
    [session, 'spec.user', USER_PATTERN],
    [session, 'spec.team', USER_PATTERN],
    [session, 'status.conditions[].type', CONDITION_TYPE_PATTERN],
    [session, 'status.conditions[].reason', CONDITION_REASON_PATTERN],
  ])('%#: %s', (root, path, pattern) => {
    expect(nodeAt(root, path).pattern).toBe(pattern);
  });
});

describe('defaulting', () => {
  const minimal = {
    title: 'T',
    category: 'misc',
    points: 1,
    containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 80 }], env: [{ name: 'A' }], readinessProbe: { httpGet: { port: 80 } } }],
    expose: [{ port: 80, protocol: 'http' }],
    flag: { dynamic: {} },
    lifetime: { max: '2h' },
    network: { egress: [{ cidr: '10.0.0.0/8', ports: [{ port: 53 }] }] },
  };
  const specs = [{ name: 'a minimal spec', spec: minimal as unknown }, ...loadSamples().map((s) => ({ name: s.file, spec: (s.object as { spec: unknown }).spec }))];

  it.each(specs)('the apiserver and zod fill the same defaults into $name', ({ spec }) => {
    const crdSpec = nodeAt(rootSchema(CHALLENGE_KIND), 'spec');
    expect(applyCrdDefaults(structuredClone(spec), crdSpec)).toEqual(challengeSpecSchema.parse(spec));
  });

  it('CRD defaults are themselves valid', () => {
    const crdSpec = nodeAt(rootSchema(CHALLENGE_KIND), 'spec');
    expect(challengeSpecSchema.shape.lifetime.parse(crdSpec.properties?.lifetime?.default)).toEqual(crdSpec.properties?.lifetime?.default);
    expect(challengeSpecSchema.shape.network.parse(crdSpec.properties?.network?.default)).toEqual(crdSpec.properties?.network?.default);
  });
});

describe('structural schema and CEL', () => {
  const rulesOf = (node: JsonSchema) => node['x-kubernetes-validations'] ?? [];

  it.each([CHALLENGE_KIND, SESSION_KIND])('%s: every node is typed and no object mixes properties with additionalProperties', (kind) => {
    walk(rootSchema(kind), '', (node, path) => {
      expect(node.type, path || '<root>').toMatch(/^(object|array|string|integer|number|boolean)$/);
      if (node.properties) expect(node.additionalProperties, path).toBeUndefined();
      if (node['x-kubernetes-list-type'] === 'map') {
        for (const key of node['x-kubernetes-list-map-keys'] as string[]) expect(node.items?.required, path).toContain(key);
      }
    });
  });

  it.each([CHALLENGE_KIND, SESSION_KIND])('%s: every array in the spec is bounded', (kind) => {
    walk(nodeAt(rootSchema(kind), 'spec'), 'spec', (node, path) => {
      if (node.type === 'array') expect(node.maxItems, path).toBeTypeOf('number');
    });
  });

  it.each([CHALLENGE_KIND, SESSION_KIND])('%s: every fieldPath names a property of the rule’s node', (kind) => {
    walk(rootSchema(kind), '', (node, path) => {
      for (const rule of rulesOf(node).filter((r) => r.fieldPath)) {
        expect(() => nodeAt(node, rule.fieldPath!.slice(1)), `${path}: ${rule.rule}`).not.toThrow();
      }
    });
  });

  it('strings that CEL rules read have a maxLength', () => {
    const challenge = rootSchema(CHALLENGE_KIND);
    const session = rootSchema(SESSION_KIND);
    const read = [
      [challenge, 'metadata.name'],
      [challenge, 'spec.containers[].name'],
      [challenge, 'spec.flag.containers[]'],
      [challenge, 'spec.flag.filePath'],
      [challenge, 'spec.lifetime.default'],
      [challenge, 'spec.lifetime.max'],
      [challenge, 'spec.lifetime.extension'],
      [challenge, 'spec.network.egress[].cidr'],
      [session, 'metadata.name'],
      [session, 'spec.challenge'],
      [session, 'spec.user'],
      [session, 'spec.team'],
    ] as const;
    for (const [root, path] of read) expect(nodeAt(root, path).maxLength, path).toBeTypeOf('number');
  });

  it('names follow the patterns zod applies to metadata.name', () => {
    const [challengeName] = rulesOf(rootSchema(CHALLENGE_KIND));
    expect(challengeName).toMatchObject({ fieldPath: '.metadata.name' });
    expect(challengeName?.rule).toContain(`self.metadata.name.matches('${DNS_LABEL}')`);
    expect(challengeName?.rule).toContain('size(self.metadata.name) <= 63');
    expect(rulesOf(rootSchema(SESSION_KIND))).toEqual([
      expect.objectContaining({ rule: `self.metadata.name.matches('${SESSION_NAME_PATTERN}')`, fieldPath: '.metadata.name' }),
    ]);
  });

  it('a session spec cannot change, names a user unless a pool instance, and a team-owned one names its team', () => {
    expect(rulesOf(nodeAt(rootSchema(SESSION_KIND), 'spec'))).toEqual([
      { rule: 'self == oldSelf', message: 'spec is immutable' },
      { rule: 'has(self.pool) && self.pool ? !has(self.user) && !has(self.team) && !has(self.owner) : has(self.user)', message: 'a session needs a user, and a pool instance (pool true) has none', fieldPath: '.user' },
      { rule: "!has(self.owner) || self.owner != 'team' || has(self.team)", message: 'a team-owned session needs a team', fieldPath: '.team' },
    ]);
  });

  it.each([
    ['spec', 'self.expose.all(', '.expose'],
    ['spec', 'self.flag.containers.all(', '.flag.containers'],
    ['spec.containers[].readinessProbe', 'has(self.tcpSocket) != has(self.httpGet)', undefined],
    ['spec.flag', 'has(self.dynamic) != has(self.static)', undefined],
    ['spec.flag.filePath', "!self.endsWith('/')", undefined],
    ['spec.lifetime', "duration(self.default) >= duration('1m')", '.default'],
    ['spec.lifetime', "duration(self.max) <= duration('168h')", '.max'],
    ['spec.lifetime', 'duration(self.default) <= duration(self.max)', '.default'],
    ['spec.lifetime', "duration(self.extension) >= duration('1m')", '.extension'],
    ['spec.network.egress[].cidr', 'isCIDR(self)', undefined],
  ])('Challenge %s has the rule %s', (path, rule, fieldPath) => {
    const match = rulesOf(nodeAt(rootSchema(CHALLENGE_KIND), path)).find((r) => r.rule.includes(rule));
    expect(match?.message).toMatch(/\w+ \w+/);
    expect(match?.fieldPath).toBe(fieldPath);
  });

  it('container names are unique through a list map keyed by name', () => {
    expect(nodeAt(rootSchema(CHALLENGE_KIND), 'spec.containers')).toMatchObject({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] });
  });
});
