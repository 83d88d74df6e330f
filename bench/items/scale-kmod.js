'use strict';
// 4b. Scale on kmod (opt-in: `node bench/run.js --only scale-kmod --out
// bench/results/scale-kmod`): the same measurement as section 4
// (bench/lib/scale-run.js) with the kmod backend, inside the VM, at 100,000
// regions and 100,000 grants, which memfd cannot reach on a host whose
// RLIMIT_NOFILE hard limit is 20,000: a kmod region holds no broker fd. The
// module's max_regions (default 4,096) is raised for the run.
//
// The guest CPU is emulated (qemu TCG, no KVM) and runs everything, broker
// and client alike, 10-40x slower than the host: times are reported, but
// only RSS per record and ratios within the run mean anything. Filling
// 200,000 records takes 15-30 minutes here, hence opt-in.
const path = require('node:path');
const { REPO } = require('../lib/common');
const { scaleFigures } = require('../lib/scale-run');

module.exports = async function scaleKmod(ctx) {
  const { runInVm } = require(path.join(REPO, 'test', 'vm', 'vm.js'));
  const N = Number(process.env.SHMBROKER_SCALE_KMOD_N || (ctx.quick ? 1000 : 100_000));
  const probe = ctx.quick ? 50 : 200;
  const pages = ctx.quick ? 1 : 5;
  const hold = ctx.quick ? 50 : 1000;
  const script = [
    // Room for N regions plus the probes (the empty broker's 1,000 are deleted before the fill).
    `echo ${N + 5000} > /sys/module/shmbroker/parameters/max_regions`,
    `step scale node bench/workers/scale-run.js kmod /tmp ${N} ${probe} ${pages} ${hold} 65534 32`,
  ].join('\n');
  const r = await runInVm({ script, timeoutSec: Number(process.env.SHMBROKER_VM_TIMEOUT || 3 * 3600), insmod: true, memMB: 6144 });
  const step = r.steps.find((s) => s.name === 'scale');
  const line = (step?.output ?? '').split('\n').find((l) => l.startsWith('{"backend"'));
  if (!r.insmodOk || !line) {
    throw new Error(`VM run failed (insmod ${r.insmodOk}, timed out ${r.timedOut}, step rc ${step?.rc}):\n${(step?.output ?? r.output).slice(-3000)}`);
  }
  scaleFigures(ctx, JSON.parse(line), { prefix: 'scale.kmod', group: '4b. Scale on kmod (inside the VM, qemu TCG)', state: 'the guest /tmp (tmpfs)' });
};
