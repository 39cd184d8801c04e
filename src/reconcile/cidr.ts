import { isIPv4, isIPv6 } from 'node:net';

/**
 * CIDR arithmetic for NetworkPolicy ipBlocks. The apiserver requires every `except` entry to be
 * a strict subset of its `cidr` in the same family, so containment must be exact for IPv4 and
 * IPv6 alike; addresses are held as bigints of 32 or 128 bits.
 */
export interface Cidr {
  family: 4 | 6;
  /** The network address: host bits are cleared. */
  address: bigint;
  prefix: number;
}

/** Parses "a.b.c.d/n" or an IPv6 prefix; host bits are cleared. Undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const host = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits)) return undefined;
  const prefix = Number(bits);
  if (isIPv4(host) && prefix <= 32) return mask({ family: 4, address: parseIPv4(host), prefix });
  if (isIPv6(host) && !host.includes('%') && prefix <= 128) {
    const address = parseIPv6(host);
    return address === undefined ? undefined : mask({ family: 6, address, prefix });
  }
  return undefined;
}

/** The canonical text of a prefix: network address, IPv6 compressed as RFC 5952 prescribes. */
export function formatCidr(cidr: Cidr): string {
  return `${cidr.family === 4 ? formatIPv4(cidr.address) : formatIPv6(cidr.address)}/${cidr.prefix}`;
}

/** The canonical form of a CIDR string, or undefined when it is not one. */
export function normalizeCidr(text: string): string | undefined {
  const c = parseCidr(text);
  return c && formatCidr(c);
}

/** True when every address of `inner` is in `outer` (equal prefixes included). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  return mask({ ...inner, prefix: outer.prefix }).address === outer.address;
}

/** True when `inner` is inside `outer` and smaller: what an ipBlock `except` entry must be. */
export function cidrStrictlyContains(outer: Cidr, inner: Cidr): boolean {
  return outer.prefix < inner.prefix && cidrContains(outer, inner);
}

function width(family: 4 | 6): bigint {
  return family === 4 ? 32n : 128n;
}

/** Clears the host bits of `c.address`. */
function mask(c: Cidr): Cidr {
  const w = width(c.family);
  const hostBits = w - BigInt(c.prefix);
  const all = (1n << w) - 1n;
  const netmask = all ^ ((1n << hostBits) - 1n);
  return { ...c, address: c.address & netmask };
}

function parseIPv4(text: string): bigint {
  return text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function formatIPv4(address: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((address >> shift) & 0xffn)).join('.');
}

/** Parses a valid IPv6 address, including a trailing dotted IPv4 part. */
function parseIPv6(text: string): bigint | undefined {
  let groups = text;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    groups = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = groups.split('::');
  const headParts = head === '' ? [] : head.split(':');
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = 8 - headParts.length - tailParts.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  const parts = [...headParts, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...tailParts];
  return parts.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as "::". */
function formatIPv6(address: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((address >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length && j - i >= 2) best = { start: i, length: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(':');
  const left = hex.slice(0, best.start).join(':');
  const right = hex.slice(best.start + best.length).join(':');
  return `${left}::${right}`;
}
