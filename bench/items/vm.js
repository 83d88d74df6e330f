'use strict';
// 5. Inside the VM, kmod backend (one qemu boot for all of it):
//  - first-touch fault cost per 4 KiB page, kmod against memfd;
//  - hugepage regions against 4 KiB pages;
//  - revocation latency with 16 processes mapping one region, against 1.
// The guest CPU is emulated (qemu TCG, no KVM): only ratios mean anything.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { REPO, buildC } = require('../lib/common');

module.exports = async function vm(ctx) {
  const G = '5. Inside the VM (kmod, qemu TCG)';
  const { runInVm, findKernel } = require(path.join(REPO, 'test', 'vm', 'vm.js'));
  const bin = buildC('kmod_bench');
  const ko = path.join(REPO, 'kmod', 'shmbroker.ko');
  if (!fs.existsSync(ko)) {
    const { kdir } = findKernel();
    const b = spawnSync('make', ['-C', path.join(REPO, 'kmod'), `KDIR=${kdir}`, 'modules'], { encoding: 'utf8' });
    if (b.status !== 0 || !fs.existsSync(ko)) throw new Error(`cannot build kmod/shmbroker.ko: ${b.stdout}${b.stderr}`.slice(-2000));
  }
  const size = 64 << 20;
  const rsize = 4 << 20;
  const trials = 5;
  // The broker's Node code runs emulated too: a modest count keeps the boot short.
  const KMOD_REGIONS = 1000;
  const rel = path.relative(REPO, bin);
  const script = [
    'echo 80 > /proc/sys/vm/nr_hugepages',
    `step fault ${rel} fault ${size} ${trials}`,
    `step revoke1 ${rel} revoke 1 ${rsize} ${trials}`,
    `step revoke16 ${rel} revoke 16 ${rsize} ${trials}`,
    `step restart node bench/workers/kmod-restart.js ${KMOD_REGIONS}`,
  ].join('\n');
  const t0 = Date.now();
  const r = await runInVm({ script, timeoutSec: 900, insmod: true });
  const parse = (name) =>
    (r.steps.find((s) => s.name === name)?.output ?? '')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
  const fault = Object.fromEntries(parse('fault').map((o) => [o.kind, o]));
  const [rv1] = parse('revoke1');
  const [rv16] = parse('revoke16');
  if (!r.insmodOk || !fault.kmod || fault.kmod.error) {
    throw new Error(`VM run failed (insmod ${r.insmodOk}, timed out ${r.timedOut}): ${JSON.stringify(fault.kmod ?? null)}\n${r.output.slice(-3000)}`);
  }
  // On the host too (real CPU), for scale: memfd only.
  const host = spawnSync(bin, ['fault', String(size), String(trials)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .find((o) => o.kind === 'memfd');

  ctx.figure({ id: 'vm.fault.kmod_vs_memfd', chart: true, group: G, label: 'first touch per 4 KiB page, kmod region (pages allocated at CREATE)', value: fault.kmod.touch_ns_per_page, unit: 'ns (TCG)', baseline: { label: 'memfd (page allocated and zeroed at the fault)', value: fault.memfd.touch_ns_per_page }, better: 'lower' });
  ctx.figure({
    id: 'vm.create_touch.kmod_vs_memfd',
    group: G,
    label: 'CREATE + first touch per 4 KiB page, kmod (zeroing moved to CREATE)',
    value: fault.kmod.touch_ns_per_page + fault.kmod.create_ns_per_page,
    unit: 'ns (TCG)',
    baseline: { label: 'memfd create + first touch', value: fault.memfd.touch_ns_per_page + fault.memfd.create_ns_per_page },
    better: 'lower',
  });
  if (fault['kmod-huge'] && !fault['kmod-huge'].error) {
    ctx.figure({ id: 'vm.fault.huge_vs_4k', group: G, label: 'first touch per 4 KiB of a kmod HUGEPAGE region (2 MiB chunks)', value: fault['kmod-huge'].touch_ns_per_page, unit: 'ns (TCG)', baseline: { label: 'kmod region of 4 KiB pages', value: fault.kmod.touch_ns_per_page }, better: 'lower' });
    ctx.figure({
      id: 'vm.create_touch.huge_vs_4k',
      group: G,
      label: 'CREATE + first touch per 4 KiB, kmod HUGEPAGE region',
      value: fault['kmod-huge'].touch_ns_per_page + fault['kmod-huge'].create_ns_per_page,
      unit: 'ns (TCG)',
      baseline: { label: 'kmod 4 KiB pages, create + touch', value: fault.kmod.touch_ns_per_page + fault.kmod.create_ns_per_page },
      better: 'lower',
    });
  } else ctx.note(`kmod HUGEPAGE region: ${fault['kmod-huge']?.error ?? 'no result'}`);
  if (fault['memfd-hugetlb'] && !fault['memfd-hugetlb'].error) {
    ctx.figure({ id: 'vm.fault.memfd_hugetlb_vs_4k', group: G, label: 'first touch per 4 KiB, memfd MFD_HUGETLB', value: fault['memfd-hugetlb'].touch_ns_per_page, unit: 'ns (TCG)', baseline: { label: 'memfd 4 KiB pages', value: fault.memfd.touch_ns_per_page }, better: 'lower' });
  }
  if (rv1 && rv16 && !rv1.error && !rv16.error) {
    ctx.figure({ id: 'vm.revoke.ioctl', chart: true, group: G, label: `REVOKE ioctl, 16 processes mapping one ${rsize >> 20} MiB region (all pages touched)`, value: rv16.revoke_ioctl_ns / 1000, unit: 'µs (TCG)', baseline: { label: 'same with 1 process', value: rv1.revoke_ioctl_ns / 1000 }, better: 'lower' });
    ctx.figure({ id: 'vm.revoke.notice', group: G, label: 'REVOKE start → the last of 16 processes sees POLLHUP on its grant fd', value: rv16.all_saw_pollhup_ns / 1000, unit: 'µs (TCG)', baseline: { label: 'same with 1 process', value: rv1.all_saw_pollhup_ns / 1000 }, better: 'lower' });
  } else ctx.note(`revocation in the VM: ${JSON.stringify(rv16 ?? rv1 ?? null)}`);
  const [rs] = parse('restart');
  if (rs && !rs.error) {
    ctx.figure({
      id: 'vm.kmod.restart',
      group: G,
      label: `kmod broker restart with ${rs.count} regions re-adopted from the kernel (IOC_LIST), spawn → answering`,
      value: rs.fullMs,
      unit: 'ms (TCG)',
      baseline: { label: 'restart of an empty kmod broker', value: rs.emptyMs },
      better: 'lower',
      chart: true,
      extra: { activeAfter: rs.active, createMs: rs.createMs },
    });
  } else ctx.note(`kmod restart in the VM: no result (${(r.steps.find((s) => s.name === 'restart')?.output ?? '').slice(-300)})`);
  if (host) {
    ctx.figure({ id: 'vm.fault.tcg_vs_host', group: G, label: 'memfd first touch per 4 KiB page in the VM (TCG)', value: fault.memfd.touch_ns_per_page, unit: 'ns', baseline: { label: 'the same on the host CPU', value: host.touch_ns_per_page }, better: 'lower' });
  }
  ctx.note(`VM: one qemu boot (TCG: emulated CPU, ratios only; kernel ${r.kver}), ${Math.round((Date.now() - t0) / 1000)} s; regions of ${size >> 20} MiB for faults (median of ${trials}), ${rsize >> 20} MiB for revocation (median of ${trials}); C program bench/c/kmod_bench.c talks to /dev/shmbroker directly (the broker's own path adds its Node work on top)`);
  if (r.dmesgBad.length) ctx.note(`VM kernel log had warnings: ${r.dmesgBad.slice(0, 3).join(' | ')}`);
};
