/**
 * Durations in Challenge specs use the Go/CEL subset "1h30m", "45m", "90s": the apiserver's CEL
 * `duration()` parses the same strings, so bounds are checked identically on both sides.
 */
export const DURATION_PATTERN = '^([0-9]{1,4}h)?([0-9]{1,5}m)?([0-9]{1,6}s)?$';
const DURATION_RE = new RegExp(DURATION_PATTERN);

/** Parses a duration string to milliseconds; undefined when it is empty or malformed. */
export function parseDuration(text: string): number | undefined {
  if (text === '' || !DURATION_RE.test(text)) return undefined;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!m) return undefined;
  const [, h = '0', min = '0', s = '0'] = m;
  return ((Number(h) * 60 + Number(min)) * 60 + Number(s)) * 1000;
}

export function formatDuration(ms: number): string {
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const out = `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
  return out === '' ? '0s' : out;
}
