import { hostname } from 'node:os';
import { z } from 'zod';
import { OWNER_MODES, type OwnerMode } from './api/common.js';
import { DURATION_PATTERN, parseDuration } from './api/duration.js';

/**
 * The engine's configuration, parsed once from the environment. Every bad or missing value is
 * reported by name in one error, so a misconfigured deployment fails at start with a clear message.
 */

/**
 * Reconciles at once. They wait on the apiserver far more than they compute: a burst of claims
 * from the API's connections needs about as many publishing reconciles in flight to keep up
 * (docs/benchmarks.md, "Warm pools: the claim floor and publishing": with 16, claims
 * waited 9 s to be published).
 */
export const DEFAULT_RECONCILE_CONCURRENCY = 64;

const selector = z
  .string()
  .regex(/^([A-Za-z0-9./_-]+=[A-Za-z0-9._-]*)(,[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*)*$/, 'must be key=value[,key=value...]');

function parseSelector(s: string | undefined): Record<string, string> | undefined {
  if (!s) return undefined;
  return Object.fromEntries(s.split(',').map((kv) => kv.split('=', 2) as [string, string]));
}

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const secretName = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a Secret name, or literal:<key> in development');

/**
 * Why a secret value is one anyone could guess, or undefined: the CHANGE-ME placeholders that
 * manifests/secrets.yaml ships, or one short pattern repeated (aaaa..., abab..., 1234 1234...).
 * The reason never includes the value, so it can be printed and kept in a Pod's status.
 */
export function guessableSecret(value: string): string | undefined {
  const v = value.trim();
  if (/^change-me/i.test(v)) return 'holds a placeholder (it starts with CHANGE-ME)';
  if (v === '') return 'is blank';
  if (/^(.{1,4})\1+$/s.test(v)) return 'holds a guessable value (one short pattern repeated)';
  return undefined;
}

export const NEW_SECRET_HINT = 'replace it with the output of openssl rand -hex 32';

const envSchema = z.object({
  KUBECONFIG: z.string().optional(),
  PORT: int(0, 65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  CTF_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name').default('ctf'),
  CTF_ENGINE_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name').optional(),
  CTF_TOKEN_SECRET: z
    .string()
    .min(32, 'must be at least 32 characters')
    .superRefine((v, ctx) => {
      const why = guessableSecret(v);
      // The engine sees only the variable; the manifests fill it from that Secret.
      if (why) ctx.addIssue({ code: 'custom', message: `${why}; in manifests/ it comes from Secret challenge-engine-token, key token-secret: ${NEW_SECRET_HINT}` });
    })
    .optional(),
  CTF_FLAG_SECRET: z.string().superRefine((v, ctx) => {
    if (v.startsWith('literal:')) {
      const why = guessableSecret(v.slice('literal:'.length));
      if (v.length < 'literal:'.length + 16) ctx.addIssue({ code: 'custom', message: 'a literal:<key> needs at least 16 characters of key' });
      else if (why) ctx.addIssue({ code: 'custom', message: `the literal:<key> ${why}: ${NEW_SECRET_HINT}` });
    } else if (!secretName.safeParse(v).success) {
      ctx.addIssue({ code: 'custom', message: 'must be the name of a Secret holding the flag key, or literal:<key> in development' });
    }
  }),
  CTF_FLAG_SECRET_KEY: z.string().default('flag-key'),
  CTF_JWKS_URL: z
    .string()
    .url('must be the https URL of the issuer\'s JWKS')
    .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
    .optional(),
  CTF_TOKEN_ISSUER: z.string().min(1).optional(),
  CTF_TOKEN_AUDIENCE: z.string().min(1).optional(),
  CTF_TOKEN_USER_CLAIM: z.string().regex(/^[A-Za-z0-9_:.-]+$/, 'must be a claim name (a.b for nested claims)').default('sub'),
  CTF_TOKEN_TEAM_CLAIM: z.string().regex(/^[A-Za-z0-9_:.-]+$/, 'must be a claim name (a.b for nested claims)').default('team'),
  CTF_TOKEN_ADMIN_CLAIM: z.string().regex(/^[A-Za-z0-9_:.-]+$/, 'must be a claim name (a.b for nested claims)').default('role'),
  CTF_TOKEN_ADMIN_VALUE: z.string().min(1).default('admin'),
  CTF_JWKS_CACHE_SECONDS: int(10, 86_400).default(600),
  CTF_JWKS_COOLDOWN_SECONDS: int(1, 3600).default(30),
  CTF_EXTERNAL_DOMAIN: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name').optional(),
  CTF_CLUSTER_DOMAIN: z.string().default('cluster.local'),
  CTF_GATEWAY: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be <namespace>/<name> of a Gateway').optional(),
  CTF_GATEWAY_HTTP_LISTENER: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a listener name, or none').default('http'),
  CTF_GATEWAY_TLS_LISTENER: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a listener name, or none').default('tls'),
  CTF_GATEWAY_AUTH_FILTER: z.string().regex(/^[a-z0-9.-]+\/[A-Za-z]+\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be <group>/<Kind>/<name>, e.g. traefik.io/Middleware/challenge-engine-access').optional(),
  CTF_PUBLIC_HTTP_SCHEME: z.enum(['http', 'https']).default('https'),
  CTF_PUBLIC_HTTP_PORT: int(1, 65535).optional(),
  CTF_PUBLIC_TLS_PORT: int(1, 65535).default(443),
  CTF_ENTRY_NAMESPACE_SELECTOR: selector.optional(),
  CTF_ENTRY_POD_SELECTOR: selector.optional(),
  CTF_EXTRA_FORBIDDEN_CIDRS: z.string().optional(),
  CTF_MAX_SESSIONS_PER_USER: int(1, 100).default(3),
  CTF_MAX_INSTANCES: int(0, 1_000_000).default(0),
  CTF_QUEUE_TIMEOUT: z
    .string()
    .regex(new RegExp(DURATION_PATTERN), 'must be a duration such as 10m, 90s or 1h30m')
    .refine((v) => (parseDuration(v) ?? 0) >= 1000, 'must be at least 1s')
    .default('10m'),
  CTF_INSTANCE_OWNER: z.enum(OWNER_MODES, 'must be user or team').default('user'),
  CTF_RECONCILE_CONCURRENCY: int(1, 256).default(DEFAULT_RECONCILE_CONCURRENCY),
  CTF_RESYNC_SECONDS: int(1, 86_400).default(600),
  CTF_WATCH_TIMEOUT_SECONDS: int(5, 3600).optional(),
  CTF_WATCH_STALL_SECONDS: int(2, 7200).optional(),
  CTF_CACHE_AUDIT_SECONDS: int(0, 3600).default(10),
  CTF_RELIST_SECONDS: int(0, 604_800).default(3600),
  CTF_LEADER_ELECTION: bool.default(true),
  CTF_LEASE_NAME: z.string().default('challenge-engine-controller'),
  CTF_LEASE_SECONDS: int(2, 300).default(15),
  CTF_IDENTITY: z.string().default(`${hostname()}-${process.pid}`),
  CTF_CONTROLLER: bool.default(true),
  CTF_API: bool.default(true),
  CTF_CORS_ORIGINS: z.string().optional(),
  CTF_WEBHOOK_URL: z
    .string()
    .url('must be the http(s) URL of the receiver')
    .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
    .optional(),
  CTF_WEBHOOK_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  CTF_WEBHOOK_MAX_BACKOFF_SECONDS: int(1, 86_400).default(300),
  CTF_WEBHOOK_ALLOW_PRIVATE: bool.default(false),
  CTF_SCOREBOARD_URL: z
    .string()
    .url('must be an http(s) URL')
    .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
    .optional(),
  CTF_WEB_DIR: z.string().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: bool.default(false),
});

export interface Config {
  kubeconfig: string | undefined;
  port: number;
  host: string;
  namespace: string;
  engineNamespace: string;
  tokenSecret: string | undefined;
  /** Tokens of an OIDC/JWKS issuer, beside (or instead of) the shared secret. */
  oidc: { jwksUrl: string; issuer: string; audience: string; claims: { user: string; team: string; admin: string }; adminValue: string; cacheSeconds: number; cooldownSeconds: number } | undefined;
  flagKey: { literal: string } | { secretName: string; key: string };
  externalDomain: string | undefined;
  clusterDomain: string;
  /** The Gateway that session routes attach to; undefined: no routes. */
  gateway: { namespace: string; name: string; httpListener?: string; tlsListener?: string; authFilter?: { group: string; kind: string; name: string } } | undefined;
  /** How players reach public hosts: the scheme and port of HTTP, the port of TLS. */
  publicAccess: { httpScheme: 'http' | 'https'; httpPort: number; tlsPort: number };
  entryPoint: { namespaceSelector?: Record<string, string>; podSelector?: Record<string, string> };
  extraForbiddenCidrs: string[];
  /** Concurrent sessions per owner: a user, or a team for team-owned instances. */
  maxSessionsPerUser: number;
  /** Who an instance belongs to when its Challenge does not say (spec.owner). */
  instanceOwner: OwnerMode;
  /**
   * The first-come queue: concurrent instances engine-wide (undefined: unlimited), and how long
   * a session may wait for admission before it fails.
   */
  queue: { maxInstances: number | undefined; timeoutMs: number };
  reconcileConcurrency: number;
  resyncMs: number;
  /** Period of the pod-cache audit (0: off). */
  auditMs: number;
  /**
   * Server-side watch timeout (default 240-300 s, randomised), the silence after which a watch is
   * restarted, and the age after which the caches relist when a watch ends (0: never).
   */
  watch: { timeoutSeconds?: number; stallMs?: number; relistEveryMs?: number };
  leaderElection: boolean;
  leaseName: string;
  leaseMs: number;
  identity: string;
  runController: boolean;
  runApi: boolean;
  corsOrigins: string[];
  /** Solve webhooks: where, the HMAC key, and the longest wait between two attempts. */
  webhook: { url: string; secret: string; maxBackoffMs: number; allowPrivate: boolean } | undefined;
  /** The player page: where it is built, and the scoreboard expired sign-ins go back to. */
  page: { dir: string | undefined; scoreboardUrl: string | undefined };
  logLevel: string;
  logPretty: boolean;
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const r = envSchema.safeParse(cleaned);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.')}: ${i.path.length && cleaned[String(i.path[0])] === undefined ? 'is required' : i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = r.data;
  if (e.CTF_API && !e.CTF_TOKEN_SECRET && !e.CTF_JWKS_URL) throw new ConfigError('invalid configuration:\n  CTF_TOKEN_SECRET: is required when the API runs (CTF_API=true), unless CTF_JWKS_URL names an issuer');
  if (e.CTF_JWKS_URL && (!e.CTF_TOKEN_ISSUER || !e.CTF_TOKEN_AUDIENCE)) {
    const missing = [!e.CTF_TOKEN_ISSUER && '  CTF_TOKEN_ISSUER: is required with CTF_JWKS_URL (the iss of the issuer\'s tokens)', !e.CTF_TOKEN_AUDIENCE && '  CTF_TOKEN_AUDIENCE: is required with CTF_JWKS_URL (the aud the issuer sets for this API)'].filter(Boolean);
    throw new ConfigError(`invalid configuration:\n${missing.join('\n')}`);
  }
  if (e.CTF_WEBHOOK_URL && !e.CTF_WEBHOOK_SECRET) throw new ConfigError('invalid configuration:\n  CTF_WEBHOOK_SECRET: is required with CTF_WEBHOOK_URL (the HMAC key receivers verify events with)');
  if (e.CTF_WEBHOOK_SECRET && guessableSecret(e.CTF_WEBHOOK_SECRET)) throw new ConfigError('invalid configuration:\n  CTF_WEBHOOK_SECRET: holds a placeholder or guessable value; set it to the output of openssl rand -hex 32');
  if (e.CTF_GATEWAY && !e.CTF_EXTERNAL_DOMAIN) throw new ConfigError('invalid configuration:\n  CTF_EXTERNAL_DOMAIN: is required with CTF_GATEWAY (the wildcard domain of the public hosts)');
  const flag = e.CTF_FLAG_SECRET;
  const listener = (v: string) => (v === 'none' ? undefined : v);
  const [gwNamespace, gwName] = (e.CTF_GATEWAY ?? '/').split('/') as [string, string];
  const [fGroup, fKind, fName] = (e.CTF_GATEWAY_AUTH_FILTER ?? '//').split('/') as [string, string, string];
  return Object.freeze({
    kubeconfig: e.KUBECONFIG,
    port: e.PORT,
    host: e.HOST,
    namespace: e.CTF_NAMESPACE,
    engineNamespace: e.CTF_ENGINE_NAMESPACE ?? e.CTF_NAMESPACE,
    tokenSecret: e.CTF_TOKEN_SECRET,
    oidc:
      e.CTF_JWKS_URL && e.CTF_TOKEN_ISSUER && e.CTF_TOKEN_AUDIENCE
        ? {
            jwksUrl: e.CTF_JWKS_URL,
            issuer: e.CTF_TOKEN_ISSUER,
            audience: e.CTF_TOKEN_AUDIENCE,
            claims: { user: e.CTF_TOKEN_USER_CLAIM, team: e.CTF_TOKEN_TEAM_CLAIM, admin: e.CTF_TOKEN_ADMIN_CLAIM },
            adminValue: e.CTF_TOKEN_ADMIN_VALUE,
            cacheSeconds: e.CTF_JWKS_CACHE_SECONDS,
            cooldownSeconds: e.CTF_JWKS_COOLDOWN_SECONDS,
          }
        : undefined,
    flagKey: flag.startsWith('literal:') ? { literal: flag.slice('literal:'.length) } : { secretName: flag, key: e.CTF_FLAG_SECRET_KEY },
    externalDomain: e.CTF_EXTERNAL_DOMAIN,
    clusterDomain: e.CTF_CLUSTER_DOMAIN,
    gateway: e.CTF_GATEWAY
      ? {
          namespace: gwNamespace,
          name: gwName,
          httpListener: listener(e.CTF_GATEWAY_HTTP_LISTENER),
          tlsListener: listener(e.CTF_GATEWAY_TLS_LISTENER),
          authFilter: e.CTF_GATEWAY_AUTH_FILTER ? { group: fGroup, kind: fKind, name: fName } : undefined,
        }
      : undefined,
    publicAccess: {
      httpScheme: e.CTF_PUBLIC_HTTP_SCHEME,
      httpPort: e.CTF_PUBLIC_HTTP_PORT ?? (e.CTF_PUBLIC_HTTP_SCHEME === 'https' ? 443 : 80),
      tlsPort: e.CTF_PUBLIC_TLS_PORT,
    },
    entryPoint: {
      namespaceSelector: parseSelector(e.CTF_ENTRY_NAMESPACE_SELECTOR),
      podSelector: parseSelector(e.CTF_ENTRY_POD_SELECTOR),
    },
    extraForbiddenCidrs: e.CTF_EXTRA_FORBIDDEN_CIDRS ? e.CTF_EXTRA_FORBIDDEN_CIDRS.split(',').map((s) => s.trim()) : [],
    maxSessionsPerUser: e.CTF_MAX_SESSIONS_PER_USER,
    instanceOwner: e.CTF_INSTANCE_OWNER,
    queue: { maxInstances: e.CTF_MAX_INSTANCES === 0 ? undefined : e.CTF_MAX_INSTANCES, timeoutMs: parseDuration(e.CTF_QUEUE_TIMEOUT) ?? 600_000 },
    reconcileConcurrency: e.CTF_RECONCILE_CONCURRENCY,
    resyncMs: e.CTF_RESYNC_SECONDS * 1000,
    auditMs: e.CTF_CACHE_AUDIT_SECONDS * 1000,
    watch: {
      timeoutSeconds: e.CTF_WATCH_TIMEOUT_SECONDS,
      stallMs: e.CTF_WATCH_STALL_SECONDS === undefined ? undefined : e.CTF_WATCH_STALL_SECONDS * 1000,
      relistEveryMs: e.CTF_RELIST_SECONDS * 1000,
    },
    leaderElection: e.CTF_LEADER_ELECTION,
    leaseName: e.CTF_LEASE_NAME,
    leaseMs: e.CTF_LEASE_SECONDS * 1000,
    identity: e.CTF_IDENTITY,
    runController: e.CTF_CONTROLLER,
    runApi: e.CTF_API,
    corsOrigins: e.CTF_CORS_ORIGINS ? e.CTF_CORS_ORIGINS.split(',').map((s) => s.trim()) : [],
    webhook: e.CTF_WEBHOOK_URL && e.CTF_WEBHOOK_SECRET ? { url: e.CTF_WEBHOOK_URL, secret: e.CTF_WEBHOOK_SECRET, maxBackoffMs: e.CTF_WEBHOOK_MAX_BACKOFF_SECONDS * 1000, allowPrivate: e.CTF_WEBHOOK_ALLOW_PRIVATE } : undefined,
    page: { dir: e.CTF_WEB_DIR, scoreboardUrl: e.CTF_SCOREBOARD_URL },
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
  });
}
