#!/usr/bin/env node
'use strict';
// The kernel-module suite, in a real Debian kernel under qemu (`npm run test:kmod`).
//
// On the host: build kmod/ warning-free at W=1 and sparse-clean (C=2), build
// the C selftests, check every module parameter has a description. In ONE
// guest boot: insmod, the functional cases, the stress run, every executable
// test/vm/guest.d/*.sh in sorted order (SHMBROKER_IN_VM=1, cwd = repo root,
// repo read-only, /tmp writable), then check the module is idle, rmmod it,
// and scan dmesg for warnings, BUGs and Oopses.
//
// Prints `KMOD-SUITE: PASS n/m` or `KMOD-SUITE: FAIL n/m` and exits non-zero
// on any failure, on a guest that does not finish in time, or when qemu or
// the kernel is missing (with the apt-get line that fixes it).
//
// Options / environment:
//   --timeout SEC | SHMBROKER_VM_TIMEOUT         whole guest run (default 2400)
//   --stress-seconds N | SHMBROKER_STRESS_SECONDS stress duration (default 20)
//   --step-timeout SEC | SHMBROKER_VM_STEP_TIMEOUT each guest step, so one hung
//                                                 script cannot sink the rest (default 900)
//   --only PAT[,PAT...]                           run only C cases whose name contains a PAT (no stress, no guest.d)
//   --skip-guest-d                                the module's own suite only
//   --guest-d PAT[,PAT...]                        only the guest.d scripts whose name contains a PAT
//                                                 (also with --only, which otherwise skips guest.d)
//   --one-kernel                                  no second boot on the other installed kernels
//   --verbose                                     echo the whole console, kernel log included
//   SHMBROKER_KVER                                kernel version to use (default: newest installed)

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { runInVm, findKernel, checkTools, VmSetupError, REPO } = require('./vm');

function parseArgs(argv) {
  const o = {
    timeoutSec: Number(process.env.SHMBROKER_VM_TIMEOUT || 2400),
    stressSeconds: Number(process.env.SHMBROKER_STRESS_SECONDS || 20),
    stepTimeoutSec: Number(process.env.SHMBROKER_VM_STEP_TIMEOUT || 900),
    only: null,
    guestD: null,
    skipGuestD: false,
    oneKernel: false,
    verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--timeout') o.timeoutSec = Number(argv[++i]);
    else if (a === '--stress-seconds') o.stressSeconds = Number(argv[++i]);
    else if (a === '--step-timeout') o.stepTimeoutSec = Number(argv[++i]);
    else if (a === '--only') o.only = argv[++i];
    else if (a === '--guest-d') o.guestD = argv[++i].split(',').filter(Boolean);
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--skip-guest-d') o.skipGuestD = true;
    else if (a === '--one-kernel') o.oneKernel = true;
    else throw new Error(`unknown argument: ${a}`);
  }
  if (!(o.timeoutSec > 0) || !(o.stressSeconds > 0) || !(o.stepTimeoutSec > 0)) throw new Error('timeouts must be positive numbers');
  return o;
}

