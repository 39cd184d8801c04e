import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineInfo } from './cluster.js';
import type { Figure } from './stats.js';

/**
 * The report: docs/benchmarks.json keeps the latest result of each mode side by side, and
 * docs/benchmarks.md gets one generated block per mode between markers. Everything outside the
 * markers (the hand-written analysis) is kept as it is.
 */

export type Mode = 'quick' | 'full';

export interface Table {
  title: string;
  columns: string[];
  rows: (string | number)[][];
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** Sizes and settings, as they should be read in the report. */
  config: Record<string, string | number | boolean>;
  notes: string[];
  figures: Figure[];
  tables: Table[];
  /** Raw per-run data for the JSON only. */
  details?: Record<string, unknown>;
  /** Wrong behaviour seen (not a missed target): wrong answers, sessions that never ran. */
  failures: string[];
  error?: string;
  seconds: number;
  /** When the scenario ran, and whether this report kept it from an earlier run of the mode. */
  ranAt?: string;
  kept?: boolean;
  /** The command of the run a kept scenario comes from. */
  command?: string;
}

export interface BenchReport {
  mode: Mode;
  date: string;
  command: string;
  machine: MachineInfo & { loadAverageAtEnd: number[] };
  totalSeconds: number;
  scenarios: ScenarioResult[];
}

type JsonFile = Partial<Record<Mode, BenchReport>> & { about?: string };

const ABOUT = 'Written by `npm run bench` (bench/run.ts). One entry per mode: "full" (the sizes the targets are set for) and "quick" (small sizes, a smoke run). See docs/benchmarks.md.';

/**
 * Writes the report. With `merge`, scenarios of the same mode that this run did not include are
 * kept from the existing report (a rerun of some scenarios updates only those).
 */
