'use strict';
// Collects figures and writes bench/results/latest.{json,md,svg}.
// Every figure has a value, its unit, a baseline measured in the same run (or
// a stated goal), and the ratio value / baseline.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

function machine() {
  const cpus = os.cpus();
  let kernel = os.release();
  let disk = '';
  try {
    disk = execFileSync('df', ['-h', '--output=source,fstype', os.tmpdir()], { encoding: 'utf8' }).trim().split('\n').pop().replace(/\s+/g, ' ');
  } catch {
    /* optional */
  }
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    memGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel,
    node: process.version,
    tmpDisk: disk,
  };
}

class Report {
  constructor(o) {
    this.quick = o.quick;
    this.figures = [];
    this.notes = [];
    this.skipped = [];
    this.errors = [];
    this.load = [];
    this.startedAt = new Date().toISOString();
  }

  figure(f) {
    const ratio = f.baseline && f.baseline.value ? f.value / f.baseline.value : null;
    const out = {
      id: f.id,
      group: f.group,
      label: f.label,
      value: round(f.value),
      unit: f.unit,
      baseline: f.baseline ? { label: f.baseline.label, value: round(f.baseline.value), unit: f.baseline.unit ?? f.unit } : null,
      ratio: ratio === null ? null : round(ratio),
      better: f.better,
    };
    if (f.goal) {
      const met = f.goal.ratioMax !== undefined ? ratio !== null && ratio <= f.goal.ratioMax : ratio !== null && ratio >= f.goal.ratioMin;
      out.goal = { text: f.goal.text, ratioMax: f.goal.ratioMax, ratioMin: f.goal.ratioMin, met };
    }
    if (f.chart) out.chart = true;
    if (f.extra) out.extra = Object.fromEntries(Object.entries(f.extra).map(([k, v]) => [k, typeof v === 'number' ? round(v) : v]));
    this.figures.push(out);
    return out;
  }

  note(text) {
    this.notes.push(text);
  }

  skip(group, why) {
    this.skipped.push({ group, why });
  }

  error(group, err) {
    this.errors.push({ group, error: String(err && err.stack ? err.stack : err).split('\n').slice(0, 6).join('\n') });
  }

  sampleLoad(when) {
    this.load.push({ when, at: new Date().toISOString(), loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) });
  }

  toJSON() {
    return {
      schema: 'shmbroker-bench/1',
      quick: this.quick,
      startedAt: this.startedAt,
      finishedAt: new Date().toISOString(),
      machine: machine(),
      load: this.load,
      goals: this.figures.filter((f) => f.goal).map((f) => ({ id: f.id, goal: f.goal.text, value: f.value, unit: f.unit, ratio: f.ratio, met: f.goal.met })),
      figures: this.figures,
      notes: this.notes,
      skipped: this.skipped,
      errors: this.errors,
    };
  }

  write(dir) {
    fs.mkdirSync(dir, { recursive: true });
    const j = this.toJSON();
    fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify(j, null, 2) + '\n');
    fs.writeFileSync(path.join(dir, 'latest.md'), markdown(j));
    fs.writeFileSync(path.join(dir, 'latest.svg'), svg(j));
    return j;
  }
}

function round(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const digits = a >= 100 ? 1 : a >= 1 ? 2 : 4;
  return Number(x.toFixed(digits));
}

function fmt(v, unit) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  const s = a >= 1e5 ? v.toExponential(2) : a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
  return unit ? `${s} ${unit}` : s;
}

const esc = (s) => String(s).replace(/\|/g, '\\|');