const cases = [];
function recordCase(name, ok, detail) {
  return record(name, ok, detail);
}
function record(name, ok, detail) {
  cases.push({ name, ok, detail });
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail && !ok ? `: ${detail}` : ''}`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: REPO, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  return { status: r.status, out: `${r.stdout || ''}${r.stderr || ''}`, error: r.error };
}

// Builds a private copy of kmod/ under .cache/: from clean, so W=1 sees every
// compile and C=2 checks every file, and without touching the shared
// checkout's kmod/ (others may be loading kmod/shmbroker.ko at the same time).
const BUILD_OUTPUT = /^(\..*\.cmd|.*\.(o|ko|mod|mod\.c)|Module\.symvers|modules\.order|shmbroker_test|shmbroker_stress)$/;

function hostBuild(kdir, tools, dir) {
  fs.cpSync(path.join(REPO, 'kmod'), dir, {
    recursive: true,
    filter: (src) => !BUILD_OUTPUT.test(path.basename(src)),
  });
  const ko = path.join(dir, 'shmbroker.ko');
  const haveSparse = run('sh', ['-c', 'command -v sparse']).status === 0;
  const b = run('make', ['-C', dir, `KDIR=${kdir}`, 'W=1', ...(haveSparse ? ['C=2'] : []), 'modules']);
  const diags = b.out.split('\n').filter((l) => /warning:|error:/.test(l));
  const built = b.status === 0 && fs.existsSync(ko);
  record('build: make -C kmod (W=1), no warnings', built && diags.length === 0,
    built ? diags.join('\n') : b.out.split('\n').slice(-30).join('\n'));
  record('build: sparse-clean (C=2)', haveSparse && built && diags.length === 0,
    haveSparse ? diags.join('\n') : 'sparse not installed (apt-get install -y sparse)');
  if (!built) return false;

  const t = run('make', ['-C', path.join(dir, 'tests')]);
  record('build: kmod/tests', t.status === 0, t.out.split('\n').slice(-30).join('\n'));
  if (t.status !== 0) return false;
  // The same cases as an i386 program (compat_ioctl), where gcc-multilib is installed.
  const libc32 = run('sh', ['-c', 'gcc -m32 -print-file-name=libc.a']).out.trim();
  if (libc32.startsWith('/')) {
    const t32 = run('make', ['-C', path.join(dir, 'tests'), 'i386']);
    record('build: kmod/tests for i386 (-m32)', t32.status === 0, t32.out.split('\n').slice(-30).join('\n'));
  } else {
    console.log('note: no 32-bit C library (apt-get install gcc-multilib): the i386 selftests are not built');
  }

  // Limits are module parameters, each with a MODULE_PARM_DESC.
  const parm = run(tools.modinfo, ['-F', 'parm', ko]);
  const lines = parm.out.trim().split('\n').filter(Boolean);
  const wanted = ['max_region_bytes', 'max_total_bytes', 'max_regions', 'max_grants_per_region'];
  const described = wanted.every((p) => lines.some((l) => new RegExp(`^${p}:\\S.*\\(\\w+\\)$`).test(l)));
  record('module parameters described (modinfo)', parm.status === 0 && described, lines.join('; '));
  const lic = run(tools.modinfo, ['-F', 'license', ko]);
  record('module license GPL', lic.out.trim() === 'GPL', lic.out.trim());
  return true;
}

// The compat shims (kmod/shmbroker.c) branch at 6.3; the guest boots one
// kernel. Build against every other installed kernel's headers too, warning-
// and sparse-clean like the main build, so both branches are compiled
// whenever two kernels on either side of 6.3 are installed (Debian 12 has
// 6.1 and 6.12: .ci/run installs both). With one kernel only, say so.
// Returns the builds for kernels that can also be booted (a /boot/vmlinuz),
// left in place for otherKernelBoots(); the caller removes them.
function otherKernelBuilds(kver, dir) {
  const bootable = [];
  let others = [];
  try {
    others = fs.readdirSync('/lib/modules')
      .filter((v) => v !== kver && fs.existsSync(`/lib/modules/${v}/build/Makefile`));
  } catch {
    /* none */
  }
  const haveSparse = run('sh', ['-c', 'command -v sparse']).status === 0;
  for (const v of others) {
    const copy = `${dir}-${v}`;
    fs.cpSync(dir, copy, { recursive: true, filter: (src) => !BUILD_OUTPUT.test(path.basename(src)) });
    try {
      const b = run('make', ['-C', copy, `KDIR=/lib/modules/${v}/build`, 'W=1', ...(haveSparse ? ['C=2'] : []), 'modules']);
      const diags = b.out.split('\n').filter((l) => /warning:|error:|ERROR:/.test(l));
      const ok = b.status === 0 && fs.existsSync(path.join(copy, 'shmbroker.ko')) && diags.length === 0;
      record(`build: also against ${v} headers, W=1${haveSparse ? ' C=2' : ''} clean`, ok,
        diags.length ? diags.join('\n') : b.out.split('\n').slice(-30).join('\n'));
      if (ok && fs.existsSync(`/boot/vmlinuz-${v}`) && run('make', ['-C', path.join(copy, 'tests')]).status === 0) {
        bootable.push({ kver: v, dir: copy });
        continue;
      }
    } catch (e) {
      record(`build: also against ${v} headers`, false, String(e));
    }
    fs.rmSync(copy, { recursive: true, force: true });
  }
  const all = [kver, ...others];
  if (!all.some((v) => versionAtLeast(v, 6, 3)) || all.every((v) => versionAtLeast(v, 6, 3))) {
    console.log(`note: only kernels ${all.join(', ')} have headers here: one side of the 6.3 compat ` +
      'branch is not compiled (apt-get install linux-headers-6.12.*+deb12-amd64 for the newer one)');
  }
  return bootable;
}

function versionAtLeast(v, major, minor) {
  const m = v.match(/^(\d+)\.(\d+)/);
  return m && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

function guestScript(o, tests, ko) {
  // Comma-separated patterns: a case runs when its name contains any of them.
  const only = o.only ? o.only.split(',').filter(Boolean).map((p) => ` '${p.replace(/'/g, '')}'`).join('') : '';
  const lines = [
    'set -u',
    'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    // exit 124 when a step runs out of time; the rest of the boot goes on.
    `limit() { timeout -k 10 ${Math.round(o.stepTimeoutSec)} "$@"; __lrc=$?; [ $__lrc = 124 ] && stuck; return $__lrc; }`,
    // On a timeout, show what is stuck in the kernel (console only, not dmesg).
    'stuck() { echo "# step timed out; tasks in D state:"; for p in /proc/[0-9]*; do ' +
      '[ "$(cut -d" " -f3 $p/stat 2>/dev/null)" = D ] || continue; echo "# ${p#/proc/} $(cat $p/comm)"; ' +
      'sed "s/^/#   /" $p/stack 2>/dev/null; done; }',
    // Whether KFENCE is on in this kernel (see the cmdline in inGuest()).
    'echo "# kfence sample_interval: $(cat /sys/module/kfence/parameters/sample_interval 2>/dev/null || echo absent)"',
    `step kmod-selftests limit ${tests}/shmbroker_test${only}`,
    // Every case again from a 32-bit process: each ioctl through compat_ioctl.
    `[ -x ${tests}/shmbroker_test32 ] && step kmod-selftests-i386 limit ${tests}/shmbroker_test32${only}`,
  ];
  if (!o.only) {
    lines.push(
      `step kmod-stress limit env SHMBROKER_STRESS_SECONDS=${Math.round(o.stressSeconds)} ${tests}/shmbroker_stress`,
    );
  }
  if ((!o.only || o.guestD) && !o.skipGuestD) {
    const pick = o.guestD
      ? `  case "\${f##*/}" in ${o.guestD.map((p) => `*'${p.replace(/'/g, '')}'*`).join('|')}) ;; *) continue ;; esac`
      : '  :';
    lines.push(
      // Other suites drop scripts here to run against the real module in this same boot.
      'for f in test/vm/guest.d/*.sh; do',
      '  [ -f "$f" ] && [ -x "$f" ] || continue',
      pick,
      '  step "guest.d/${f##*/}" limit "$f"',
      'done',
    );
  }
  if (!o.only) {
    // Last user of the module: unload racing the last grant close, reload,
    // a new generation and no old id known; leaves the module loaded.
    lines.push(`step kmod-reload-races limit ${tests}/shmbroker_test --reload-races ${ko}`);
  }
  lines.push(
    'step module-idle-before-rmmod sh -c \'rc=0; for s in regions bytes grants mappings; do ' +
      'v=$(cat /sys/class/misc/shmbroker/$s); echo "$s=$v"; [ "$v" = 0 ] || rc=1; done; exit $rc\'',
    'step rmmod sh -c \'if command -v rmmod >/dev/null; then rmmod shmbroker; else busybox rmmod shmbroker; fi\'',
    'step module-gone sh -c \'! test -e /sys/module/shmbroker && ! test -e /dev/shmbroker\'',
  );
  return lines.join('\n');
}

