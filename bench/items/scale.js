'use strict';
// 4. Scale: 100,000 regions and 100,000 grants in one memfd broker on the
// host: its RSS, a List page of 1,000, CreateRegion latency at that size
// against an empty broker, restart time and re-adoption time
// (bench/lib/scale-run.js measures; the kmod run of the same is
// bench/items/scale-kmod.js, inside the VM).
//
// The state lives on tmpfs (/dev/shm): at this disk's fsync cost (see the
// control-plane section) 200,000 durable commits would take the better part
// of an hour; what is measured here is how the broker scales, not the disk.
const { granteeUid } = require('../lib/common');
const { measureScale, scaleFigures } = require('../lib/scale-run');

module.exports = async function scale(ctx) {
  const r = await measureScale({
    backend: 'memfd',
    base: '/dev/shm',
    N: ctx.quick ? 1000 : 100_000,
    probe: ctx.quick ? 100 : 500,
    pages: ctx.quick ? 1 : 10,
    hold: ctx.quick ? 50 : 1000,
    uid: granteeUid() ?? 1000,
    nofile: 250_000,
  });
  scaleFigures(ctx, r, { prefix: 'scale', group: '4. Scale', state: '/dev/shm' });
};
