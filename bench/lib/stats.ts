/**
 * Order statistics for benchmark samples, and the Figure: one reported number as the median of
 * several runs, with the spread of those runs and the target it is held to.
 */

/** The p-th percentile (0-100) of `values` by linear interpolation; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return percentileSorted(sorted, p);
}

export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export interface Distribution {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Count, extremes, mean and the usual percentiles of one run's samples. */
export function distribution(values: readonly number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((s, v) => s + v, 0);
  return {
    count: sorted.length,
    min: sorted[0] ?? Number.NaN,
    p50: percentileSorted(sorted, 50),
    p90: percentileSorted(sorted, 90),
    p99: percentileSorted(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
  };
}

export type Comparison = '<' | '<=' | '>=' | '>' | '~0';

export interface Target {
  op: Comparison;
  value: number;
  /** How the target reads in the report, e.g. "<= 1.3 x baseline". */
  text: string;
}

export interface Figure {
  id: string;
  label: string;
  unit: string;
  /** One value per run; the figure is their median. */
  runs: number[];
  median: number;
  min: number;
  max: number;
  target?: Target;
  /** Whether the median meets the target; undefined without a target or without runs. */
  met?: boolean;
  note?: string;
}

export function meets(value: number, target: Target): boolean {
  if (!Number.isFinite(value)) return false;
  switch (target.op) {
    case '<':
      return value < target.value;
    case '<=':
      return value <= target.value;
    case '>=':
      return value >= target.value;
    case '>':
      return value > target.value;
    case '~0':
      return Math.abs(value) <= target.value;
  }
}

/** A figure from per-run values (non-finite runs are dropped). */
export function figure(id: string, label: string, unit: string, runs: readonly number[], target?: Target, note?: string): Figure {
  const finite = runs.filter((v) => Number.isFinite(v));
  const med = median(finite);
  return {
    id,
    label,
    unit,
    runs: finite.map((v) => round(v)),
    median: round(med),
    min: round(finite.length ? Math.min(...finite) : Number.NaN),
    max: round(finite.length ? Math.max(...finite) : Number.NaN),
    ...(target ? { target, met: finite.length ? meets(med, target) : false } : {}),
    ...(note ? { note } : {}),
  };
}

/** Three significant decimals at most; keeps the JSON readable. */
export function round(v: number): number {
  if (!Number.isFinite(v)) return v;
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 1 : abs >= 1 ? 2 : 4;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
