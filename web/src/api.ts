import type { Problem, QueuePlace } from './logic.js';

/** The player API, same origin as the page; every call carries the player's token. */

export interface Endpoint { name: string; protocol: 'http' | 'tcp'; host: string; port: number; externalHost?: string; url?: string; connect?: string }
export interface Session { id: string; challenge: string; user: string; team?: string; phase: string; ready: boolean; reason?: string; message?: string; createdAt: string; expiresAt: string; endpoints: Endpoint[]; solved: boolean; queue?: QueuePlace }
export interface Challenge { name: string; title: string; description: string; category: string; points: number; tags?: string[]; protocols: string[]; lifetimeSeconds: number; maxLifetimeSeconds: number; owner?: 'user' | 'team' }
export interface PageConfig { scoreboardUrl?: string }

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
  }
}

export class Api {
  constructor(private readonly token: string, private readonly onUnauthorized: () => void) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError({ status: 0 });
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const p = (json ?? {}) as Partial<Problem>;
      const retry = Number(res.headers.get('retry-after'));
      const problem: Problem = {
        status: res.status,
        ...(typeof p.type === 'string' ? { type: p.type } : {}),
        ...(typeof p.title === 'string' ? { title: p.title } : {}),
        ...(typeof p.detail === 'string' ? { detail: p.detail } : {}),
        ...(Number.isFinite(retry) && retry > 0 ? { retryAfterSeconds: retry } : {}),
      };
      if (res.status === 401) this.onUnauthorized();
      throw new ApiError(problem);
    }
    return json as T;
  }

  challenges = () => this.call<{ challenges: Challenge[] }>('GET', '/api/challenges').then((r) => r.challenges);
  sessions = (all = false) => this.call<{ sessions: Session[] }>('GET', `/api/sessions${all ? '?all=true' : ''}`).then((r) => r.sessions);
  waitSession = (id: string, seconds: number) => this.call<{ session: Session }>('GET', `/api/sessions/${encodeURIComponent(id)}?wait=${seconds}`).then((r) => r.session);
  start = (challenge: string) => this.call<{ session: Session }>('POST', '/api/challenges', { challenge }).then((r) => r.session);
  stop = (id: string) => this.call<void>('DELETE', `/api/challenges/${encodeURIComponent(id)}`);
  extend = (id: string) => this.call<{ session: Session }>('POST', `/api/sessions/${encodeURIComponent(id)}/extend`).then((r) => r.session);
  access = (id: string) => this.call<{ url: string }>('POST', `/api/sessions/${encodeURIComponent(id)}/access`).then((r) => r.url);
  submit = (sessionId: string, flag: string) => this.call<{ correct: boolean }>('POST', '/api/flags', { sessionId, flag }).then((r) => r.correct);
}

export async function pageConfig(): Promise<PageConfig> {
  try {
    const res = await fetch('/play/config.json');
    return res.ok ? ((await res.json()) as PageConfig) : {};
  } catch {
    return {};
  }
}
