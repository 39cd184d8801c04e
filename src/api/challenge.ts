import { z } from 'zod';
import { API_VERSION, CHALLENGE_KIND } from './group.js';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import { objectMeta, DNS_LABEL, dnsLabel, OWNER_MODES } from './common.js';
import { isCidr } from './cidr.js';

/**
 * The Challenge custom resource. This schema mirrors crds/challenges.yaml: the apiserver is the
 * first line of validation, this is the second (objects read from caches are parsed again), and
 * test/unit/crd-agreement.test.ts proves the two accept and reject the same objects.
 */

export const IMAGE_PATTERN =
  '^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$';
export const QUANTITY_PATTERN = '^[0-9]+(\\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$';
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';
export const FLAG_FORMAT_PATTERN = '^[\\x21-\\x24\\x26-\\x7e]*%s[\\x21-\\x24\\x26-\\x7e]*$';
export const CIDR_PATTERN =
  '^(([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,2}|[0-9a-fA-F:]+:[0-9a-fA-F:]*/[0-9]{1,3})$';
const ABS_PATH_PATTERN = '^/[A-Za-z0-9._/-]*$';

const port = z.number().int().min(1).max(65535);
const quantity = z.string().regex(new RegExp(QUANTITY_PATTERN), 'must be a resource quantity such as 250m or 64Mi');
// The pattern admits at most 18 characters; the explicit bound keeps the CRD's CEL cost estimate small.
const duration = z
  .string()
  .min(1, 'must not be empty')
  .max(18)
  .regex(new RegExp(DURATION_PATTERN), 'must be a duration such as 1h, 30m or 1h30m');

export const resourceListSchema = z.strictObject({ cpu: quantity.optional(), memory: quantity.optional() });
export const resourcesSchema = z.strictObject({
  requests: resourceListSchema.optional(),
  limits: resourceListSchema.optional(),
});

export const containerPortSchema = z.strictObject({
  name: dnsLabel(15).optional(),
  containerPort: port,
  protocol: z.enum(['TCP', 'UDP']).default('TCP'),
});

