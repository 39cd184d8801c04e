import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { cidrContains, parseCidr, type Cidr } from '../reconcile/cidr.js';

/**
 * The webhook receiver must be a public address: the engine runs inside the cluster, and a URL
 * an organiser typed (or copied) that points at loopback, link-local (cloud metadata), private or
 * cluster-internal addresses would turn it into a request-forgery tool. CTF_WEBHOOK_ALLOW_PRIVATE
 * allows them explicitly (a receiver in the same cluster or network).
 */

const FORBIDDEN = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4',
  '::/128', '::1/128', '::ffff:0:0/96', 'fc00::/7', 'fe80::/10', 'ff00::/8',
].map((c) => parseCidr(c) as Cidr);

const INTERNAL_NAMES = /(^|\.)(localhost|local|internal|svc|cluster\.local)\.?$/i;

export function forbiddenAddress(address: string): boolean {
  const host = parseCidr(`${address}/${isIP(address) === 6 ? 128 : 32}`);
  return !host || FORBIDDEN.some((c) => cidrContains(c, host));
}

/** Why the URL may not receive webhooks, or undefined when it may. */
export async function webhookTargetProblem(url: string, resolve: (host: string) => Promise<string[]> = resolveAll): Promise<string | undefined> {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (INTERNAL_NAMES.test(host)) return `${host} is a cluster-internal or local name`;
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : await resolve(host);
  } catch {
    return `${host} does not resolve`;
  }
  const bad = addresses.find(forbiddenAddress);
  return bad ? `${host} resolves to ${bad}, a loopback, link-local, private or cluster-internal address` : undefined;
}

async function resolveAll(host: string): Promise<string[]> {
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}
