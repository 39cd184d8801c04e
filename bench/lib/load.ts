import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';

/**
 * HTTP load with autocannon, one request built per send by `next()`, so every request can carry
 * its own user token, target and body. Latency is timed per request here (build to complete
 * response; a request is written as soon as it is built) so each sample can be tied to what it
 * asked for.
 */

export interface LoadRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Anything the caller wants back with the response; requests without a tag are filler. */
  tag?: unknown;
}

export interface LoadResponse {
  status: number;
  body: string;
  latencyMs: number;
  /** Wall-clock time the request was sent (ms since the epoch). */
  sentAt: number;
  tag: unknown;
}

export interface LoadOptions {
  url: string;
  connections: number;
  next: () => LoadRequest;
  onResponse?: (r: LoadResponse) => void;
  /** Stop once this many tagged responses have arrived. */
  stopAfter?: number;
  /** Upper bound on the run, in seconds. */
  durationSeconds: number;
  /** Keep response bodies for onResponse (costs load-generator CPU). */
  bodies?: boolean;
}

export interface LoadResult {
  elapsedMs: number;
  tagged: number;
  statusCounts: Record<string, number>;
  latencies: number[];
  errors: number;
  timeouts: number;
}

interface Ctx {
  t?: number;
  wall?: number;
  tag?: unknown;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const statusCounts: Record<string, number> = {};
  let tagged = 0;
  let instance: autocannon.Instance | undefined;
  let stopped = false;
  let endedAt = 0;
  const started = performance.now();
  const request: autocannon.Request = {
    setupRequest: (req, context) => {
      const r = o.next();
      const c = context as Ctx;
      c.tag = r.tag;
      c.t = performance.now();
      c.wall = Date.now();
      return {
        ...req,
        method: r.method,
        path: r.path,
        headers: { ...(r.body !== undefined ? { 'content-type': 'application/json' } : {}), ...r.headers },
        body: r.body ?? '',
      };
    },
    onResponse: (status, body, context) => {
      const c = context as Ctx;
      if (c.tag === undefined || stopped) return;
      const latencyMs = performance.now() - (c.t ?? 0);
      latencies.push(latencyMs);
      statusCounts[status] = (statusCounts[status] ?? 0) + 1;
      tagged++;
      o.onResponse?.({ status, body: o.bodies ? body : '', latencyMs, sentAt: c.wall ?? 0, tag: c.tag });
      if (o.stopAfter !== undefined && tagged >= o.stopAfter) {
        stopped = true;
        endedAt = performance.now();
        instance?.stop();
      }
    },
  };
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: o.url,
        connections: o.connections,
        pipelining: 1,
        duration: o.durationSeconds,
        timeout: 30,
        requests: [request],
      },
      (err: unknown, res: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error('autocannon failed')) : resolve(res)),
    );
  });
  if (!endedAt) endedAt = performance.now();
  return { elapsedMs: endedAt - started, tagged, statusCounts, latencies, errors: result.errors, timeouts: result.timeouts };
}
