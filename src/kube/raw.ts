import { request, type RequestOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { sharedAgent } from './client.js';
import type { ListPage } from './informer.js';

/**
 * Plain-JSON GET against the apiserver. Lists go through here rather than the typed clients so
 * the informer store holds exactly what watches deliver (string timestamps, every field), and so
 * large lists skip the typed deserialiser.
 */
export async function getJson<T>(kc: KubeConfig, path: string, timeoutMs = 60_000): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  const opts: RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  opts.agent = await sharedAgent(kc);
  const send = url.protocol === 'http:' ? httpRequest : request;
  return new Promise<T>((resolve, reject) => {
    const req = send(url, { ...opts, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          let message = body.slice(0, 300);
          try {
            message = (JSON.parse(body) as { message?: string }).message ?? message;
          } catch {
            // keep the raw text
          }
          reject(Object.assign(new Error(`GET ${url.pathname}: ${res.statusCode ?? 0} ${message}`), { statusCode: res.statusCode }));
          return;
        }
        try {
          resolve(JSON.parse(body) as T);
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url.pathname} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A list function for Informer: pages of `limit` objects from a collection path. */
export function pagedList<T>(kc: KubeConfig, path: string, labelSelector?: string, limit = 500) {
  return (continueToken: string | undefined): Promise<ListPage<T>> => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (labelSelector) q.set('labelSelector', labelSelector);
    if (continueToken) q.set('continue', continueToken);
    return getJson<ListPage<T>>(kc, `${path}?${q.toString()}`);
  };
}