// TAP lines of the module's own C steps become cases of their own; a
// guest.d script is one case (its exit code), whatever it prints.
function tapCases(step) {
  const out = [];
  if (!step.name.startsWith('kmod-')) return out;
  for (const line of step.output.split('\n')) {
    const m = line.match(/^(not ok|ok) \d+ (?:- )?([^#]*?)\s*(#.*)?$/);
    if (m) out.push({ name: `${step.name}: ${m[2]}`, ok: m[1] === 'ok', skip: /^# SKIP/i.test(m[3] || '') });
  }
  return out;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  let kernel, tools;
  try {
    tools = checkTools();
    kernel = findKernel();
  } catch (e) {
    if (e instanceof VmSetupError) {
      console.error(`KMOD-SUITE: FAIL (setup)\n${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  console.log(`kmod suite: kernel ${kernel.kver}, timeout ${o.timeoutSec}s (each step ${o.stepTimeoutSec}s), ` +
    `stress ${o.stressSeconds}s`);
  const cache = path.join(__dirname, '.cache');
  fs.mkdirSync(cache, { recursive: true });
  const buildDir = fs.mkdtempSync(path.join(cache, 'build-'));
  let others = [];
  try {
    if (!hostBuild(kernel.kdir, tools, buildDir)) return finish();
    others = otherKernelBuilds(kernel.kver, buildDir);
    await inGuest(o, buildDir, kernel.kver, '');
    // The module's own suite again on each other kernel (the other side of
    // the compat shims, for real): a short boot, no guest.d scripts.
    if (!o.oneKernel) {
      for (const k of others) {
        await inGuest({ ...o, skipGuestD: true, stressSeconds: Math.min(o.stressSeconds, 10) }, k.dir, k.kver, `[${k.kver}] `);
      }
    }
  } finally {
    fs.rmSync(buildDir, { recursive: true, force: true });
    for (const k of others) fs.rmSync(k.dir, { recursive: true, force: true });
  }
  return finish();
}

async function inGuest(o, buildDir, kver, prefix) {
  let echoing = true;
  if (prefix) console.log(`---- ${prefix}the module's own suite on ${kver} ----`);
  const record = (name, ok, detail) => recordCase(`${prefix}${name}`, ok, detail);
  const r = await runInVm({
    kver,
    script: guestScript(o, path.relative(REPO, path.join(buildDir, 'tests')), path.join(buildDir, 'shmbroker.ko')),
    insmod: path.join(buildDir, 'shmbroker.ko'),
    timeoutSec: o.timeoutSec,
    // The Debian kernel has no KASAN; these catch what they can without it:
    // slab objects poisoned and red-zoned (a use-after-free write to a freed
    // region or grant struct is reported at the next check), freed pages
    // poisoned and verified on reuse (a stale mapping writing into pages
    // DESTROY freed shows up as "memory corruption"). Neither kernel has
    // lockdep. 6.12 has KFENCE built in but off (sample interval 0): turned
    // on here, it guards sampled slab objects with pages of their own and
    // reports a use-after-free or overflow as "BUG: KFENCE" (6.1 lacks it
    // and ignores the parameter).
    cmdline: ['slub_debug=FZPU', 'page_poison=1', 'kfence.sample_interval=10'],
    onOutput: (chunk) => {
      if (o.verbose) return process.stdout.write(chunk);
      // The console without the kernel log dump at the end (judged below instead).
      for (const line of chunk.split(/(?<=\n)/)) {
        if (line.includes('@@VM-DMESG-BEGIN@@')) echoing = false;
        if (echoing) process.stdout.write(line.replace(/\r/g, ''));
        if (line.includes('@@VM-DMESG-END@@')) echoing = true;
      }
    },
  });

  record('guest: module inserted', r.insmodOk, 'insmod failed');
  record(`guest: finished within ${o.timeoutSec}s`, r.done && !r.timedOut,
    r.timedOut ? 'timed out' : `guest stopped early (qemu exit ${r.exitCode}); ${r.vmErrors.join(', ')}`);
  for (const step of r.steps) {
    const tap = tapCases(step);
    for (const c of tap) record(c.skip ? `${c.name} (skipped)` : c.name, c.ok, 'see output above');
    record(`step ${step.name}`, step.rc === 0,
      step.rc === null ? 'did not finish' : step.rc === 124 ? `timed out after ${o.stepTimeoutSec}s` : `exit ${step.rc}`);
  }
  record('dmesg: no WARNING, BUG, Oops, KASAN, general protection', r.dmesg !== null && r.dmesgBad.length === 0,
    r.dmesg === null ? 'no kernel log captured' : r.dmesgBad.slice(0, 20).join('\n'));
  if (r.dmesgBad.length && r.dmesg) {
    console.log('---- kernel log (tail) ----');
    console.log(r.dmesg.split('\n').slice(-120).join('\n'));
  }
  const stress = r.steps.find((s) => s.name === 'kmod-stress');
  if (stress) for (const l of stress.output.split('\n')) if (l.startsWith('# stress:')) console.log(l);
  console.log(`guest boot ${r.bootMs === null ? '?' : (r.bootMs / 1000).toFixed(1)}s, ` +
    `whole run ${(r.durationMs / 1000).toFixed(1)}s`);
}

function finish() {
  const passed = cases.filter((c) => c.ok).length;
  const failed = cases.filter((c) => !c.ok);
  for (const c of failed) console.log(`  failed: ${c.name}`);
  const ok = failed.length === 0 && cases.length > 0;
  console.log(`KMOD-SUITE: ${ok ? 'PASS' : 'FAIL'} ${passed}/${cases.length}`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  console.error(e.stack || String(e));
  console.log('KMOD-SUITE: FAIL (runner error)');
  process.exitCode = 1;
});