export const probeSchema = z
  .strictObject({
    tcpSocket: z.strictObject({ port }).optional(),
    httpGet: z.strictObject({ path: z.string().regex(/^\//).max(1024).default('/'), port }).optional(),
    initialDelaySeconds: z.number().int().min(0).max(600).optional(),
    periodSeconds: z.number().int().min(1).max(600).optional(),
    timeoutSeconds: z.number().int().min(1).max(600).optional(),
    failureThreshold: z.number().int().min(1).max(100).optional(),
  })
  .refine((p) => (p.tcpSocket ? 1 : 0) + (p.httpGet ? 1 : 0) === 1, 'exactly one of tcpSocket or httpGet is required');

export const envVarSchema = z.strictObject({
  name: z.string().min(1).max(128).regex(new RegExp(ENV_NAME_PATTERN), 'must be a valid environment variable name'),
  value: z.string().max(4096).default(''),
});

export const containerSchema = z.strictObject({
  name: dnsLabel(63),
  image: z.string().min(1).max(512).regex(new RegExp(IMAGE_PATTERN), 'must be an image reference such as registry/repo:tag'),
  command: z.array(z.string().max(4096)).max(64).optional(),
  args: z.array(z.string().max(4096)).max(64).optional(),
  env: z.array(envVarSchema).max(64).optional(),
  ports: z.array(containerPortSchema).max(16).optional(),
  resources: resourcesSchema.optional(),
  readinessProbe: probeSchema.optional(),
  /** Opt-out of the read-only root filesystem for images that must write outside scratchPaths. */
  readOnlyRootFilesystem: z.boolean().default(true),
  /** Writable emptyDir mounts (memory-backed, size-capped) for a read-only root filesystem. */
  scratchPaths: z.array(z.string().max(256).regex(new RegExp(ABS_PATH_PATTERN), 'must be an absolute path')).max(8).optional(),
  /** Non-root user the container runs as; the pod default is 65532. */
  runAsUser: z.number().int().min(1).max(2147483647).optional(),
});

export const exposeSchema = z.strictObject({
  /** Service port name; defaults to the protocol and port, e.g. http-8080. */
  name: dnsLabel(15).optional(),
  port,
  protocol: z.enum(['http', 'tcp']),
});

export const flagSchema = z
  .strictObject({
    dynamic: z
      .strictObject({
        format: z
          .string()
          .max(64)
          .regex(new RegExp(FLAG_FORMAT_PATTERN), 'must contain %s once, in printable ASCII without other %')
          .default('CTF{%s}'),
        length: z.number().int().min(8).max(64).default(32),
      })
      .optional(),
    static: z
      .strictObject({
        secretRef: z.strictObject({ name: dnsLabel(253, true), key: z.string().min(1).max(253).regex(/^[-._a-zA-Z0-9]+$/) }),
      })
      .optional(),
    delivery: z.enum(['env', 'file']).default('env'),
    envName: z.string().min(1).max(128).regex(new RegExp(ENV_NAME_PATTERN)).default('FLAG'),
    filePath: z.string().max(256).regex(new RegExp(ABS_PATH_PATTERN), 'must be an absolute path').refine((p) => !p.endsWith('/'), 'must name a file').default('/run/flag/flag'),
    /** Containers that receive the flag; all of them when absent. */
    containers: z.array(dnsLabel(63)).max(8).optional(),
  })
  .refine((f) => (f.dynamic ? 1 : 0) + (f.static ? 1 : 0) === 1, 'exactly one of dynamic or static is required');

export const lifetimeSchema = z
  .strictObject({
    default: duration.default('1h'),
    max: duration.default('3h'),
    extension: duration.default('30m'),
  })
  .superRefine((l, ctx) => {
    const d = parseDuration(l.default);
    const m = parseDuration(l.max);
    const e = parseDuration(l.extension);
    // A malformed duration already has its own issue; comparing it as 0 would only add noise.
    if (d === undefined || m === undefined || e === undefined) return;
    if (d < 60_000) ctx.addIssue({ code: 'custom', path: ['default'], message: 'default lifetime must be at least 1m' });
    if (m > 7 * 24 * 3600_000) ctx.addIssue({ code: 'custom', path: ['max'], message: 'maximum lifetime must be at most 168h' });
    if (d > m) ctx.addIssue({ code: 'custom', path: ['default'], message: 'default lifetime must not exceed the maximum lifetime' });
    if (e < 60_000) ctx.addIssue({ code: 'custom', path: ['extension'], message: 'extension step must be at least 1m' });
  });

export const egressRuleSchema = z.strictObject({
  cidr: z
    .string()
    .max(43)
    .regex(new RegExp(CIDR_PATTERN), { message: 'must be a CIDR such as 203.0.113.0/24', abort: true })
    .refine(isCidr, 'must be a valid CIDR such as 203.0.113.0/24'),
  ports: z.array(z.strictObject({ port, protocol: z.enum(['TCP', 'UDP']).default('TCP') })).max(16).optional(),
});

export const challengeSpecSchema = z
  .strictObject({
    title: z.string().min(1).max(100),
    description: z.string().max(10_000).default(''),
    category: z.string().min(1).max(50),
    points: z.number().int().min(0).max(100_000),
    tags: z.array(z.string().min(1).max(40)).max(20).default([]),
    /** Hidden challenges are not listed and cannot be spawned; running sessions are left alone. */
    enabled: z.boolean().default(true),
    containers: z.array(containerSchema).min(1).max(8),
    expose: z.array(exposeSchema).min(1).max(16),
    flag: flagSchema,
    lifetime: lifetimeSchema.default({ default: '1h', max: '3h', extension: '30m' }),
    /**
     * Whether an instance belongs to the player who starts it or to the player's team (one
     * instance per team); absent: the engine's default (CTF_INSTANCE_OWNER).
     */
    owner: z.enum(OWNER_MODES).optional(),
    /**
     * Warm instances: `size` ready, unclaimed instances of this challenge are kept (unreachable,
     * no player) so a spawn claims one instead of waiting for a fresh Pod.
     */
    pool: z.strictObject({ size: z.number().int().min(0).max(1000) }).optional(),
    /** Concurrent sessions of this challenge one user may hold. */
    maxSessionsPerUser: z.number().int().min(1).max(10).default(1),
    /** Concurrent instances of this challenge engine-wide; further spawns queue. Absent: no cap. */
    maxInstances: z.number().int().min(1).max(100_000).optional(),
    network: z
      .strictObject({ egress: z.array(egressRuleSchema).max(32).default([]) })
      .default({ egress: [] }),
  })
  .superRefine((spec, ctx) => {
    const names = new Set<string>();
    spec.containers.forEach((c, i) => {
      if (names.has(c.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: `duplicate container name ${c.name}` });
      names.add(c.name);
    });
    const ports = new Set(spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)));
    spec.expose.forEach((e, i) => {
      if (!ports.has(e.port)) ctx.addIssue({ code: 'custom', path: ['expose', i, 'port'], message: 'exposed port must be a containerPort of one of the containers' });
    });
    spec.flag.containers?.forEach((n, i) => {
      if (!names.has(n)) ctx.addIssue({ code: 'custom', path: ['flag', 'containers', i], message: `no container named ${n}` });
    });
  });

export const challengeSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(CHALLENGE_KIND),
  /** Sessions name their challenge in a DNS label and Pods carry it as a label value: at most 63 characters. */
  metadata: objectMeta.extend({ name: dnsLabel(63) }),
  spec: challengeSpecSchema,
});

export type ChallengeSpec = z.infer<typeof challengeSpecSchema>;
export type Challenge = z.infer<typeof challengeSchema>;
export type ChallengeContainer = z.infer<typeof containerSchema>;
export type ExposedPort = z.infer<typeof exposeSchema>;
export { DNS_LABEL };
