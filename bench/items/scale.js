'use strict';
// 4. Scale: 100,000 regions and 100,000 grants in one broker: its RSS, a List
// page of 1,000, CreateRegion latency at that size against an empty broker,
// restart time and re-adoption time.
//
// The state lives on tmpfs (/dev/shm): at this disk's fsync cost (see the
// control-plane section) 200,000 durable commits would take the better part
// of an hour; what is measured here is how the broker scales, not the disk.
// Each memfd region is an open fd in the broker. Where RLIMIT_NOFILE can be
// raised (CAP_SYS_RESOURCE) the broker gets 250,000 through prlimit; where
// it cannot, the fill stops at the fd wall (the broker answers
// RESOURCE_EXHAUSTED/BACKEND_EXHAUSTED), 2,000 regions are deleted again to
// leave the broker fds for connections, and the grants (rows, no fds) are
// spread over the regions that exist, several uids per region.
const { Broker, Worker, latency, sdk, granteeUid } = require('../lib/common');

const NOFILE = 250_000;

/** The soft RLIMIT_NOFILE of a running process (from /proc). */
function fdLimit(pid) {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(require('node:fs').readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
}

function canRaiseNofile() {
  const r = require('node:child_process').spawnSync('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, '--', 'true']);
  return r.status === 0;
}


async function pipelined(count, inflight, call, progress) {
  let next = 0;
  let done = 0;
  const t0 = process.hrtime.bigint();
  async function lane() {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      await call(i);
      if (++done % 10_000 === 0 && progress) progress(done);
    }
  }
  await Promise.all(Array.from({ length: inflight }, lane));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function sequentialNs(count, call) {
  const ns = [];
  for (let i = 0; i < count; i++) {
    const t = process.hrtime.bigint();
    await call(i);
    ns.push(Number(process.hrtime.bigint() - t));
  }
  return ns;
}

async function listPages(c, pages, method, req) {
  // `pages` consecutive pages of 1,000 from the start, each timed.
  const ns = [];
  let token = '';
  let items = 0;
  await c.call('BrokerService', method, { ...req, pageSize: 1000 }); // warm-up, untimed
  for (let p = 0; p < pages; p++) {
    const t = process.hrtime.bigint();
    const res = await c.call('BrokerService', method, { ...req, pageSize: 1000, pageToken: token });
    ns.push(Number(process.hrtime.bigint() - t));
    items += (res.regions ?? res.grants).length;
    token = res.nextPageToken;
    if (!token) token = '';
  }
  return { ns, items };
}

module.exports = async function scale(ctx) {
  const G = '4. Scale';
  const N = ctx.quick ? 1000 : 100_000;
  const probe = ctx.quick ? 100 : 500;
  const pages = ctx.quick ? 1 : 10;
  const hold = ctx.quick ? 50 : 1000;
  const uid = granteeUid() ?? 1000;
  const raise = canRaiseNofile();
  const broker = new Broker({ base: '/dev/shm', nofile: raise ? NOFILE : undefined });
  const restartEmptyMs = [];
  restartEmptyMs.push(await broker.start());
  const c = new (sdk().ControlClient)({ runtimeDir: broker.runtimeDir, deadlineMs: 600_000 });
  try {
    // Empty broker: RSS, restart time, CreateRegion latency.
    const rssEmpty = broker.rss();
    await broker.stop();
    restartEmptyMs.push(await broker.start());
    // Fill: N regions, then one grant on each.
    const log = (what) => (n) => process.stdout.write(`    ${what} ${n}/${N} (load ${require('node:os').loadavg()[0].toFixed(1)})\n`);
    let wall = null;
    const tFill = process.hrtime.bigint();
    let created = 0;
    await pipelined(N, 32, async (i) => {
      if (wall !== null) return;
      try {
        await c.call('BrokerService', 'CreateRegion', { regionId: `r-${String(i).padStart(6, '0')}`, region: { sizeBytes: 4096 } });
        created++;
      } catch (err) {
        if (err.reason !== 'BACKEND_EXHAUSTED' && err.reason !== 'FD_LIMIT_REACHED' && !/EMFILE|Too many open files/.test(String(err.message))) throw err;
        wall = wall ?? { at: i, reason: `${err.reason}: ${err.message}` };
      }
    }, log('regions'));
    const fillCreateS = Number(process.hrtime.bigint() - tFill) / 1e9;
    const createdAtWall = created;
    let names = [];
    if (wall !== null) {
      // Which exist (pipelined creates past the wall may have failed out of order)?
      let token = '';
      do {
        const res = await c.call('BrokerService', 'ListRegions', { pageSize: 1000, pageToken: token });
        names.push(...res.regions.map((r) => r.name));
        token = res.nextPageToken;
      } while (token);
      const drop = names.splice(names.length - Math.min(2000, Math.floor(names.length / 10)));
      for (const n of drop) await c.call('BrokerService', 'DeleteRegion', { name: n });
      ctx.note(`scale: the fd wall: RLIMIT_NOFILE is ${require('node:child_process').execSync('ulimit -n', { shell: '/bin/sh' }).toString().trim()} and cannot be raised here (no CAP_SYS_RESOURCE); CreateRegion failed after ${createdAtWall} regions (${wall.reason.slice(0, 160)}); ${drop.length} were deleted again to leave fds for connections`);
    } else {
      names = Array.from({ length: N }, (_, i) => `regions/r-${String(i).padStart(6, '0')}`);
    }
    const R = names.length;
    const fillGrantS = await pipelined(
      N,
      32,
      // Grant i goes to region i mod R, for uid base + floor(i / R): distinct per region.
      (i) => c.call('BrokerService', 'CreateGrant', { parent: names[i % R], grant: { uid: i < R ? uid : 200000 + Math.floor(i / R), mode: 'ACCESS_MODE_READ_ONLY' } }),
      log('grants'),
    );
    const rssFull = broker.rss();
    const nofile = fdLimit(broker.nodePid());
    const fds = require('node:fs').readdirSync(`/proc/${broker.nodePid()}/fd`).length;

    const listR = await listPages(c, pages, 'ListRegions', {});
    const listG = await listPages(c, pages, 'ListGrants', { parent: 'regions/-' });
    // A second, empty broker for the baselines, measured at the same time:
    // CreateRegion probes alternate between the two, so load drifts hit both.
    const small = new Broker({ base: '/dev/shm' });
    await small.start();
    const cs = new (sdk().ControlClient)({ runtimeDir: small.runtimeDir });
    let listSmall;
    const emptyNs = [];
    const fullNs = [];
    try {
      for (let i = 0; i < 200; i++) {
        // Warm its JIT and channel as much as the full one's.
        await cs.call('BrokerService', 'CreateRegion', { regionId: `warm-${i}`, region: { sizeBytes: 4096 } });
        await cs.call('BrokerService', 'DeleteRegion', { name: `regions/warm-${i}` });
      }
      // The probes' owner (root) gets an explicit quota on both brokers, so
      // every probe runs the quota check against what the owner holds: 0
      // regions on the small broker, all of them on the full one (the check
      // read a sum over every charge row until issue 19's usage sums).
      for (const client of [cs, c]) {
        await client.call('QuotaService', 'UpdateQuota', { quota: { name: 'quotas/uid:0', maxBytes: 2 ** 50, maxRegions: 10_000_000 } });
      }
      for (let i = 0; i < probe; i++) {
        for (const [client, out, tag] of [
          [cs, emptyNs, 'empty'],
          [c, fullNs, 'full'],
        ]) {
          const t = process.hrtime.bigint();
          await client.call('BrokerService', 'CreateRegion', { regionId: `probe-${tag}-${i}`, region: { sizeBytes: 4096 } });
          out.push(Number(process.hrtime.bigint() - t));
        }
      }
      for (let i = 0; i < probe; i++) {
        await c.call('BrokerService', 'DeleteRegion', { name: `regions/probe-full-${i}` });
        await cs.call('BrokerService', 'DeleteRegion', { name: `regions/probe-empty-${i}` });
      }
      // The List baseline: a page of 1,000 when 1,000 regions exist.
      await pipelined(1000, 32, (i) => cs.call('BrokerService', 'CreateRegion', { regionId: `r-${String(i).padStart(6, '0')}`, region: { sizeBytes: 4096 } }));
      listSmall = await listPages(cs, pages, 'ListRegions', {});
    } finally {
      cs.close();
      await small.cleanup();
    }

    // Restart with N regions and N grants on record, while a client holds
    // `hold` of them mapped; then time until that client has offered them
    // all back (memfd re-adoption). The other regions come back LOST: on
    // memfd their memory lived only in the broker.
    const holder = new Worker('holder', [broker.runtimeDir, 'r', String(Math.min(hold, R))], { uid });
    await holder.next((o) => o.ready);
    await broker.stop();
    const restartFullMs = await broker.start();
    const re = await holder.next((o) => o.readopted !== undefined);
    holder.kill();
    const readoptMs = Number(BigInt(re.readopted) - broker.spawnedAt) / 1e6;
    const status = await c.call('BrokerService', 'GetStatus', {});
    const rssRestarted = broker.rss();

    const MiB = 2 ** 20;
    const e = latency(emptyNs);
    const f = latency(fullNs);
    // What the broker can hold is bounded by its fd limit on memfd (one fd per
    // region): held ÷ min(asked, that ceiling) says whether it reaches it.
    const ceiling = Number(status.regionCeiling ?? 0) > 0 ? Number(status.regionCeiling) : nofile;
    ctx.figure({
      id: 'scale.regions_held', chart: true, group: G,
      label: `regions held ÷ min(asked ${N}, the fd ceiling ${ceiling})`,
      value: createdAtWall, unit: 'regions',
      baseline: { label: 'min(regions asked, fd ceiling)', value: Math.min(N, ceiling) },
      better: 'higher',
      goal: { ratioMin: 0.95, text: 'regions held ≥ 0.95 × min(asked, fd ceiling)' },
      extra: { rlimitNofile: nofile, ceiling },
    });
    ctx.figure({ id: 'scale.rss_per_record', group: G, label: `broker RSS per region + grant, with ${R} regions and ${N} grants`, value: (rssFull - rssEmpty) / (R + N), unit: 'bytes', baseline: { label: 'target 3 KiB per region + grant', value: 3072 }, better: 'lower' });
    ctx.figure({ id: 'scale.restart_per_region', group: G, label: `restart to answering, per region on record (${R} regions + ${N} grants)`, value: (restartFullMs * 1000) / R, unit: 'µs', baseline: { label: 'target 30 µs per region', value: 30 }, better: 'lower' });
    ctx.figure({ id: 'scale.regions', group: G, label: `regions the broker could hold (asked for ${N})`, value: R, unit: 'regions', baseline: { label: 'asked for', value: N }, better: 'higher', extra: wall ? { wallAt: createdAtWall } : undefined });
    ctx.figure({ id: 'scale.rss', group: G, label: `broker RSS with ${R} regions and ${N} grants`, value: rssFull / MiB, unit: 'MiB', baseline: { label: 'broker RSS, empty', value: rssEmpty / MiB }, better: 'lower', extra: { bytesPerRecord: (rssFull - rssEmpty) / (R + N), brokerFds: fds } });
    ctx.figure({ id: 'scale.rss_after_restart', group: G, label: `broker RSS after a restart with ${R} regions and ${N} grants on record`, value: rssRestarted / MiB, unit: 'MiB', baseline: { label: 'broker RSS, empty', value: rssEmpty / MiB }, better: 'lower' });
    ctx.figure({ id: 'scale.list_regions.p50', group: G, label: `ListRegions, page of 1,000, at ${R} regions, p50 (first ${pages} pages)`, value: latency(listR.ns).p50_us / 1000, unit: 'ms', baseline: { label: 'same page at 1,000 regions', value: latency(listSmall.ns).p50_us / 1000 }, better: 'lower', extra: { p99_ms: latency(listR.ns).p99_us / 1000 } });
    ctx.figure({ id: 'scale.list_grants.p50', group: G, label: `ListGrants regions/-, page of 1,000, at ${N} grants, p50`, value: latency(listG.ns).p50_us / 1000, unit: 'ms', baseline: { label: 'ListRegions page at 1,000 regions', value: latency(listSmall.ns).p50_us / 1000 }, better: 'lower', extra: { p99_ms: latency(listG.ns).p99_us / 1000 } });
    for (const q of ['p50', 'p99']) {
      ctx.figure({ id: `scale.create.${q}`, chart: true, group: G, label: `CreateRegion at ${R} regions + ${N} grants (owner with an explicit quota), ${q}`, value: f[`${q}_us`], unit: 'µs', baseline: { label: `CreateRegion on an empty broker (alternating calls), ${q}`, value: e[`${q}_us`] }, better: 'lower' });
    }
    ctx.figure({ id: 'scale.restart', chart: true, group: G, label: `restart (spawn → answering GetStatus) with ${R} regions + ${N} grants on record`, value: restartFullMs, unit: 'ms', baseline: { label: 'restart of an empty broker', value: restartEmptyMs[1] }, better: 'lower', extra: { regionsAfter: Number(status.regionCount) } });
    ctx.figure({ id: 'scale.readopt', group: G, label: `re-adoption: broker spawn → a client holding ${Math.min(hold, R)} regions has offered them all back`, value: readoptMs, unit: 'ms', baseline: { label: 'the same restart, spawn → answering GetStatus', value: restartFullMs }, better: 'lower', extra: { lostInHolder: re.lost } });
    ctx.figure({ id: 'scale.fill.create_rate', group: G, label: `filling: CreateRegion rate, 32 in flight, state on tmpfs`, value: createdAtWall / fillCreateS, unit: 'ops/s', baseline: { label: 'goal 5,000 creates/s', value: 5000 }, better: 'higher' });
    ctx.figure({ id: 'scale.fill.grant_rate', group: G, label: `filling: CreateGrant rate, 32 in flight, state on tmpfs`, value: N / fillGrantS, unit: 'ops/s', baseline: { label: 'goal 5,000 ops/s', value: 5000 }, better: 'higher' });
    ctx.note(`scale: asked for ${N} regions of 4 KiB (memfd), got ${R}${wall ? ' (fd wall)' : ''}, and ${N} grants; state on /dev/shm; broker RLIMIT_NOFILE ${raise ? `raised to ${NOFILE} with prlimit` : 'left at the hard limit (cannot raise)'} (it held ${fds} fds); CreateRegion probes: ${probe} sequential calls; List: first ${pages} page(s) of 1,000`);
  } finally {
    c.close();
    await broker.cleanup();
  }
};
