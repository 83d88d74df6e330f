'use strict';
// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and
// inclusive time by function, so a report can say where the time goes.
//   node bench/lib/cpuprofile.js FILE.cpuprofile [TOP]
const fs = require('node:fs');
const path = require('node:path');

// `after`: count only the samples after the last one whose stack holds a
// function of that name (a marker call the profiled loop makes between its
// warm-up and its measured part, e.g. 'getStatus').
function summarise(file, top = 25, after = undefined) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  if (after) {
    const inStack = (id) => {
      for (let cur = id; cur !== undefined; cur = parent.get(cur)) if (byId.get(cur).callFrame.functionName === after) return true;
      return false;
    };
    let last = -1;
    prof.samples.forEach((id, i) => {
      if (inStack(id)) last = i;
    });
    prof.samples = prof.samples.slice(last + 1);
    prof.timeDeltas = prof.timeDeltas.slice(last + 1);
  }
  const dt = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    dt.set(id, (dt.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const key = (n) => {
    const f = n.callFrame;
    const file = f.url ? path.basename(f.url.replace(/^file:\/\//, '')) : '';
    return `${f.functionName || '(anonymous)'} ${file}${file ? `:${f.lineNumber + 1}` : ''}`;
  };
  const self = new Map();
  const incl = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of dt) {
    const n = byId.get(id);
    total += us;
    if (n.callFrame.functionName === '(idle)') idle += us;
    self.set(key(n), (self.get(key(n)) ?? 0) + us);
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  const busy = total - idle;
  const rows = (m) =>
    [...m]
      .filter(([k]) => !/^\(idle\)|^\(root\)/.test(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => ({ fn: k, ms: Math.round(us / 100) / 10, pctBusy: Math.round((1000 * us) / busy) / 10 }));
  return { totalMs: total / 1000, idleMs: idle / 1000, busyMs: busy / 1000, self: rows(self), inclusive: rows(incl) };
}

module.exports = { summarise };

if (require.main === module) {
  const s = summarise(process.argv[2], Number(process.argv[3] ?? 25));
  console.log(`total ${s.totalMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms, busy ${s.busyMs.toFixed(0)} ms`);
  console.log('--- self');
  for (const r of s.self) console.log(`${String(r.pctBusy).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.fn}`);
  console.log('--- inclusive');
  for (const r of s.inclusive) console.log(`${String(r.pctBusy).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.fn}`);
}
