import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { Informer } from '../../src/kube/informer.js';
import { pagedList } from '../../src/kube/raw.js';
import { KubeConfig } from '@kubernetes/client-node';
import { apiProxy } from '../support/faults.js';
import { useCluster, waitUntil } from '../support/kube.js';

const cluster = useCluster(import.meta.filename);

function configMapInformer(stallMs?: number, transform?: (cm: V1ConfigMap) => V1ConfigMap) {
  const path = `/api/v1/namespaces/${cluster.namespace}/configmaps`;
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) });
  const inf = new Informer<V1ConfigMap>({ name: 'cm', kc: cluster.kube.kc, path, list: pagedList(cluster.kube.kc, path, undefined, 2), log, stallMs, transform });
  return { inf, warnings };
}

describe('Informer', () => {
  it('caches and hands out listed and watched objects as its transform trims them', async () => {
    await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: 'trim-listed' }, data: { big: 'x'.repeat(1000), keep: '1' } } });
    const { inf } = configMapInformer(undefined, (cm) => {
      delete cm.data?.big;
      return cm;
    });
    const added: V1ConfigMap[] = [];
    inf.on('add', (o) => added.push(o));
    await inf.start();
    await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: 'trim-watched' }, data: { big: 'y'.repeat(1000), keep: '2' } } });
    await waitUntil('the watched object', () => inf.get(`${cluster.namespace}/trim-watched`));
    for (const name of ['trim-listed', 'trim-watched']) {
      expect(inf.get(`${cluster.namespace}/${name}`)?.data).toEqual({ keep: name === 'trim-listed' ? '1' : '2' });
      expect(added.find((o) => o.metadata?.name === name)?.data).not.toHaveProperty('big');
    }
    await inf.stop();
  });

  it('lists across pages, then follows adds, updates and deletes from the watch', async () => {
    for (const n of ['a', 'b', 'c']) await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: `pre-${n}` } } });
    const { inf } = configMapInformer();
    const events: string[] = [];
    inf.on('add', (o) => events.push(`add ${o.metadata?.name}`));
    inf.on('update', (o) => events.push(`update ${o.metadata?.name}`));
    inf.on('delete', (o) => events.push(`delete ${o.metadata?.name}`));
    await inf.start();
    expect(inf.list().map((o) => o.metadata?.name)).toEqual(expect.arrayContaining(['pre-a', 'pre-b', 'pre-c']));
    await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: 'live' }, data: { v: '1' } } });
    await cluster.kube.core.patchNamespacedConfigMap({ name: 'live', namespace: cluster.namespace, body: [{ op: 'replace', path: '/data/v', value: '2' }] });
    await cluster.kube.core.deleteNamespacedConfigMap({ name: 'pre-a', namespace: cluster.namespace });
    await waitUntil('watch events', () => events.includes('delete pre-a') && events.includes('update live'));
    expect(inf.get(`${cluster.namespace}/live`)?.data?.v).toBe('2');
    expect(inf.get(`${cluster.namespace}/pre-a`)).toBeUndefined();
    // The apiserver sends managedFields with every object; the cache keeps none, listed or watched.
    const live = await cluster.kube.core.readNamespacedConfigMap({ name: 'live', namespace: cluster.namespace });
    expect(live.metadata?.managedFields?.length).toBeGreaterThan(0);
    for (const o of inf.list()) expect(o.metadata).not.toHaveProperty('managedFields');
    await inf.stop();
  });

  it('detects a silent watch, restarts it and misses nothing', async () => {
    const { inf, warnings } = configMapInformer(800);
    await inf.start();
    await waitUntil('a stall to be detected', () => warnings.some((w) => w.includes('Watch went silent')), 10_000);
    await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: 'after-stall' } } });
    await waitUntil('the object created after the stall', () => inf.get(`${cluster.namespace}/after-stall`));
    await inf.stop();
  });

  it('keeps unchanged objects as they are on a relist and transforms only what changed', async () => {
    for (const n of ['same', 'changed']) await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: `relist-${n}` }, data: { v: '1' } } });
    const transformed: string[] = [];
    const { inf } = configMapInformer(undefined, (cm) => {
      transformed.push(cm.metadata?.name ?? '');
      return cm;
    });
    await inf.start();
    const key = (n: string) => `${cluster.namespace}/relist-${n}`;
    const before = inf.get(key('same'));
    expect(before).toBeDefined();
    await inf.stop();
    await cluster.kube.core.patchNamespacedConfigMap({ name: 'relist-changed', namespace: cluster.namespace, body: [{ op: 'replace', path: '/data/v', value: '2' }] });
    const updates: string[] = [];
    inf.on('update', (o) => updates.push(o.metadata?.name ?? ''));
    transformed.length = 0;
    inf.restartWatch(true);
    await inf.start();
    await waitUntil('the relisted change', () => inf.get(key('changed'))?.data?.v === '2');
    expect(inf.get(key('same'))).toBe(before);
    expect(transformed).toContain('relist-changed');
    expect(transformed).not.toContain('relist-same');
    expect(updates).toContain('relist-changed');
    expect(updates).not.toContain('relist-same');
    await inf.stop();
  });

  it('repairs by relisting, unless a relist began after the evidence of a loss was gathered', async () => {
    const path = `/api/v1/namespaces/${cluster.namespace}/configmaps`;
    let relists = 0;
    let stale = 0;
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) });
    const inf = new Informer<V1ConfigMap>({ name: 'cm', kc: cluster.kube.kc, path, list: pagedList(cluster.kube.kc, path), log, onRelist: () => relists++, onStale: (n) => (stale += n) });
    await inf.start();
    expect(relists).toBe(1);
    // Evidence older than the relist that filled the cache: reported, not relisted again.
    inf.repair([`${cluster.namespace}/old-evidence`], Date.now() - 60_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(relists).toBe(1);
    // Evidence newer than any relist: relisted.
    inf.repair([`${cluster.namespace}/new-evidence`], Date.now());
    await waitUntil('the repair relist', () => relists === 2, 5_000, 20);
    expect(stale).toBe(2);
    expect(warnings.filter((w) => w.includes('Cache missed an update')).length).toBe(2);
    await inf.stop();
  });

  it('relists when the watch is forced to restart without a resource version', async () => {
    const { inf } = configMapInformer();
    await inf.start();
    const deletes: string[] = [];
    inf.on('delete', (o) => deletes.push(o.metadata?.name ?? ''));
    await inf.stop();
    // Changes while stopped are found by the relist at the next start.
    await cluster.kube.core.deleteNamespacedConfigMap({ name: 'pre-b', namespace: cluster.namespace });
    inf.restartWatch(true);
    await inf.start();
    await waitUntil('the delete made while stopped', () => deletes.includes('pre-b'));
    await inf.stop();
  });

  it('repairs a watch event the apiserver lost with a relist at the first watch end after relistEveryMs, and not without', async () => {
    await cluster.kube.core.createNamespacedConfigMap({ namespace: cluster.namespace, body: { metadata: { name: 'lossy' }, data: { v: '1' } } });
    // Every watch event about 'lossy' with v=2 is swallowed on the way, as if never sent.
    const proxy = await apiProxy(cluster.kubeconfig, () => 0, {
      dropWatchEvent: (_path, ev) => ev.object.metadata?.name === 'lossy' && (ev.object as { data?: { v?: string } }).data?.v === '2',
    });
    const kc = new KubeConfig();
    kc.loadFromFile(proxy.kubeconfig);
    const path = `/api/v1/namespaces/${cluster.namespace}/configmaps`;
    const log = pino({ level: 'silent' });
    const make = (relistEveryMs?: number) => new Informer<V1ConfigMap>({ name: 'cm', kc, path, list: pagedList(kc, path), log, watchTimeoutSeconds: 1, relistEveryMs });
    const resuming = make();
    const relisting = make(1_500);
    try {
      await Promise.all([resuming.start(), relisting.start()]);
      await cluster.kube.core.patchNamespacedConfigMap({ name: 'lossy', namespace: cluster.namespace, body: [{ op: 'replace', path: '/data/v', value: '2' }] });
      const key = `${cluster.namespace}/lossy`;
      await waitUntil('the relisting cache to repair itself', () => relisting.get(key)?.data?.v === '2', 10_000, 50);
      // Three more one-second watches, each resumed from the last version seen: still stale.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(resuming.get(key)?.data?.v).toBe('1');
    } finally {
      await Promise.all([resuming.stop(), relisting.stop()]);
      await proxy.close();
    }
  });
  it('assumes its own write ahead of the watch, skips older events for it, and never brings back an older or deleted state', async () => {
    // Watch events reach this informer a second late, as under a burst of writes.
    const proxy = await apiProxy(cluster.kubeconfig, () => 0, { watchLagMs: 1_000 });
    const kc = new KubeConfig();
    kc.loadFromFile(proxy.kubeconfig);
    const path = `/api/v1/namespaces/${cluster.namespace}/configmaps`;
    const inf = new Informer<V1ConfigMap>({ name: 'cm', kc, path, list: pagedList(kc, path), log: pino({ level: 'silent' }) });
    try {
      await inf.start();
      const ns = cluster.namespace;
      const key = `${ns}/assumed`;
      const seen: string[] = [];
      inf.on('add', (o) => void (o.metadata?.name === 'assumed' && seen.push(o.data?.v ?? '')));
      inf.on('update', (o) => void (o.metadata?.name === 'assumed' && seen.push(o.data?.v ?? '')));
      const first = await cluster.kube.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'assumed' }, data: { v: '1' } } });
      expect(inf.assume(first)).toBe(true);
      expect(inf.get(key)?.data?.v).toBe('1');
      expect(inf.get(key)?.metadata).not.toHaveProperty('managedFields');
      const patch = (v: string) => cluster.kube.core.patchNamespacedConfigMap({ name: 'assumed', namespace: ns, body: [{ op: 'replace', path: '/data/v', value: v }] });
      await patch('2');
      const third = await patch('3');
      expect(inf.assume(third)).toBe(true);
      expect(inf.get(key)?.data?.v).toBe('3');
      await waitUntil('the watch to deliver the last write', () => seen.length >= 3);
      await new Promise((r) => setTimeout(r, 1_500));
      // The watch's ADDED (v 1) and MODIFIED (v 2) came after 3 was assumed: skipped, not shown.
      expect(seen).toEqual(['1', '3', '3']);
      // An answer the watch has already passed is refused: the cache keeps what it has.
      expect(inf.assume(first)).toBe(false);
      expect(inf.get(key)?.data?.v).toBe('3');
      await cluster.kube.core.deleteNamespacedConfigMap({ name: 'assumed', namespace: ns });
      await waitUntil('the delete', () => inf.get(key) === undefined);
      // A late answer to a write made before the delete does not bring the object back.
      expect(inf.assume(third)).toBe(false);
      expect(inf.get(key)).toBeUndefined();
    } finally {
      await inf.stop();
      await proxy.close();
    }
  });
});
