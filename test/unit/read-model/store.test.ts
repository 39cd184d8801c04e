import { describe, it, expect } from 'vitest';
import { IndexedStore } from '../../../src/read-model/store.js';
import { memoryCaches } from '../../support/memory.js';
import { session } from '../reconcile/fixtures.js';

type Obj = { metadata: { name: string; resourceVersion?: string }; spec: { user: string; tags?: string[] } };
const obj = (name: string, user: string, tags?: string[], rv = '1'): Obj => ({ metadata: { name, resourceVersion: rv }, spec: { user, tags } });

describe('IndexedStore', () => {
  it('finds objects by index, and moves them when an update changes their index values', () => {
    const store = new IndexedStore<Obj>();
    store.addIndexer('user', (o) => o.spec.user);
    store.set('a', obj('a', 'alice'));
    store.set('b', obj('b', 'alice'));
    store.set('c', obj('c', 'bob'));
    expect(store.byIndex('user', 'alice').map((o) => o.metadata.name).sort()).toEqual(['a', 'b']);
    store.set('b', obj('b', 'bob', undefined, '2'));
    expect(store.byIndex('user', 'alice').map((o) => o.metadata.name)).toEqual(['a']);
    expect(store.byIndex('user', 'bob').map((o) => o.metadata.name).sort()).toEqual(['b', 'c']);
    store.delete('c');
    expect(store.byIndex('user', 'bob').map((o) => o.metadata.name)).toEqual(['b']);
    expect(store.byIndex('user', 'carol')).toEqual([]);
  });

  it('indexes objects under several values, and indexes what was stored before the index was added', () => {
    const store = new IndexedStore<Obj>();
    store.set('a', obj('a', 'alice', ['web', 'easy']));
    store.addIndexer('tag', (o) => o.spec.tags);
    store.set('b', obj('b', 'bob', ['web']));
    expect(store.byIndex('tag', 'web').map((o) => o.metadata.name).sort()).toEqual(['a', 'b']);
    expect(store.byIndex('tag', 'easy').map((o) => o.metadata.name)).toEqual(['a']);
    expect(() => store.byIndex('nope', 'x')).toThrow(/no index named nope/);
    expect(() => store.addIndexer('tag', () => undefined)).toThrow(/already exists/);
  });

  it('replays the stored objects to an add handler subscribed late, then tells it of new ones', () => {
    const store = new IndexedStore<Obj>();
    store.set('a', obj('a', 'alice'));
    store.set('b', obj('b', 'bob'));
    const seen: string[] = [];
    store.on('add', (o) => seen.push(o.metadata.name));
    expect(seen.sort()).toEqual(['a', 'b']);
    store.set('c', obj('c', 'carol'));
    store.set('a', obj('a', 'alice', undefined, '2'));
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('keeps the index consistent inside handlers, and a throwing handler neither stops the others nor the store', () => {
    const errors: unknown[] = [];
    const store = new IndexedStore<Obj>((e) => errors.push(e));
    store.addIndexer('user', (o) => o.spec.user);
    const counts: number[] = [];
    store.on('add', () => {
      throw new Error('boom');
    });
    store.on('add', (o) => counts.push(store.byIndex('user', o.spec.user).length));
    store.on('delete', (o) => counts.push(store.byIndex('user', o.spec.user).length));
    store.set('a', obj('a', 'alice'));
    store.set('b', obj('b', 'alice'));
    store.delete('a');
    expect(counts).toEqual([1, 2, 1]);
    expect(errors).toHaveLength(2);
    expect(store.get('b')).toBeDefined();
  });

  it('tells delete handlers of the stored object, or of the fallback when nothing was stored', () => {
    const store = new IndexedStore<Obj>();
    const gone: string[] = [];
    store.on('delete', (o) => gone.push(`${o.metadata.name}@${o.metadata.resourceVersion}`));
    store.set('a', obj('a', 'alice', undefined, '5'));
    store.delete('a', obj('a', 'alice', undefined, '6'));
    store.delete('x', obj('x', 'nobody', undefined, '9'));
    store.delete('y');
    expect(gone).toEqual(['a@5', 'x@9']);
  });
});

describe('Caches indexes', () => {
  it('serve sessions by user and by challenge, parsed, and follow deletes', () => {
    const m = memoryCaches('ctf');
    m.sessions.put(session({ name: 's-1', user: 'alice', challenge: 'web-notes' }));
    m.sessions.put(session({ name: 's-2', user: 'alice', challenge: 'pwn-echo' }));
    m.sessions.put(session({ name: 's-3', user: 'bob', challenge: 'web-notes' }));
    expect(m.caches.sessionsOfUser('alice').map((s) => s.metadata.name).sort()).toEqual(['s-1', 's-2']);
    expect(m.caches.sessionsOfChallenge('web-notes').map((s) => s.metadata.name).sort()).toEqual(['s-1', 's-3']);
    m.sessions.remove(session({ name: 's-1' }));
    expect(m.caches.sessionsOfUser('alice').map((s) => s.metadata.name)).toEqual(['s-2']);
    expect(m.caches.sessionsOfChallenge('web-notes').map((s) => s.metadata.name)).toEqual(['s-3']);
  });

  it('serve team-owned sessions by team only, and user-owned ones by user only, whoever started them', () => {
    const m = memoryCaches('ctf');
    m.sessions.put(session({ name: 't-1', user: 'alice', team: 'red', owner: 'team' }));
    m.sessions.put(session({ name: 's-1', user: 'alice', team: 'red' }));
    m.sessions.put(session({ name: 's-2', user: 'bob', team: 'red', owner: 'user' }));
    expect(m.caches.sessionsOfTeam('red').map((s) => s.metadata.name)).toEqual(['t-1']);
    expect(m.caches.sessionsOfUser('alice').map((s) => s.metadata.name)).toEqual(['s-1']);
    expect(m.caches.sessionsOfUser('bob').map((s) => s.metadata.name)).toEqual(['s-2']);
    m.sessions.remove(session({ name: 't-1' }));
    expect(m.caches.sessionsOfTeam('red')).toEqual([]);
  });

  it('leave out a session that does not parse, and report its error when read by name', () => {
    const m = memoryCaches('ctf');
    m.sessions.put({ metadata: { name: 'BAD', namespace: 'ctf' }, spec: { user: 'alice', challenge: 'web-notes' } });
    expect(m.caches.sessionsOfUser('alice')).toEqual([]);
    expect(m.caches.session('BAD')).toMatchObject({ ok: false });
  });
});
