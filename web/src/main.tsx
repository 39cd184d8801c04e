import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { Api, ApiError, pageConfig, type Challenge, type PageConfig, type Session } from './api.js';
import { byCategory, countdown, explain, extendBlocked, parseConnect, queueText, tcpCommands, tokenFromFragment, tokenInfo, type TokenInfo } from './logic.js';

/*
 * The player page: sign-in by a token in the address's fragment (kept in session storage, removed
 * from the address bar), the catalogue by category, and per challenge Start, Open, the TCP lines,
 * a countdown, Extend, Stop and a flag box; an organiser view for admin tokens. Everything from
 * the API is rendered as text (Preact escapes it); nothing is ever set as HTML.
 */

const STORAGE_KEY = 'challenge-engine-token';
const SETTLED = new Set(['Running', 'Failed', 'Expired']);

function takeToken(): string | undefined {
  const fromFragment = tokenFromFragment(location.hash);
  if (fromFragment) {
    sessionStorage.setItem(STORAGE_KEY, fromFragment);
    // The token leaves the address bar (and the history entry) at once.
    history.replaceState(null, '', location.pathname + location.search);
    return fromFragment;
  }
  return sessionStorage.getItem(STORAGE_KEY) ?? undefined;
}

const message = (err: unknown) => (err instanceof ApiError ? explain(err.problem) : 'Something went wrong; try again.');

function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

function App() {
  const [config, setConfig] = useState<PageConfig>({});
  const [token, setToken] = useState<string | undefined>(takeToken);
  const [signedOut, setSignedOut] = useState<string | undefined>();
  const info = token ? tokenInfo(token) : undefined;
  useEffect(() => void pageConfig().then(setConfig), []);
  const signOut = useCallback((why: string) => {
    sessionStorage.removeItem(STORAGE_KEY);
    setToken(undefined);
    setSignedOut(why);
  }, []);
  useEffect(() => {
    if (!info?.expiresAt) return;
    const left = info.expiresAt - Date.now();
    if (left <= 0) return signOut('Your sign-in has expired.');
    const t = setTimeout(() => signOut('Your sign-in has expired.'), Math.min(left, 2 ** 31 - 1));
    return () => clearTimeout(t);
  }, [info?.expiresAt, signOut]);

  if (!token || !info) return <SignedOut reason={signedOut ?? (token ? 'This sign-in link is not valid.' : undefined)} config={config} />;
  return <Player token={token} info={info} onUnauthorized={() => signOut('Your sign-in has expired.')} />;
}