function markdown(j) {
  const m = j.machine;
  const L = [];
  L.push(`# shmbroker benchmarks${j.quick ? ' (quick run: small counts, VM part skipped)' : ''}`);
  L.push('');
  L.push(`Run ${j.startedAt} → ${j.finishedAt} on \`${m.hostname}\`: ${m.cpus}× ${m.cpuModel}, ${m.memGiB} GiB RAM, Linux ${m.kernel}, Node ${m.node}; /tmp on ${m.tmpDisk || '?'}.`);
  L.push(`Load average (1/5/15 min) during the run: ${j.load.map((l) => `${l.when} ${l.loadavg.join('/')}`).join('; ')}.`);
  L.push('');
  L.push('Ratio = value / baseline, both measured in this run unless the baseline says "goal". Latencies are medians (p50) and p99 over all trials.');
  L.push('');
  L.push('## Goals');
  L.push('');
  L.push('| Goal | Measured | Ratio | Met |');
  L.push('|---|---|---|---|');
  for (const g of j.goals) L.push(`| ${esc(g.goal)} (${g.id}) | ${fmt(g.value, g.unit)} | ${fmt(g.ratio)}× | ${g.met ? 'yes' : '**no**'} |`);
  const groups = [...new Set(j.figures.map((f) => f.group))];
  for (const g of groups) {
    L.push('');
    L.push(`## ${g}`);
    L.push('');
    L.push('| Figure | Value | Baseline | Ratio | Extra |');
    L.push('|---|---|---|---|---|');
    for (const f of j.figures.filter((x) => x.group === g)) {
      const extra = f.extra ? Object.entries(f.extra).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') : '';
      const goal = f.goal ? ` (goal: ${f.goal.text}: ${f.goal.met ? 'met' : '**not met**'})` : '';
      L.push(
        `| ${esc(f.label)}${goal} | ${fmt(f.value, f.unit)} | ${f.baseline ? `${esc(f.baseline.label)}: ${fmt(f.baseline.value, f.baseline.unit)}` : '–'} | ${f.ratio === null ? '–' : `${fmt(f.ratio)}×`} | ${esc(extra)} |`,
      );
    }
  }
  if (j.notes.length) {
    L.push('');
    L.push('## Notes');
    L.push('');
    for (const n of j.notes) L.push(`- ${n}`);
  }
  if (j.skipped.length) {
    L.push('');
    L.push('## Skipped');
    L.push('');
    for (const s of j.skipped) L.push(`- ${s.group}: ${s.why}`);
  }
  if (j.errors.length) {
    L.push('');
    L.push('## Errors');
    L.push('');
    for (const e of j.errors) L.push(`- ${e.group}: \`${esc(e.error.split('\n')[0])}\``);
  }
  L.push('');
  return L.join('\n');
}

/** Horizontal bars of measured ratio (log scale) with each goal as a marker. */
function svg(j) {
  const rows = j.figures.filter((f) => f.goal || f.chart);
  const W = 900;
  const left = 360;
  const right = 40;
  const rowH = 34;
  const top = 60;
  const H = top + rows.length * rowH + 50;
  const lo = -2;
  const hi = 3; // 0.01× .. 1000×
  const x = (r) => left + ((Math.log10(Math.min(Math.max(r, 10 ** lo), 10 ** hi)) - lo) / (hi - lo)) * (W - left - right);
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">shmbroker: measured ratio against each goal (log scale)${j.quick ? ' — quick run' : ''}</text>`);
  o.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">bar = value / baseline; black tick = goal; green = met, red = not met, grey = context. ${j.startedAt.slice(0, 16)}Z, load ${j.load[0]?.loadavg.join('/') ?? '?'}</text>`);
  for (let e = lo; e <= hi; e++) {
    const gx = x(10 ** e);
    o.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + rows.length * rowH}" stroke="#ddd"/>`);
    o.push(`<text x="${gx}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555">${10 ** e}×</text>`);
  }
  rows.forEach((f, i) => {
    const y = top + i * rowH;
    const r = f.ratio ?? 0;
    const colour = f.goal ? (f.goal.met ? '#3a3' : '#d33') : '#889';
    const x0 = x(10 ** lo);
    o.push(`<text x="${left - 8}" y="${y + 20}" text-anchor="end">${xml(shorten(f.id + ': ' + (f.goal ? f.goal.text : f.label), 52))}</text>`);
    o.push(`<rect x="${x0}" y="${y + 8}" width="${Math.max(1, x(r) - x0)}" height="16" fill="${colour}"/>`);
    o.push(`<text x="${Math.min(x(r) + 4, W - right - 30)}" y="${y + 21}" fill="#000">${fmt(r)}×</text>`);
    if (f.goal) {
      const g = f.goal.ratioMax ?? f.goal.ratioMin;
      o.push(`<line x1="${x(g)}" y1="${y + 4}" x2="${x(g)}" y2="${y + 28}" stroke="#000" stroke-width="3"/>`);
    }
  });
  o.push(`<text x="${left}" y="${H - 12}" fill="#555">lower is better for latency goals (≤), higher for throughput goals (≥)</text>`);
  o.push('</svg>');
  return o.join('\n') + '\n';
}

function shorten(s, n) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}
function xml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

module.exports = { Report, markdown, svg };
