import {
  DomainError,
  type AccessDecision,
  type AccessRequest,
  type Caller,
  type CatalogueEntry,
  type FlagResult,
  type FlagTarget,
  type SessionService,
  type SessionView,
} from '../../../src/sessions/types.js';

/**
 * An in-memory SessionService with the documented semantics (ownership as NotFound, idempotent
 * spawn, per-user limit). It fakes our own domain interface, not Kubernetes. Every call is
 * recorded, and `failWith` makes the next call of a method throw.
 */

export function catalogueEntry(name: string): CatalogueEntry {
  return {
    name,
    title: `The ${name} challenge`,
    description: 'Find the flag.',
    category: 'web',
    points: 100,
    tags: ['easy'],
    protocols: ['http'],
    lifetimeSeconds: 1800,
    maxLifetimeSeconds: 7200,
    owner: 'user',
  };
}

export const flagOf = (challenge: string) => `CTF{${challenge}-flag}`;

type Method = keyof SessionService;

export class FakeSessionService implements SessionService {
  readonly calls: { method: Method; args: unknown[] }[] = [];
  readonly sessions = new Map<string, SessionView>();
  readonly disabled = new Set<string>();
  readonly atMaxLifetime = new Set<string>();
  entries: CatalogueEntry[] = [catalogueEntry('web-notes'), catalogueEntry('pwn-echo')];
  maxPerUser = 3;
  isReady = true;
  /** Replaces waitReady's behaviour; the default resolves at once with the current view. */
  waitReadyImpl?: (caller: Caller, id: string, timeoutMs: number, signal?: AbortSignal) => Promise<SessionView>;
  /** Replaces waitList's behaviour; the default resolves at once with the current list. */
  waitListImpl?: (caller: Caller, all: boolean, timeoutMs: number, signal?: AbortSignal) => Promise<SessionView[]>;
  private readonly failures = new Map<Method, Error>();
  private counter = 0;

  failWith(method: Method, err: Error): void {
    this.failures.set(method, err);
  }

  callsOf(method: Method): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  addSession(user: string, challenge: string, over: Partial<SessionView> = {}): SessionView {
    this.counter += 1;
    const session: SessionView = {
      id: `${challenge}-${this.counter}`,
      challenge,
      user,
      owner: 'user',
      phase: 'Running',
      ready: true,
      createdAt: '2026-01-01T00:00:00Z',
      expiresAt: '2026-01-01T00:30:00Z',
      endpoints: [{ name: 'web', protocol: 'http', host: `${challenge}-${this.counter}.ctf.svc.cluster.local`, port: 80 }],
      solved: false,
      ...over,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  private record(method: Method, args: unknown[]): void {
    this.calls.push({ method, args });
    const err = this.failures.get(method);
    if (err) {
      this.failures.delete(method);
      throw err;
    }
  }

  private owned(caller: Caller, id: string): SessionView {
    const s = this.sessions.get(id);
    if (!s || (s.user !== caller.user && !caller.admin)) throw new DomainError('NotFound', `session ${id} not found`);
    return s;
  }

  catalogue(): CatalogueEntry[] {
    this.record('catalogue', []);
    return this.entries.filter((e) => !this.disabled.has(e.name));
  }

  spawn(caller: Caller, challenge: string): Promise<{ created: boolean; session: SessionView }> {
    this.record('spawn', [caller, challenge]);
    if (!this.entries.some((e) => e.name === challenge)) return Promise.reject(new DomainError('NotFound', `challenge ${challenge} not found`));
    if (this.disabled.has(challenge)) return Promise.reject(new DomainError('NotFound', `challenge ${challenge} not found`));
    const mine = [...this.sessions.values()].filter((s) => s.user === caller.user);
    const existing = mine.find((s) => s.challenge === challenge);
    if (existing) return Promise.resolve({ created: false, session: existing });
    if (mine.length >= this.maxPerUser) return Promise.reject(new DomainError('LimitReached', `you already have ${mine.length} sessions`));
    return Promise.resolve({ created: true, session: this.addSession(caller.user, challenge, { phase: 'Pending', ready: false, endpoints: [] }) });
  }

  list(caller: Caller, all?: boolean): SessionView[] {
    this.record('list', [caller, all]);
    return [...this.sessions.values()].filter((s) => (all && caller.admin) || s.user === caller.user);
  }

  waitList(caller: Caller, all: boolean, timeoutMs: number, signal?: AbortSignal): Promise<SessionView[]> {
    this.record('waitList', [caller, all, timeoutMs, signal]);
    if (this.waitListImpl) return this.waitListImpl(caller, all, timeoutMs, signal);
    return Promise.resolve([...this.sessions.values()].filter((s) => (all && caller.admin) || s.user === caller.user));
  }

  get(caller: Caller, id: string): SessionView {
    this.record('get', [caller, id]);
    return this.owned(caller, id);
  }

  waitReady(caller: Caller, id: string, timeoutMs: number, signal?: AbortSignal): Promise<SessionView> {
    this.record('waitReady', [caller, id, timeoutMs, signal]);
    if (this.waitReadyImpl) return this.waitReadyImpl(caller, id, timeoutMs, signal);
    return Promise.resolve(this.owned(caller, id));
  }

  stop(caller: Caller, id: string): Promise<void> {
    this.record('stop', [caller, id]);
    this.owned(caller, id);
    this.sessions.delete(id);
    return Promise.resolve();
  }

  extend(caller: Caller, id: string): Promise<SessionView> {
    this.record('extend', [caller, id]);
    const s = this.owned(caller, id);
    if (this.atMaxLifetime.has(id)) return Promise.reject(new DomainError('MaxLifetime', 'the session has reached its maximum lifetime'));
    const extended = { ...s, expiresAt: '2026-01-01T01:00:00Z' };
    this.sessions.set(id, extended);
    return Promise.resolve(extended);
  }

  submitFlag(caller: Caller, target: FlagTarget, flag: string): Promise<FlagResult> {
    this.record('submitFlag', [caller, target, flag]);
    let challenge: string;
    if ('sessionId' in target) {
      challenge = this.owned(caller, target.sessionId).challenge;
    } else {
      if (!this.entries.some((e) => e.name === target.challenge)) return Promise.reject(new DomainError('NotFound', `challenge ${target.challenge} not found`));
      challenge = target.challenge;
    }
    return Promise.resolve({ correct: flag === flagOf(challenge) });
  }

  /** What authorize answers. */
  decision: AccessDecision = { allow: false, status: 403, why: 'not-yours' };

  openLink(caller: Caller, id: string, port?: string): Promise<{ url: string; expiresAt: string }> {
    this.record('openLink', [caller, id, port]);
    this.owned(caller, id);
    return Promise.resolve({ url: `https://i0.ctf.example/.challenge-engine/open?ticket=t-${id}`, expiresAt: '2030-01-01T10:01:00.000Z' });
  }

  authorize(req: AccessRequest): Promise<AccessDecision> {
    this.record('authorize', [req]);
    return Promise.resolve(this.decision);
  }

  ready(): Promise<boolean> {
    this.record('ready', []);
    return Promise.resolve(this.isReady);
  }
}