export async function writeReport(outDir: string, report: BenchReport, merge = true): Promise<{ json: string; md: string }> {
  await mkdir(outDir, { recursive: true });
  const json = join(outDir, 'benchmarks.json');
  const md = join(outDir, 'benchmarks.md');
  let data: JsonFile = {};
  if (existsSync(json)) {
    try {
      data = JSON.parse(await readFile(json, 'utf8')) as JsonFile;
    } catch {
      data = {};
    }
  }
  const previous = data[report.mode];
  if (merge && previous) {
    const ran = new Set(report.scenarios.map((x) => x.id));
    // Reports written before scenarios carried their command nested it in the header.
    const own = (c: string) => c.replace(/ \(some scenarios kept from: .*$/, '');
    const kept = previous.scenarios.filter((x) => !ran.has(x.id)).map((x) => ({ ...x, ranAt: x.ranAt ?? previous.date, kept: true, command: x.command ?? own(previous.command) }));
    const order = ['spawn', 'flags', 'expiry', 'writes', 'scale'];
    report.scenarios = [...kept, ...report.scenarios].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  }
  const next: JsonFile = { about: ABOUT, full: data.full, quick: data.quick, [report.mode]: report };
  await writeFile(json, `${JSON.stringify(next, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  const existing = existsSync(md) ? await readFile(md, 'utf8') : skeleton();
  await writeFile(md, replaceBlock(existing, report.mode, renderMarkdown(report)));
  return { json, md };
}

const begin = (mode: Mode) => `<!-- BEGIN GENERATED: ${mode} (bench/run.ts rewrites this block; edit outside it) -->`;
const end = (mode: Mode) => `<!-- END GENERATED: ${mode} -->`;

function replaceBlock(doc: string, mode: Mode, body: string): string {
  const b = begin(mode);
  const e = end(mode);
  const i = doc.indexOf(b);
  const j = doc.indexOf(e);
  const block = `${b}\n\n${body.trim()}\n\n${e}`;
  if (i >= 0 && j > i) return doc.slice(0, i) + block + doc.slice(j + e.length);
  return `${doc.trimEnd()}\n\n${block}\n`;
}

function skeleton(): string {
  return [
    '# Benchmarks',
    '',
    'How fast challenge-engine spawns, checks flags, expires and resyncs sessions against a real',
    'local control plane, and how many apiserver writes a session costs. `npm run bench` runs the',
    'full suite (the sizes the targets are set for); `npm run bench -- --quick` runs it at small',
    'sizes as a smoke test. Both start and stop their own control plane. See bench/README.md.',
    '',
    begin('full'),
    '',
    '_No full run recorded yet._',
    '',
    end('full'),
    '',
    '## Analysis',
    '',
    '_To be written after a full run._',
    '',
    begin('quick'),
    '',
    '_No quick run recorded yet._',
    '',
    end('quick'),
    '',
  ].join('\n');
}

export function fmt(v: number, unit = ''): string {
  if (v === null || !Number.isFinite(v)) return 'n/a';
  const abs = Math.abs(v);
  if (Number.isInteger(v)) return unit ? `${v.toLocaleString('en-US')} ${unit}` : v.toLocaleString('en-US');
  const s = abs >= 1000 ? Math.round(v).toLocaleString('en-US') : abs >= 100 ? v.toFixed(0) : abs >= 10 ? v.toFixed(1) : abs >= 1 ? v.toFixed(2) : v.toFixed(3);
  return unit ? `${s} ${unit}` : s;
}

function status(f: Figure): string {
  if (!f.target) return '';
  return f.met ? 'met' : '**missed**';
}

function renderTable(t: Table): string {
  const head = `| ${t.columns.join(' | ')} |`;
  const sep = `| ${t.columns.map(() => '---').join(' | ')} |`;
  const rows = t.rows.map((r) => `| ${r.map((c) => (typeof c === 'number' ? fmt(c) : c)).join(' | ')} |`);
  return [`**${t.title}**`, '', head, sep, ...rows].join('\n');
}

export function renderMarkdown(report: BenchReport): string {
  // Scenario titles carry their number; show them in that order whatever order they ran in.
  const r = { ...report, scenarios: [...report.scenarios].sort((a, b) => a.title.localeCompare(b.title)) };
  const m = r.machine;
  const out: string[] = [];
  const title = r.mode === 'full' ? 'Full run' : 'Quick run (small sizes; targets are set for the full run)';
  out.push(`## ${title}`, '');
  const kept = r.scenarios.filter((s) => s.kept).map((s) => s.title);
  out.push(`${r.date} · \`${r.command}\` · ${Math.round(r.totalSeconds)} s in all${kept.length ? ` · kept from earlier runs: ${kept.join(', ')}` : ''}`, '');
  out.push('| machine | |', '| --- | --- |');
  out.push(`| CPU | ${m.cpuModel}, ${m.cores} cores |`);
  out.push(`| memory | ${m.memoryGiB} GiB |`);
  out.push(`| Node.js | ${m.node} |`);
  out.push(`| Kubernetes | ${m.kubernetes} (local control plane: ${m.controlPlane}; kwok fake nodes) |`);
  out.push(`| load average (1, 5, 15 min) at start / end | ${m.loadAverageAtStart.join(', ')} / ${m.loadAverageAtEnd.join(', ')} |`);
  out.push('');
  out.push('The machine is shared with other work (test runs of other checkouts), so figures are noisy; each is the median of the runs listed, with their minimum and maximum.', '');
  out.push('| scenario | figure | median | min | max | runs | target | |', '| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of r.scenarios) {
    if (s.error) out.push(`| ${s.title} | **failed**: ${s.error.replace(/\|/g, '/').slice(0, 200)} | | | | | | |`);
    for (const f of s.failures) out.push(`| ${s.title} | **check failed**: ${f.replace(/\|/g, '/')} | | | | | | |`);
    for (const f of s.figures) {
      out.push(`| ${s.title} | ${f.label} | ${fmt(f.median, f.unit)} | ${fmt(f.min)} | ${fmt(f.max)} | ${f.runs.length} | ${f.target?.text ?? ''} | ${status(f)} |`);
    }
  }
  out.push('');
  for (const s of r.scenarios) {
    out.push(`### ${s.title}`, '');
    if (s.kept) out.push(`_Run on ${s.ranAt ?? ''}${s.command ? ` with \`${s.command}\`` : ''} (kept from an earlier run of this mode)._`, '');
    const cfg = Object.entries(s.config).map(([k, v]) => `${k}: ${String(v)}`);
    if (cfg.length) out.push(`Settings: ${cfg.join('; ')}.`, '');
    for (const n of s.notes) out.push(`- ${n}`);
    if (s.notes.length) out.push('');
    const noted = s.figures.filter((f) => f.note);
    for (const f of noted) out.push(`- ${f.label}: ${f.note ?? ''}`);
    if (noted.length) out.push('');
    for (const t of s.tables) out.push(renderTable(t), '');
    if (s.error) out.push(`Failed after ${Math.round(s.seconds)} s: ${s.error}`, '');
  }
  return out.join('\n');
}
