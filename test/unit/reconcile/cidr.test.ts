import { describe, it, expect } from 'vitest';
import { cidrContains, cidrStrictlyContains, normalizeCidr, parseCidr, type Cidr } from '../../../src/reconcile/cidr.js';

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Error(`bad test CIDR ${text}`);
  return c;
}

describe('normalizeCidr', () => {
  it.each([
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['8.8.8.8/32', '8.8.8.8/32'],
    ['192.168.1.255/23', '192.168.0.0/23'],
    ['2001:DB8::1/32', '2001:db8::/32'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001/128', '2001:db8::1/128'],
    ['fd00:ec2::254/128', 'fd00:ec2::254/128'],
    ['::/0', '::/0'],
    ['::1/128', '::1/128'],
    ['fe80::1/10', 'fe80::/10'],
    ['2001:db8:0:0:1:0:0:1/128', '2001:db8::1:0:0:1/128'],
    ['1:0:0:2:0:0:0:3/128', '1:0:0:2::3/128'],
    ['1:2:3:4:5:6:7:8/128', '1:2:3:4:5:6:7:8/128'],
    ['1:0:2:3:4:5:6:7/128', '1:0:2:3:4:5:6:7/128'],
    ['::ffff:10.0.0.1/128', '::ffff:a00:1/128'],
  ])('%s -> %s', (input, expected) => {
    expect(normalizeCidr(input)).toBe(expected);
  });

  it.each(['10.0.0.0', '10.0.0.0/33', '300.0.0.0/8', '10.0.0.0/08', '::/129', 'fe80::1%eth0/64', 'abc/8', '10.0.0.0/-1', ''])(
    'rejects %s',
    (input) => {
      expect(normalizeCidr(input)).toBeUndefined();
    },
  );
});

describe('containment', () => {
  it.each([
    ['0.0.0.0/0', '10.0.0.0/8', true, true],
    ['10.0.0.0/8', '10.1.0.0/16', true, true],
    ['10.0.0.0/8', '10.0.0.0/8', true, false],
    ['10.0.0.0/8', '11.0.0.0/16', false, false],
    ['10.1.0.0/16', '10.0.0.0/8', false, false],
    ['169.254.0.0/16', '169.254.169.254/32', true, true],
    ['8.8.8.8/32', '8.8.8.8/32', true, false],
    ['172.16.0.0/12', '172.31.255.0/24', true, true],
    ['172.16.0.0/12', '172.32.0.0/24', false, false],
    ['::/0', 'fc00::/7', true, true],
    ['fc00::/7', 'fd00:ec2::254/128', true, true],
    ['2000::/3', 'fc00::/7', false, false],
    ['fe80::/10', 'febf:ffff::/32', true, true],
    ['fe80::/10', 'fec0::/16', false, false],
    // Families never contain each other, even at /0.
    ['0.0.0.0/0', '::/0', false, false],
    ['::/0', '10.0.0.0/8', false, false],
  ])('%s contains %s: %s (strictly: %s)', (outer, inner, contains, strictly) => {
    expect(cidrContains(cidr(outer), cidr(inner))).toBe(contains);
    expect(cidrStrictlyContains(cidr(outer), cidr(inner))).toBe(strictly);
  });
});
