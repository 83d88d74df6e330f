'use strict';
// The scale measurement itself, for any backend: N regions and N grants in
// one broker, its RSS, List pages, CreateRegion against an empty broker,
// restart and re-adoption. Returns raw numbers; bench/items/scale.js (memfd,
// on the host) and bench/items/scale-kmod.js (kmod, inside the VM, through
// bench/workers/scale-run.js) turn them into figures with scaleFigures().
//
// On memfd each region is an open fd in the broker. Where RLIMIT_NOFILE can
// be raised (CAP_SYS_RESOURCE) the broker gets `nofile` through prlimit;
// where it cannot, the fill stops at the fd wall (the broker answers
// RESOURCE_EXHAUSTED/BACKEND_EXHAUSTED/FD_LIMIT_REACHED), a tenth (at most
// 2,000) of the regions are deleted again to leave the broker fds for
// connections, and the grants (rows, no fds) are spread over the regions
// that exist, several uids per region. On kmod a region holds no broker fd.
const fs = require('node:fs');
const { Broker, Worker, latency, sdk, lanes } = require('./common');

/** The soft RLIMIT_NOFILE of a running process (from /proc). */
function fdLimit(pid) {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
}

function canRaiseNofile(nofile) {
  const r = require('node:child_process').spawnSync('prlimit', [`--nofile=${nofile}:${nofile}`, '--', 'true']);
  return r.status === 0;
}