function SignedOut({ reason, config }: { reason: string | undefined; config: PageConfig }) {
  return (
    <main class="signed-out">
      <h1>Challenges</h1>
      <p role="alert">{reason ?? 'Open this page from the scoreboard to sign in.'}</p>
      {config.scoreboardUrl ? <a class="button" href={config.scoreboardUrl}>Back to the scoreboard</a> : <p>Ask the organisers for the scoreboard's address.</p>}
    </main>
  );
}

function Player({ token, info, onUnauthorized }: { token: string; info: TokenInfo; onUnauthorized: () => void }) {
  const [api] = useState(() => new Api(token, onUnauthorized));
  const [challenges, setChallenges] = useState<Challenge[] | undefined>();
  const [sessions, setSessions] = useState<Session[]>([]);
  const [error, setError] = useState<string | undefined>();
  const now = useNow();

  const refresh = useCallback(async () => {
    try {
      const [c, s] = await Promise.all([api.challenges(), api.sessions()]);
      setChallenges(c);
      setSessions(s);
      setError(undefined);
    } catch (err) {
      setError(message(err));
    }
  }, [api]);
  useEffect(() => {
    void refresh();
    const t = setInterval(() => void refresh(), 10_000);
    return () => clearInterval(t);
  }, [refresh]);
  const replace = (s: Session) => setSessions((list) => [...list.filter((x) => x.id !== s.id && x.challenge !== s.challenge), s]);
  const remove = (id: string) => setSessions((list) => list.filter((x) => x.id !== id));

  return (
    <main>
      <header>
        <h1>Challenges</h1>
        <p class="who">
          Signed in as <strong>{info.user}</strong>
          {info.team ? <> of team <strong>{info.team}</strong></> : null}
        </p>
      </header>
      {error ? <p role="alert" class="error">{error}</p> : null}
      {!challenges ? <p role="status">Loading…</p> : null}
      {challenges && challenges.length === 0 ? <p>No challenges are open yet.</p> : null}
      {challenges
        ? byCategory(challenges).map((group) => (
            <section key={group.category} aria-label={group.category}>
              <h2>{group.category}</h2>
              {group.challenges.map((c) => (
                <ChallengeCard key={c.name} api={api} challenge={c} session={sessions.find((s) => s.challenge === c.name)} now={now} onSession={replace} onGone={remove} />
              ))}
            </section>
          ))
        : null}
      {info.admin ? <Organiser api={api} now={now} /> : null}
    </main>
  );
}

interface CardProps { api: Api; challenge: Challenge; session: Session | undefined; now: number; onSession: (s: Session) => void; onGone: (id: string) => void }

function ChallengeCard({ api, challenge, session, now, onSession, onGone }: CardProps) {
  const [busy, setBusy] = useState<string | undefined>();
  const [error, setError] = useState<string | undefined>();
  const id = `challenge-${challenge.name}`;

  const act = async (what: string, fn: () => Promise<void>) => {
    setBusy(what);
    setError(undefined);
    try {
      await fn();
    } catch (err) {
      setError(message(err));
    } finally {
      setBusy(undefined);
    }
  };

  const start = () =>
    act('Starting', async () => {
      let s = await api.start(challenge.name);
      onSession(s);
      // Long polls until the instance is ready or failed (each answer at most 20 s apart), and
      // for as long as it waits in the queue.
      for (let i = 0; (i < 15 || s.phase === 'Queued') && !SETTLED.has(s.phase); i++) {
        s = await api.waitSession(s.id, 20);
        onSession(s);
      }
    });

  const open = (s: Session) => {
    // The window opens within the click (no popup blocker); the single-use link follows.
    const w = window.open('', '_blank');
    if (w) w.opener = null;
    void act('Opening', async () => {
      try {
        const url = await api.access(s.id);
        if (w) w.location.href = url;
        else location.href = url;
      } catch (err) {
        w?.close();
        throw err;
      }
    });
  };

  return (
    <article class="challenge" aria-labelledby={id}>
      <h3 id={id}>
        {challenge.title} <span class="points">{challenge.points} points</span>
      </h3>
      <p class="description">{challenge.description}</p>
      {challenge.owner === 'team' ? <p class="note">One instance per team: your teammates see and use the same one.</p> : null}
      {!session ? (
        <button type="button" onClick={() => void start()} disabled={busy !== undefined}>
          Start
        </button>
      ) : (
        <Instance api={api} challenge={challenge} session={session} now={now} busy={busy} act={act} open={open} onSession={onSession} onGone={onGone} />
      )}
      {busy ? (
        <p role="status" class="busy">
          {busy}… {busy === 'Starting' && session ? `(${session.phase})` : ''}
          {busy === 'Starting' ? <progress aria-label="Starting" /> : null}
        </p>
      ) : null}
      {error ? <p role="alert" class="error">{error}</p> : null}
    </article>
  );
}

interface InstanceProps { api: Api; challenge: Challenge; session: Session; now: number; busy: string | undefined; act: (what: string, fn: () => Promise<void>) => Promise<void>; open: (s: Session) => void; onSession: (s: Session) => void; onGone: (id: string) => void }

function Instance({ api, challenge, session, now, busy, act, open, onSession, onGone }: InstanceProps) {
  const [flag, setFlag] = useState('');
  const [result, setResult] = useState<string | undefined>();
  const blocked = extendBlocked(session.createdAt, session.expiresAt, challenge.maxLifetimeSeconds);
  const flagId = `flag-${session.id}`;
  const submit = (e: Event) => {
    e.preventDefault();
    if (!flag.trim()) return;
    void act('Checking', async () => {
      setResult(undefined);
      const correct = await api.submit(session.id, flag.trim());
      setResult(correct ? 'Correct! The flag is accepted.' : 'Wrong flag. Try again.');
      if (correct) {
        setFlag('');
        onSession({ ...session, solved: true });
      }
    });
  };
  return (
    <div class="instance">
      <p class="state">
        {session.ready ? 'Ready' : session.phase === 'Failed' ? `Failed: ${session.message ?? 'the instance could not start'}` : session.phase === 'Queued' ? queueText(session.queue) : `Starting (${session.phase})`}
        {session.solved ? ' · solved' : ''}
        {session.phase === 'Queued' ? null : (
          <span>
            {' · '}
            <span role="timer" aria-label="Time left">
              {countdown(session.expiresAt, now)}
            </span>{' '}
            left
          </span>
        )}
      </p>
      {session.ready
        ? session.endpoints.map((e) =>
            e.protocol === 'http' ? (
              <button key={e.name} type="button" onClick={() => open(session)} disabled={busy !== undefined}>
                Open
              </button>
            ) : (
              <TcpLines key={e.name} endpoint={parseConnect(e.connect) ?? { host: e.externalHost ?? e.host, port: e.port }} />
            ),
          )
        : null}
      <div class="controls">
        <button type="button" disabled={busy !== undefined || blocked !== undefined || session.phase === 'Queued'} aria-describedby={blocked ? `${flagId}-max` : undefined} onClick={() => void act('Extending', async () => onSession(await api.extend(session.id)))}>
          Extend
        </button>
        {blocked ? <span id={`${flagId}-max`} class="note">{blocked}</span> : null}
        <button
          type="button"
          class="danger"
          disabled={busy !== undefined}
          onClick={() =>
            void act('Stopping', async () => {
              await api.stop(session.id);
              onGone(session.id);
            })
          }
        >
          Stop
        </button>
      </div>
      <form class="flag" onSubmit={submit}>
        <label for={flagId}>Flag</label>
        <input id={flagId} name="flag" autocomplete="off" spellcheck={false} value={flag} onInput={(e) => setFlag((e.target as HTMLInputElement).value)} />
        <button type="submit" disabled={busy !== undefined}>
          Submit
        </button>
      </form>
      {result ? <p role="status" class={result.startsWith('Correct') ? 'ok' : 'error'}>{result}</p> : null}
    </div>
  );
}

function TcpLines({ endpoint }: { endpoint: { host: string; port: number } }) {
  const [copied, setCopied] = useState<string | undefined>();
  return (
    <ul class="tcp">
      {tcpCommands(endpoint.host, endpoint.port).map((c) => (
        <li key={c.label}>
          <code>{c.command}</code>{' '}
          <button type="button" aria-label={`Copy the ${c.label} command`} onClick={() => void navigator.clipboard?.writeText(c.command).then(() => setCopied(c.label), () => setCopied(undefined))}>
            {copied === c.label ? 'Copied' : 'Copy'}
          </button>
        </li>
      ))}
    </ul>
  );
}

function Organiser({ api, now }: { api: Api; now: number }) {
  const [all, setAll] = useState<Session[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const load = useCallback(() => api.sessions(true).then(setAll, (err: unknown) => setError(message(err))), [api]);
  useEffect(() => {
    void load();
    const t = setInterval(() => void load(), 10_000);
    return () => clearInterval(t);
  }, [load]);
  const groups = new Map<string, Session[]>();
  for (const s of all ?? []) groups.set(s.challenge, [...(groups.get(s.challenge) ?? []), s]);
  return (
    <section aria-label="Organiser" class="organiser">
      <h2>All instances (organiser)</h2>
      {error ? <p role="alert" class="error">{error}</p> : null}
      {all && all.length === 0 ? <p>No instances are running.</p> : null}
      {[...groups].map(([challenge, list]) => (
        <table key={challenge}>
          <caption>{challenge}</caption>
          <thead>
            <tr><th scope="col">Owner</th><th scope="col">State</th><th scope="col">Time left</th><th scope="col">Instance</th><th scope="col"><span class="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {list.map((s) => (
              <tr key={s.id}>
                <td>{s.team ? `${s.team} (${s.user})` : s.user}</td>
                <td>{s.phase}{s.solved ? ', solved' : ''}</td>
                <td>{countdown(s.expiresAt, now)}</td>
                <td><code>{s.id}</code></td>
                <td>
                  <button type="button" class="danger" aria-label={`Stop ${s.id}`} onClick={() => void api.stop(s.id).then(load, (err: unknown) => setError(message(err)))}>
                    Stop
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ))}
    </section>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
