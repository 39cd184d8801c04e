import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { LoadRequest } from './load.js';

/**
 * HTTP load at a fixed offered rate over a fixed number of keep-alive connections (open loop,
 * as wrk2 does it), where autocannon is closed loop (each connection sends again as soon as it
 * is answered) and its rate option lets every connection send flat out until the second's quota
 * is spent. Request i is due at start + i / rate; its latency is timed from when it was due, not
 * from when a free connection took it, so a server that falls behind shows the wait it caused
 * (no coordinated omission).
 */

export interface PacedOptions {
  url: string;
  connections: number;
  ratePerSecond: number;
  durationSeconds: number;
  /** Sent at the same rate before the measured window and not counted: opens the connections. */
  warmupSeconds?: number;
  next: () => LoadRequest;
  onResponse?: (r: { status: number; body: string; tag: unknown }) => void;
}

export interface PacedResult {
  /** Requests due in the measured window (offered). */
  offered: number;
  completed: number;
  errors: number;
  /** From the first measured due time to the last answer. */
  elapsedMs: number;
  /** Per completed request, from its due time to its complete response. */
  latencies: number[];
  /** The most requests that were due but waiting for a connection at once. */
  maxBacklog: number;
}

export async function runPaced(o: PacedOptions): Promise<PacedResult> {
  const target = new URL(o.url);
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections, maxFreeSockets: o.connections });
  const latencies: number[] = [];
  const warmup = Math.round(o.ratePerSecond * (o.warmupSeconds ?? 0));
  const total = warmup + Math.round(o.ratePerSecond * o.durationSeconds);
  const interval = 1000 / o.ratePerSecond;
  let issued = 0;
  let completed = 0;
  let errors = 0;
  let inFlight = 0;
  let maxBacklog = 0;
  let lastAnswer = 0;
  const start = performance.now();

  const send = (i: number) => {
    const due = start + i * interval;
    const counted = i >= warmup;
    const r = o.next();
    inFlight++;
    if (counted) maxBacklog = Math.max(maxBacklog, inFlight - o.connections);
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: r.method,
        path: r.path,
        headers: { ...(r.body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(r.body) } : {}), ...r.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          inFlight--;
          if (counted) {
            completed++;
            lastAnswer = performance.now();
            latencies.push(lastAnswer - due);
            o.onResponse?.({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), tag: r.tag });
          }
          settle();
        });
      },
    );
    req.on('error', () => {
      inFlight--;
      if (counted) errors++;
      settle();
    });
    req.end(r.body);
  };

  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const settle = () => {
    if (issued >= total && inFlight === 0) finish();
  };
  // Every millisecond (or as soon as the loop gets to it), send whatever has fallen due since.
  const timer = setInterval(() => {
    const now = performance.now();
    const due = Math.min(total, Math.floor((now - start) / interval) + 1);
    while (issued < due) send(issued++);
    if (issued >= total) {
      clearInterval(timer);
      settle();
    }
  }, 1);
  // A server that stops answering ends the run: what is still in flight counts as errors.
  const deadline = setTimeout(() => {
    clearInterval(timer);
    errors += inFlight;
    finish();
  }, (o.durationSeconds + 30) * 1000);
  await done;
  clearTimeout(deadline);
  agent.destroy();
  const measuredFrom = start + warmup * interval;
  return { offered: total - warmup, completed, errors, elapsedMs: (lastAnswer || performance.now()) - measuredFrom, latencies, maxBacklog };
}
