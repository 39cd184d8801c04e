import { describe, expect, it } from 'vitest';
import { forbiddenAddress, webhookTargetProblem } from '../../src/webhooks/target.js';

describe('the webhook receiver address', () => {
  it('refuses loopback, link-local, private, shared and multicast ranges of both families', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', 'fe80::1', 'fd00::1', '::ffff:10.0.0.1']) expect(forbiddenAddress(a), a).toBe(true);
    for (const a of ['93.184.216.34', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111']) expect(forbiddenAddress(a), a).toBe(false);
  });

  it('checks every address a name resolves to, and cluster or local names without resolving', async () => {
    const resolver = (map: Record<string, string[]>) => async (h: string) => {
      const a = map[h];
      if (!a) throw new Error('ENOTFOUND');
      return a;
    };
    const r = resolver({ 'scoreboard.example.org': ['93.184.216.34'], 'sneaky.example.org': ['93.184.216.34', '10.0.0.5'] });
    expect(await webhookTargetProblem('https://scoreboard.example.org/solves', r)).toBeUndefined();
    expect(await webhookTargetProblem('https://sneaky.example.org/solves', r)).toMatch(/resolves to 10\.0\.0\.5/);
    expect(await webhookTargetProblem('http://scoreboard.ctf.svc.cluster.local/x', r)).toMatch(/cluster-internal/);
    expect(await webhookTargetProblem('http://localhost:9000/x', r)).toMatch(/local name/);
    expect(await webhookTargetProblem('http://[::1]:9000/x', r)).toMatch(/resolves to ::1/);
    expect(await webhookTargetProblem('https://nowhere.example.org/x', r)).toMatch(/does not resolve/);
  });
});
