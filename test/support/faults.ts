import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import {
  apiserverReady,
  freePort,
  pauseComponent,
  readState,
  resumeComponent,
  startComponent,
  stopComponent,
  type ClusterState,
  type Component,
} from '../../scripts/lib/control-plane.js';

/**
 * Fault injection on the local control plane the test run started: stop, start and freeze its
 * components by the pids recorded in state.json next to the kubeconfig. Only processes started
 * by the suite (the control plane, engine child processes) are ever signalled.
 */

export const EXISTING_CLUSTER_MESSAGE =
  'fault-injection tests stop and freeze control-plane processes, so they need the local control plane that the test run starts itself; ' +
  'they cannot run with TEST_USE_EXISTING_CLUSTER=1 (run them without it, e.g. `npx vitest run --project reliability`)';

/** The state of the control plane the run started; throws with a clear message otherwise. */
export async function localControlPlane(kubeconfig: string): Promise<ClusterState> {
  if (process.env.TEST_USE_EXISTING_CLUSTER === '1') throw new Error(EXISTING_CLUSTER_MESSAGE);
  const state = await readState(dirname(kubeconfig));
  if (!state) throw new Error(`${EXISTING_CLUSTER_MESSAGE}; no state.json next to ${kubeconfig}`);
  for (const [name, pid] of Object.entries(state.pids)) await assertOwnProcess(state, name as Component, pid);
  return state;
}

/** Refuses to signal a pid that is not the recorded binary (a recycled pid, another process). */
async function assertOwnProcess(state: ClusterState, name: Component, pid: number): Promise<void> {
  const bin = state.argv?.[name]?.[0];
  if (!bin) throw new Error(`${EXISTING_CLUSTER_MESSAGE}; state.json records no command line for ${name}`);
  let cmdline: string;
  try {
    cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')[0] ?? '';
  } catch {
    throw new Error(`${name} (pid ${pid}) is not running`);
  }
  if (cmdline !== bin) throw new Error(`pid ${pid} is ${cmdline}, not the ${name} this run started (${bin})`);
}

export async function waitApiserverReady(state: ClusterState, timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await apiserverReady(state)) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the apiserver did not become ready within ${timeoutMs / 1000}s (logs in ${state.dir}/logs)`);
}

export interface Outage {
  /** From the stop signal until the process was gone. */
  stopMs: number;
  /** From the restart until the apiserver answered /readyz. */
  readyMs: number;
  oldPid: number;
  newPid: number;
}

/**
 * Kills a component with SIGKILL (a crash: no graceful shutdown, which for the apiserver takes
 * longer than the outage itself), keeps it down for `downMs`, starts it with the same command
 * line and waits for the apiserver's /readyz.
 */
export async function outage(state: ClusterState, name: Component, downMs: number, whileDown: () => Promise<void> = async () => {}): Promise<Outage> {
  const oldPid = state.pids[name] ?? 0;
  await assertOwnProcess(state, name, oldPid);
  const t0 = Date.now();
  await stopComponent(state, name, { signal: 'SIGKILL' });
  const stopMs = Date.now() - t0;
  await Promise.all([whileDown(), new Promise((r) => setTimeout(r, downMs))]);
  const newPid = await startComponent(state, name);
  const readyMs = await waitApiserverReady(state, 90_000);
  return { stopMs, readyMs, oldPid, newPid };
}

/** Freezes a component with SIGSTOP for `ms`, then thaws it, whatever happens meanwhile. */
export async function freeze(state: ClusterState, name: Component, ms: number): Promise<void> {
  await assertOwnProcess(state, name, state.pids[name] ?? 0);
  pauseComponent(state, name);
  try {
    await new Promise((r) => setTimeout(r, ms));
  } finally {
    resumeComponent(state, name);
  }
}

export { freePort };

export interface WatchEvent {
  type: string;
  object: { metadata?: { name?: string; resourceVersion?: string }; status?: { phase?: string } };
}

export interface ApiProxy {
  /** A kubeconfig that reaches the apiserver through the proxy. */
  kubeconfig: string;
  close(): Promise<void>;
}

/**
 * A plain-HTTP proxy on loopback in front of the apiserver of `kubeconfig`, authenticating
 * upstream with that kubeconfig's credentials, that holds each request for `delayMs(method, path)`
 * milliseconds first: a slow apiserver for chosen requests only (watches and lists alike).
 * With `watchLagMs`, every chunk of a watch stream is passed on that much later (in order): a
 * cache that lags behind the apiserver, as under load.
 */
export async function apiProxy(
  kubeconfig: string,
  delayMs: (method: string, path: string) => number,
  opts: { watchLagMs?: number; dropWatchEvent?: (path: string, event: WatchEvent) => boolean } = {},
): Promise<ApiProxy> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const upstream = new URL(kc.getCurrentCluster()?.server ?? '');
  const upstreamOptions: { headers?: Record<string, string> } = {};
  await kc.applyToHTTPSOptions(upstreamOptions);
  const server = createHttpServer((req, res) => {
    const wait = delayMs(req.method ?? 'GET', req.url ?? '/');
    setTimeout(() => {
      const up = httpsRequest(
        { ...upstreamOptions, hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...upstreamOptions.headers, ...req.headers, host: upstream.host } },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          const lag = opts.watchLagMs ?? 0;
          const drop = opts.dropWatchEvent;
          const url = req.url ?? '/';
          if ((lag <= 0 && !drop) || !url.includes('watch=true')) {
            upRes.pipe(res);
            return;
          }
          const later = (f: () => void) => (lag > 0 ? setTimeout(f, lag) : f());
          // Watch events are JSON lines: the ones `drop` picks are never delivered, as if the
          // apiserver had lost them. Each chunk leaves `lag` ms after it arrived; timers of
          // equal delay fire in order.
          let partial = '';
          upRes.on('data', (chunk: Buffer) => {
            if (!drop) {
              later(() => res.write(chunk));
              return;
            }
            const lines = (partial + chunk.toString('utf8')).split('\n');
            partial = lines.pop() ?? '';
            const kept = lines.filter((l) => l.trim() === '' || !drop(url, JSON.parse(l) as WatchEvent));
            if (kept.length > 0) later(() => res.write(kept.map((l) => `${l}\n`).join('')));
          });
          upRes.on('end', () => later(() => res.end(partial)));
        },
      );
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    }, wait);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const dir = await mkdtemp(join(tmpdir(), 'challenge-engine-proxy-'));
  const path = join(dir, 'kubeconfig');
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'proxy', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'proxy', user: {} }],
      contexts: [{ name: 'proxy', context: { cluster: 'proxy', user: 'proxy' } }],
      'current-context': 'proxy',
    }),
    { mode: 0o600 },
  );
  return {
    kubeconfig: path,
    async close() {
      server.closeAllConnections();
      server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface HttpResult {
  status: number;
  headers: Headers;
  body: unknown;
}

/** One JSON request to an engine over a real socket; rejects when the engine is unreachable. */
export async function httpJson(base: string, method: string, path: string, token: string | undefined, body?: unknown, timeoutMs = 10_000): Promise<HttpResult> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export { type ClusterState, type Component };
