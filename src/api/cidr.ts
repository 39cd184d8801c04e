import { isIPv4, isIPv6 } from 'node:net';

/**
 * Mirrors the apiserver's CEL `isCIDR()` (Go's netip.ParsePrefix): an IPv4 or IPv6 address, a
 * decimal prefix length without leading zeros that fits the family, no zone, and no IPv4-mapped
 * IPv6 address. Host bits may be set, as in CEL. The CRD checks the same strings with
 * `isCIDR(self)`, so both sides reject "300.0.0.0/8" and "10.0.0.0/33" that the pattern lets through.
 */
export function isCidr(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash < 0) return false;
  const address = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits)) return false;
  if (isIPv4(address)) return Number(bits) <= 32;
  if (isIPv6(address) && !address.includes('.') && !address.includes('%')) {
    return Number(bits) <= 128 && !isIPv4MappedIPv6(address);
  }
  return false;
}

/** True for ::ffff:a.b.c.d written in hex groups; `address` must already be a valid IPv6 address. */
function isIPv4MappedIPv6(address: string): boolean {
  const [head = '', tail] = address.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups].map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}