/** lanes() with a progress report every 10,000 calls; returns the seconds it took. */
async function pipelined(count, inflight, call, progress) {
  let done = 0;
  const t0 = process.hrtime.bigint();
  await lanes(count, inflight, async (i) => {
    await call(i);
    if (++done % 10_000 === 0 && progress) progress(done);
  });
  return Number(process.hrtime.bigint() - t0) / 1e9;
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

/** An empty broker of `backend`, warmed up (JIT, channel) and with the probes' owner on an explicit quota, for fn. */
async function withEmptyBroker(backend, base, inflight, fn) {
  const small = new Broker({ backend, base });
  await small.start();
  const cs = new (sdk().ControlClient)({ runtimeDir: small.runtimeDir, deadlineMs: 600_000 });
  try {
    for (let i = 0; i < 200; i++) {
      // Warm its JIT and channel as much as the full one's.
      await cs.call('BrokerService', 'CreateRegion', { regionId: `warm-${i}`, region: { sizeBytes: 4096 } });
      await cs.call('BrokerService', 'DeleteRegion', { name: `regions/warm-${i}` });
    }
    await explicitQuota(cs);
    await fn(cs);
  } finally {
    cs.close();
    await small.cleanup();
  }
}

// The probes' owner (root) gets an explicit quota on both brokers, so every
// probe runs the quota check against what the owner holds: 0 regions on the
// empty broker, all of them on the full one (the check read a sum over every
// charge row until issue 19's usage sums).
function explicitQuota(client) {
  return client.call('QuotaService', 'UpdateQuota', { quota: { name: 'quotas/uid:0', maxBytes: 2 ** 50, maxRegions: 10_000_000 } });
}

async function timedCreate(client, id, ns) {
  const t = process.hrtime.bigint();
  await client.call('BrokerService', 'CreateRegion', { regionId: id, region: { sizeBytes: 4096 } });
  ns.push(Number(process.hrtime.bigint() - t));
}

/** The List baseline: a page of 1,000 when 1,000 regions exist (r-000000 .. r-000999). */
async function listBaseline(cs, pages, inflight) {
  await pipelined(1000, inflight, (i) => cs.call('BrokerService', 'CreateRegion', { regionId: `r-${String(i).padStart(6, '0')}`, region: { sizeBytes: 4096 } }));
  return listPages(cs, pages, 'ListRegions', {});
}

/**
 * @param o.backend 'memfd' | 'kmod'
 * @param o.base where the state lives (/dev/shm on the host, /tmp in the VM)
 * @param o.N regions asked for, and grants made
 * @param o.probe sequential CreateRegion probes on each broker
 * @param o.pages List pages of 1,000 timed
 * @param o.hold regions a client holds mapped across the restart
 * @param o.uid the grantee and holder uid
 * @param o.nofile RLIMIT_NOFILE to give the broker where it can be raised
 * @param o.inflight creates and grants in flight while filling
 */
async function measureScale(o) {
  const { backend, base, N, probe, pages, hold, uid, nofile, inflight = 32 } = o;
  const raise = nofile !== undefined && canRaiseNofile(nofile);
  const out = { backend, N, probe, pages, raise, nofileAsked: nofile, emptyNs: [], fullNs: [] };
  // The baselines come from a second, empty broker. On memfd it runs beside
  // the full one. On kmod one broker owns the module (a second one is
  // refused: kmod-backend.ts, ownDevice), so the empty broker runs first,
  // alone, and the probes on the full one come after the fill.
  const concurrent = backend !== 'kmod';
  if (!concurrent) {
    await withEmptyBroker(backend, base, inflight, async (cs) => {
      for (let i = 0; i < probe; i++) await timedCreate(cs, `probe-empty-${i}`, out.emptyNs);
      for (let i = 0; i < probe; i++) await cs.call('BrokerService', 'DeleteRegion', { name: `regions/probe-empty-${i}` });
      out.listSmall = await listBaseline(cs, pages, inflight);
      // Its regions would be orphans in the module for the next broker to destroy at its start.
      await pipelined(1000, inflight, (i) => cs.call('BrokerService', 'DeleteRegion', { name: `regions/r-${String(i).padStart(6, '0')}` }));
    });
  }
  const broker = new Broker({ backend, base, nofile: raise ? nofile : undefined });
  const restartEmptyMs = [];
  restartEmptyMs.push(await broker.start());
  const c = new (sdk().ControlClient)({ runtimeDir: broker.runtimeDir, deadlineMs: 600_000 });
  try {
    // Empty broker: RSS, restart time.
    out.rssEmpty = broker.rss();
    await broker.stop();
    restartEmptyMs.push(await broker.start());
    out.restartEmptyMs = restartEmptyMs[1];
    // Fill: N regions, then one grant on each.
    const log = (what) => (n) => process.stderr.write(`    ${what} ${n}/${N} (load ${require('node:os').loadavg()[0].toFixed(1)})\n`);
    let wall = null;
    const tFill = process.hrtime.bigint();
    let created = 0;
    await pipelined(N, inflight, async (i) => {
      if (wall !== null) return;
      try {
        await c.call('BrokerService', 'CreateRegion', { regionId: `r-${String(i).padStart(6, '0')}`, region: { sizeBytes: 4096 } });
        created++;
      } catch (err) {
        if (err.reason !== 'BACKEND_EXHAUSTED' && err.reason !== 'FD_LIMIT_REACHED' && !/EMFILE|Too many open files/.test(String(err.message))) throw err;
        wall = wall ?? { at: i, reason: `${err.reason}: ${err.message}` };
      }
    }, log('regions'));
    out.fillCreateS = Number(process.hrtime.bigint() - tFill) / 1e9;
    out.createdAtWall = created;
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
      out.wall = { ...wall, dropped: drop.length, ulimit: require('node:child_process').execSync('ulimit -n', { shell: '/bin/sh' }).toString().trim() };
    } else {
      names = Array.from({ length: N }, (_, i) => `regions/r-${String(i).padStart(6, '0')}`);
    }
    const R = (out.R = names.length);
    out.fillGrantS = await pipelined(
      N,
      inflight,
      // Grant i goes to region i mod R, for uid base + floor(i / R): distinct per region.
      (i) => c.call('BrokerService', 'CreateGrant', { parent: names[i % R], grant: { uid: i < R ? uid : 200000 + Math.floor(i / R), mode: 'ACCESS_MODE_READ_ONLY' } }),
      log('grants'),
    );
    out.rssFull = broker.rss();
    out.nofile = fdLimit(broker.nodePid());
    out.fds = fs.readdirSync(`/proc/${broker.nodePid()}/fd`).length;

    out.listR = await listPages(c, pages, 'ListRegions', {});
    out.listG = await listPages(c, pages, 'ListGrants', { parent: 'regions/-' });
    if (concurrent) {
      // The empty broker beside the full one, CreateRegion probes alternating
      // between the two, so load drifts hit both.
      await withEmptyBroker(backend, base, inflight, async (cs) => {
        await explicitQuota(c);
        for (let i = 0; i < probe; i++) {
          await timedCreate(cs, `probe-empty-${i}`, out.emptyNs);
          await timedCreate(c, `probe-full-${i}`, out.fullNs);
        }
        for (let i = 0; i < probe; i++) await cs.call('BrokerService', 'DeleteRegion', { name: `regions/probe-empty-${i}` });
        out.listSmall = await listBaseline(cs, pages, inflight);
      });
    } else {
      await explicitQuota(c);
      for (let i = 0; i < probe; i++) await timedCreate(c, `probe-full-${i}`, out.fullNs);
    }
    for (let i = 0; i < probe; i++) await c.call('BrokerService', 'DeleteRegion', { name: `regions/probe-full-${i}` });

    // Restart with R regions and N grants on record, while a client holds
    // `hold` of them mapped; then time until that client has offered them
    // all back. On memfd the other regions come back LOST (their memory
    // lived only in the broker); on kmod the module kept them all.
    out.hold = Math.min(hold, R);
    const holder = new Worker('holder', [broker.runtimeDir, 'r', String(out.hold)], { uid });
    await holder.next((m) => m.ready);
    await broker.stop();
    out.restartFullMs = await broker.start();
    const re = await holder.next((m) => m.readopted !== undefined);
    holder.kill();
    out.readoptMs = Number(BigInt(re.readopted) - broker.spawnedAt) / 1e6;
    out.lostInHolder = re.lost;
    const status = await c.call('BrokerService', 'GetStatus', {});
    out.regionsAfter = Number(status.regionCount);
    // The broker's own ceiling: memfd's fd budget, kmod's max_regions.
    out.regionCeiling = Number(status.regionCeiling ?? 0);
    out.rssRestarted = broker.rss();
    return out;
  } finally {
    c.close();
    await broker.cleanup();
  }
}

