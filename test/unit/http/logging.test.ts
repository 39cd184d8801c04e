import { describe, expect, it } from 'vitest';
import { DomainError } from '../../../src/sessions/types.js';
import { flagOf } from './fake-service.js';
import { harness } from './harness.js';

describe('request logs', () => {
  it('never contain the bearer token or a submitted flag, whatever happens to the request', async () => {
    const h = await harness();
    const token = await h.token('alice');
    const authorization = `Bearer ${token}`;
    const s = h.service.addSession('alice', 'web-notes');
    const secretFlags = [flagOf('web-notes'), 'CTF{wrong-guess-1}', 'CTF{wrong-guess-2}', 'CTF{unparseable-guess}', `CTF{${'long'.repeat(70)}}`, 'CTF{batched-guess}'];
    const json = { authorization, 'content-type': 'application/json' };
    const requests = [
      { method: 'POST', url: '/api/flags', headers: { authorization }, payload: { sessionId: s.id, flag: secretFlags[0] } },
      { method: 'POST', url: '/api/flags', headers: { authorization }, payload: { challenge: 'web-notes', flag: secretFlags[1] } },
      { method: 'POST', url: '/api/flags', headers: { authorization }, payload: { challenge: 'web-notes', sessionId: s.id, flag: secretFlags[2] } },
      { method: 'POST', url: '/api/flags', headers: json, payload: `{"challenge":"web-notes","flag":"${secretFlags[3]}"` },
      { method: 'POST', url: '/api/flags', headers: { authorization }, payload: { challenge: 'web-notes', flag: secretFlags[4] } },
      { method: 'POST', url: '/api/flags/batch', headers: { authorization }, payload: { submissions: [{ challenge: 'no-such', flag: secretFlags[5] }] } },
      { method: 'POST', url: '/api/flags', headers: { authorization: `Bearer ${token}x` }, payload: { challenge: 'web-notes', flag: secretFlags[1] } },
      { method: 'GET', url: `/api/sessions/${s.id}?wait=1`, headers: { authorization } },
      { method: 'GET', url: '/nope', headers: { authorization } },
    ] as const;
    for (const r of requests) await h.app.inject(r);
    h.service.failWith('submitFlag', new DomainError('Unavailable', 'caches not synced'));
    await h.app.inject({ method: 'POST', url: '/api/flags', headers: { authorization }, payload: { sessionId: s.id, flag: secretFlags[1] } });
    h.service.failWith('submitFlag', new Error('internal failure'));
    await h.app.inject({ method: 'POST', url: '/api/flags', headers: { authorization }, payload: { sessionId: s.id, flag: secretFlags[2] } });

    const text = h.logs.join('');
    // The capture works: every request was logged, at trace level, with its error.
    expect(h.logs.filter((l) => l.includes('"incoming request"'))).toHaveLength(requests.length + 2);
    expect(text).toContain('internal failure');
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.split('.')[2]);
    expect(text.toLowerCase()).not.toContain('bearer');
    for (const flag of secretFlags) expect(text).not.toContain(flag);
    expect(text).not.toContain('guess');
  });

  it('keep the fields an operator needs', async () => {
    const h = await harness();
    await h.app.inject({ method: 'GET', url: '/api/sessions?all=true', headers: { ...(await h.auth()), 'x-request-id': 'req-1' } });
    const lines = h.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reqId === 'req-1');
    expect(lines.find((l) => l.msg === 'incoming request')?.req).toEqual({ method: 'GET', path: '/api/sessions', remoteAddress: '127.0.0.1' });
    expect(lines.find((l) => l.msg === 'request completed')?.res).toEqual({ statusCode: 200 });
  });
});
