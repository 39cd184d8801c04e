/**
 * npm run -s token -- --user <id> [--team <t>] [--admin] [--ttl <2h|30m|7d|1d12h>]
 *
 * Prints a bearer token for the player API, signed with $CTF_TOKEN_SECRET, and nothing else, so
 * it can be captured: TOKEN=$(npm run -s token -- --user alice).
 */
import { parseArgs } from 'node:util';
import { MIN_SECRET_LENGTH, issueToken } from '../src/http/auth.js';

const USAGE = 'usage: npm run -s token -- --user <id> [--team <team>] [--admin] [--ttl <duration, e.g. 30m, 2h, 7d; default 12h>]';
const DEFAULT_TTL = '12h';
const MAX_TTL_SECONDS = 366 * 86_400;
const UNIT_SECONDS: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1 };

class UsageError extends Error {}

/** "2h", "30m", "7d", "1d12h" -> seconds. */
function parseTtl(text: string): number {
  if (!/^(\d+[dhms])+$/.test(text)) throw new UsageError(`--ttl must be a duration such as 30m, 2h or 7d, not "${text}"`);
  let seconds = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)([dhms])/g)) seconds += Number(n) * (UNIT_SECONDS[unit ?? 's'] ?? 1);
  if (seconds <= 0 || seconds > MAX_TTL_SECONDS) throw new UsageError(`--ttl must be between 1s and ${MAX_TTL_SECONDS / 86_400}d`);
  return seconds;
}

async function main(argv: string[]): Promise<string> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { user: { type: 'string' }, team: { type: 'string' }, admin: { type: 'boolean', default: false }, ttl: { type: 'string', default: DEFAULT_TTL } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (!values.user) throw new UsageError('--user is required');
  const secret = process.env.CTF_TOKEN_SECRET;
  if (!secret) throw new UsageError('CTF_TOKEN_SECRET is not set; export the same secret the API uses');
  if (secret.length < MIN_SECRET_LENGTH) throw new UsageError(`CTF_TOKEN_SECRET must be at least ${MIN_SECRET_LENGTH} characters`);
  try {
    return await issueToken(secret, { user: values.user, team: values.team, admin: values.admin, ttlSeconds: parseTtl(values.ttl) });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

main(process.argv.slice(2)).then(
  (token) => process.stdout.write(`${token}\n`),
  (err: unknown) => {
    process.stderr.write(`token: ${err instanceof Error ? err.message : String(err)}\n${err instanceof UsageError ? `${USAGE}\n` : ''}`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
