import { QUANTITY_PATTERN } from '../api/challenge.js';

const QUANTITY_RE = new RegExp(QUANTITY_PATTERN);

const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/**
 * The value of a resource quantity in the subset Challenge specs allow ("250m", "1.5", "64Mi"),
 * precise enough to order requests against limits. Undefined for anything else, so callers can
 * leave a value they cannot compare alone rather than guess.
 */
export function parseQuantity(text: string): number | undefined {
  if (!QUANTITY_RE.test(text)) return undefined;
  const m = /^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$/.exec(text);
  const factor = m ? SUFFIX[m[2] ?? ''] : undefined;
  return m && factor !== undefined ? Number(m[1]) * factor : undefined;
}

/** Orders two quantities; undefined when either cannot be parsed. */
export function compareQuantities(a: string, b: string): number | undefined {
  const x = parseQuantity(a);
  const y = parseQuantity(b);
  return x === undefined || y === undefined ? undefined : Math.sign(x - y);
}
