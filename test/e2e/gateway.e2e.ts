import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { GatewayState } from '../../scripts/lib/gateway.js';

/**
 * The local gateway through Gateway API objects only: a web backend behind an HTTPRoute on the
 * `http` listener, a raw TCP backend behind a TLSRoute on the `tls` listener (TLS terminated by
 * the gateway, SNI picks the route), and a 404 for a host no route claims. Reached from the host
 * at the address the real node's state records (realNode.gateway).
 */
const run = promisify(execFile);
const node = inject('realNode');
const gw = node.gateway as GatewayState;
const namespace = `e2e-gateway-${randomBytes(3).toString('hex')}`;
const suffix = randomBytes(4).toString('hex');
const webHost = `notes-${suffix}.${gw.domain}`;
const tcpHost = `echo-${suffix}.${gw.domain}`;
const timings: Record<string, number> = {};

async function kubectl(args: string[], stdin?: string): Promise<string> {
  const child = run(inject('kubectl'), ['--kubeconfig', inject('kubeconfig'), ...args], { maxBuffer: 16 << 20 });
  if (stdin !== undefined) child.child.stdin?.end(stdin);
  return (await child).stdout;
}

const apply = (objects: object[]) => kubectl(['apply', '--server-side', '--field-manager=e2e', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));

/** A restricted-PSA Pod running one of the local images, and a Service for it. */
function backend(name: string, image: string, port: number, user: number, args: string[] = []): object[] {
  const labels = { app: name };
  return [
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, labels },
      spec: {
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 1,
        securityContext: { runAsNonRoot: true, runAsUser: user, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name,
            image,
            imagePullPolicy: 'Never',
            args,
            ports: [{ containerPort: port }],
            readinessProbe: { tcpSocket: { port }, periodSeconds: 1 },
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          },
        ],
      },
    },
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec: { selector: labels, ports: [{ port, targetPort: port }] } },
  ];
}

const parentRef = (sectionName: string) => ({ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: gw.namespace, name: gw.name, sectionName });

function httpGet(host: string, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: gw.address, port: gw.httpPort, path, headers: { host }, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Opens TLS to the gateway with `servername` (verified against `ca`), sends a line, returns what came back until the echo or the close. */
function tlsExchange(servername: string, ca: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = connect({ host: gw.address, port: gw.tlsPort, servername, ca }, () => s.write(`${line}\n`));
    const timer = setTimeout(() => s.destroy(new Error(`no answer within 3 s (got ${JSON.stringify(got)})`)), 3000);
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (got.split('\n').includes(line)) done();
    });
    s.on('end', done);
    s.on('close', done);
    s.on('error', (err: Error) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

beforeAll(async () => {
  expect(gw, 'the real node state records no gateway').toBeDefined();
  await kubectl(['create', 'namespace', namespace]);
  await apply([
    ...backend('notes', 'docker.io/challenge-engine/web-notes:1.0', 8080, 65532),
    ...backend('echo', 'docker.io/challenge-engine/pwn-echo:1.0', 1337, 1000, ['--port', '1337', '--timeout', '10']),
  ]);
  await kubectl(['-n', namespace, 'wait', '--for=condition=Ready', '--timeout=90s', 'pod/notes', 'pod/echo']);
});

afterAll(async () => {
  process.stderr.write(`[e2e-gateway] timings ${JSON.stringify(timings)}\n`);
  await kubectl(['delete', 'namespace', namespace, '--wait=false']).catch(() => undefined);
});

describe('local gateway (Traefik, Gateway API)', () => {
  it('is Programmed at the address its state records, and its pod carries the entry-point labels', async () => {
    const status = JSON.parse(await kubectl(['-n', gw.namespace, 'get', 'gateway', gw.name, '-o', 'json'])) as {
      status: { addresses?: { value: string }[]; conditions: { type: string; status: string }[] };
    };
    expect(status.status.addresses?.map((a) => a.value)).toEqual([gw.address]);
    expect(status.status.conditions.find((c) => c.type === 'Programmed')?.status).toBe('True');
    const pods = await kubectl(['get', 'pods', '-A', '-l', gw.podSelector, '-o', 'jsonpath={.items[*].metadata.namespace}']);
    expect(pods.trim()).toBe(gw.namespaceSelector.split('=')[1]);
  });

  it('routes an HTTPRoute host to its backend and answers 404 for an unknown host', async () => {
    const t0 = Date.now();
    await apply([
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'notes', namespace },
        spec: { parentRefs: [parentRef(gw.listeners.http)], hostnames: [webHost], rules: [{ backendRefs: [{ name: 'notes', port: 8080 }] }] },
      },
    ]);
    timings.httpRouteKubectlApplyMs = Date.now() - t0;
    const res = await until(`200 from ${webHost}`, async () => {
      const r = await httpGet(webHost);
      return r.status === 200 ? r : undefined;
    });
    timings.httpRouteApplyToFirst200Ms = Date.now() - t0;
    expect(res.body).toContain('<h1>Notes</h1>');
    expect((await httpGet(webHost, '/healthz')).status).toBe(200);
    expect((await httpGet(`nobody-${suffix}.${gw.domain}`)).status).toBe(404);
  });

  it('carries a plain TCP backend through the TLS listener by SNI (TLSRoute)', async () => {
    const ca = await readFile(gw.caCert, 'utf8');
    const t0 = Date.now();
    await apply([
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'TLSRoute',
        metadata: { name: 'echo', namespace },
        spec: { parentRefs: [parentRef(gw.listeners.tls)], hostnames: [tcpHost], rules: [{ backendRefs: [{ name: 'echo', port: 1337 }] }] },
      },
    ]);
    timings.tlsRouteKubectlApplyMs = Date.now() - t0;
    const line = `hello-${suffix}`;
    let attempts = 0;
    const got = await until(`an echo from ${tcpHost}`, async () => {
      attempts++;
      const text = await tlsExchange(tcpHost, ca, line);
      return text.split('\n').includes(line) ? text : undefined;
    });
    timings.tlsRouteApplyToFirstEchoMs = Date.now() - t0;
    timings.tlsAttempts = attempts;
    expect(got).toContain('Echo Chamber');
    // Any name under the domain gets the wildcard certificate (verified above against the
    // recorded CA); one no TLSRoute claims reaches no backend (Traefik answers it as HTTP, 400).
    const other = await tlsExchange(`nobody-${suffix}.${gw.domain}`, ca, line);
    expect(other).not.toContain('Echo Chamber');
    expect(other.split('\n')).not.toContain(line);
  });
});