/** The figures of one measureScale() result, ids under `prefix` (scale, scale.kmod). */
function scaleFigures(ctx, r, { prefix, group, state }) {
  const { N, R, pages } = r;
  const MiB = 2 ** 20;
  const e = latency(r.emptyNs);
  const f = latency(r.fullNs);
  const id = (s) => `${prefix}.${s}`;
  // What the broker can hold is bounded by its fd limit on memfd (one fd per
  // region): held ÷ min(asked, that ceiling) says whether it reaches it.
  const ceiling = r.regionCeiling > 0 ? r.regionCeiling : r.nofile;
  ctx.figure({
    id: id('regions_held'), chart: prefix === 'scale', group,
    label: `regions held ÷ min(asked ${N}, the ${r.backend === 'memfd' ? 'fd' : 'region'} ceiling ${ceiling})`,
    value: r.createdAtWall, unit: 'regions',
    baseline: { label: 'min(regions asked, ceiling)', value: Math.min(N, ceiling) },
    better: 'higher',
    goal: { ratioMin: 0.95, text: `regions held ≥ 0.95 × min(asked, ceiling)${r.backend === 'memfd' ? '' : ` (${r.backend})`}` },
    extra: { rlimitNofile: r.nofile, ceiling },
  });
  ctx.figure({ id: id('rss_per_record'), group, label: `broker RSS per region + grant, with ${R} regions and ${N} grants`, value: (r.rssFull - r.rssEmpty) / (R + N), unit: 'bytes', baseline: { label: 'target 3 KiB per region + grant', value: 3072 }, better: 'lower' });
  ctx.figure({ id: id('restart_per_region'), group, label: `restart to answering, per region on record (${R} regions + ${N} grants)`, value: (r.restartFullMs * 1000) / R, unit: 'µs', baseline: { label: 'target 30 µs per region', value: 30 }, better: 'lower' });
  ctx.figure({ id: id('regions'), group, label: `regions the broker could hold (asked for ${N})`, value: R, unit: 'regions', baseline: { label: 'asked for', value: N }, better: 'higher', extra: r.wall ? { wallAt: r.createdAtWall } : undefined });
  ctx.figure({ id: id('rss'), group, label: `broker RSS with ${R} regions and ${N} grants`, value: r.rssFull / MiB, unit: 'MiB', baseline: { label: 'broker RSS, empty', value: r.rssEmpty / MiB }, better: 'lower', extra: { bytesPerRecord: (r.rssFull - r.rssEmpty) / (R + N), brokerFds: r.fds } });
  ctx.figure({ id: id('rss_after_restart'), group, label: `broker RSS after a restart with ${R} regions and ${N} grants on record`, value: r.rssRestarted / MiB, unit: 'MiB', baseline: { label: 'broker RSS, empty', value: r.rssEmpty / MiB }, better: 'lower' });
  ctx.figure({ id: id('list_regions.p50'), group, label: `ListRegions, page of 1,000, at ${R} regions, p50 (first ${pages} pages)`, value: latency(r.listR.ns).p50_us / 1000, unit: 'ms', baseline: { label: 'same page at 1,000 regions', value: latency(r.listSmall.ns).p50_us / 1000 }, better: 'lower', extra: { p99_ms: latency(r.listR.ns).p99_us / 1000 } });
  ctx.figure({ id: id('list_grants.p50'), group, label: `ListGrants regions/-, page of 1,000, at ${N} grants, p50`, value: latency(r.listG.ns).p50_us / 1000, unit: 'ms', baseline: { label: 'ListRegions page at 1,000 regions', value: latency(r.listSmall.ns).p50_us / 1000 }, better: 'lower', extra: { p99_ms: latency(r.listG.ns).p99_us / 1000 } });
  for (const q of ['p50', 'p99']) {
    ctx.figure({ id: id(`create.${q}`), chart: prefix === 'scale', group, label: `CreateRegion at ${R} regions + ${N} grants (owner with an explicit quota), ${q}`, value: f[`${q}_us`], unit: 'µs', baseline: { label: `CreateRegion on an empty broker (${r.backend === 'kmod' ? 'run alone before the fill: one broker per module' : 'alternating calls'}), ${q}`, value: e[`${q}_us`] }, better: 'lower' });
  }
  ctx.figure({ id: id('restart'), chart: prefix === 'scale', group, label: `restart (spawn → answering GetStatus) with ${R} regions + ${N} grants on record`, value: r.restartFullMs, unit: 'ms', baseline: { label: 'restart of an empty broker', value: r.restartEmptyMs }, better: 'lower', extra: { regionsAfter: r.regionsAfter } });
  ctx.figure({ id: id('readopt'), group, label: `re-adoption: broker spawn → a client holding ${r.hold} regions has offered them all back`, value: r.readoptMs, unit: 'ms', baseline: { label: 'the same restart, spawn → answering GetStatus', value: r.restartFullMs }, better: 'lower', extra: { lostInHolder: r.lostInHolder } });
  ctx.figure({ id: id('fill.create_rate'), group, label: `filling: CreateRegion rate, in flight, state on ${state}`, value: r.createdAtWall / r.fillCreateS, unit: 'ops/s', baseline: { label: 'goal 5,000 creates/s', value: 5000 }, better: 'higher' });
  ctx.figure({ id: id('fill.grant_rate'), group, label: `filling: CreateGrant rate, in flight, state on ${state}`, value: N / r.fillGrantS, unit: 'ops/s', baseline: { label: 'goal 5,000 ops/s', value: 5000 }, better: 'higher' });
  if (r.wall) {
    ctx.note(`${prefix}: the fd wall: RLIMIT_NOFILE is ${r.wall.ulimit} and cannot be raised here (no CAP_SYS_RESOURCE); CreateRegion failed after ${r.createdAtWall} regions (${r.wall.reason.slice(0, 160)}); ${r.wall.dropped} were deleted again to leave fds for connections`);
  }
  ctx.note(`${prefix}: asked for ${N} regions of 4 KiB (${r.backend}), got ${R}${r.wall ? ' (fd wall)' : ''}, and ${N} grants; state on ${state}; broker RLIMIT_NOFILE ${r.raise ? `raised to ${r.nofileAsked} with prlimit` : 'left as started'} (it held ${r.fds} fds); CreateRegion probes: ${r.probe} sequential calls; List: first ${pages} page(s) of 1,000`);
}

module.exports = { measureScale, scaleFigures };
