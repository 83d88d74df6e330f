#!/usr/bin/env node
'use strict';
// shmbroker benchmarks: `npm run bench` (full) or `npm run bench -- --quick`
// (small counts, no VM; what CI runs so the benchmarks never rot).
// Writes bench/results/latest.json, latest.md and latest.svg (or --out DIR).
//
//   --quick          small counts, skip the VM (kmod) section
//   --out DIR        where to write the results (default bench/results)
//   --only a,b       run only these sections: acquire, control, dataplane, scale, events, vm,
//                    and the opt-in scale-kmod (100,000 regions on kmod in the VM; most of an hour)
//   --skip a,b       skip these sections
//   --no-vm          skip the VM section in a full run
//
// No timing is asserted anywhere: a missed goal is reported, not failed.
// Exit status is non-zero only when a section could not run at all.
const fs = require('node:fs');
const path = require('node:path');
const { Report } = require('./lib/report');

const SECTIONS = ['acquire', 'control', 'dataplane', 'scale', 'events', 'vm'];
/** Run only when named in --only. */
const OPT_IN = ['scale-kmod'];

function parseArgs(argv) {
  const o = { quick: false, out: path.join(__dirname, 'results'), only: null, skip: new Set(), vm: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--out') o.out = path.resolve(argv[++i]);
    else if (a === '--only') o.only = new Set(argv[++i].split(','));
    else if (a === '--skip') argv[++i].split(',').forEach((s) => o.skip.add(s));
    else if (a === '--no-vm') o.vm = false;
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 14).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  for (const s of [...(o.only ?? []), ...o.skip]) if (!SECTIONS.includes(s) && !OPT_IN.includes(s)) throw new Error(`unknown section: ${s}`);
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(path.join(__dirname, '..', 'dist', 'clients', 'sdk', 'index.js'))) {
    throw new Error('dist/ is not built: run `npm run build` first');
  }
  const report = new Report({ quick: o.quick });
  report.sampleLoad('start');
  const ctx = {
    quick: o.quick,
    figure: (f) => {
      const r = report.figure(f);
      console.log(`  ${r.label}: ${r.value} ${r.unit}${r.ratio !== null ? ` (${r.ratio}× ${r.baseline.label})` : ''}${r.goal ? (r.goal.met ? ' [goal met]' : ' [goal NOT met]') : ''}`);
    },
    note: (n) => report.note(n),
    skip: (g, why) => report.skip(g, why),
    sampleLoad: (w) => report.sampleLoad(w),
  };
  let failed = 0;
  for (const s of [...SECTIONS, ...OPT_IN]) {
    if ((o.only && !o.only.has(s)) || o.skip.has(s) || (OPT_IN.includes(s) && !o.only)) continue;
    if (s === 'vm' && (o.quick || !o.vm)) {
      report.skip('5. Inside the VM (kmod)', o.quick ? 'skipped in --quick mode (one qemu TCG boot takes minutes)' : 'skipped (--no-vm)');
      continue;
    }
    console.log(`== ${s}`);
    const t0 = Date.now();
    try {
      await require(`./items/${s}`)(ctx);
    } catch (err) {
      failed++;
      console.error(`section ${s} failed: ${err.stack ?? err}`);
      report.error(s, err);
    }
    report.sampleLoad(`after ${s}`);
    console.log(`   (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const j = report.write(o.out);
  console.log(`\nwrote ${path.join(o.out, 'latest.json')}, latest.md, latest.svg`);
  for (const g of j.goals) console.log(`goal ${g.met ? 'met    ' : 'NOT met'}: ${g.goal}: ${g.value} ${g.unit} (${g.ratio}×)`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(e.stack ?? e);
  process.exit(2);
});
