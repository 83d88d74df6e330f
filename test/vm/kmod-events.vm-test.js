#!/usr/bin/env node
'use strict';
// Inside the test VM, against the real shmbroker.ko: region events on the
// kmod backend, where the region fd itself is the doorbell (issue 20 step 5;
// docs/ARCHITECTURE.md, "Region events"). Plain JS on the compiled build
// (vitest is slow under emulation). The memfd twins of these cases are
// test/region-events.test.ts and test/clients-c/c-events.test.ts; the SDK's
// ring and waiter programs are shared with the first (test/support/event-programs.js).
//
//  - an acquire with events gets one fd and RegionEvents.kernel, and a bare
//    NOTIFY ioctl on a read-only fd without allow_notify is the kernel's EPERM
//  - two uids (1001 producer, 1002 consumer) pass frames through a ring with
//    doorbells: SDK-SDK, C-C, C-Python
//  - broadcast and coalescing; ro without allow_notify cannot notify, ro with
//    allow_notify can (SDK, C, Python; uid 65534 holds the allow_notify grant)
//  - revoke and delete while waiting wake the waiters with revoked (SDK, C
//    poll loop, Python asyncio); a client that ignores the notice is woken by
//    the kernel's EPOLLHUP
//  - the broker is not on the notify path: notify and wait work while it is
//    SIGSTOPped (SDK and C)
//
// Prints TAP-style lines and "N passed, N failed".
const fs = require('node:fs');
const path = require('node:path');
const { REPO, U1, U2, NOBODY, workDirs, createTap, brokerHarness, proc: spawnProc, nodeChild, killChildren } = require('./guest-lib');
const { RING, WAITER, PY_RING_CONSUMER, PY_ASYNC_WAITER, PY_NOTIFIER } = require('../support/event-programs.js');

const { work, runtimeDir, stateDir } = workDirs('kmod-events-');
const U3 = NOBODY;
const CBUILD = process.env.SHMB_C_BUILD || path.join(REPO, 'clients', 'c', 'build');
const EVENTS = path.join(CBUILD, 'shmb_events');
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) || 'python3';
const PYDIR = path.join(REPO, 'clients', 'python');
// How long a ring's side waits for the other before it counts as stuck: the
// other side may be a Node or Python process still starting under emulation
// (seconds each, more on a loaded host), and the consumer's first wait spans
// the producer's whole start.
const WAIT_MS = 120_000;
const ENV = { ...process.env, SHMBROKER_RUNTIME_DIR: runtimeDir, SHMBROKER_LIB: path.join(CBUILD, 'libshmbroker.so.0'), SHMB_EVENTS_WAIT_MS: String(WAIT_MS) };

const { ok, finish } = createTap();

const broker = brokerHarness({ runtimeDir, stateDir, backend: 'kmod' });
const { cli, json } = broker;
const proc = (argv, who) => spawnProc(argv, who, ENV);
const node = (script, args, who) => nodeChild(work, script, args, who, ENV);
const py = (script, args, who) =>
  proc([PYTHON, '-c', `import sys; sys.path.insert(0, ${JSON.stringify(PYDIR)}); import shmbroker\n${script}`, ...args], who);

const REGIONS = [];
async function region(name, grants, size = '64KiB') {
  await json(['region', 'create', name, '--size', size]);
  REGIONS.push(name);
  const names = [];
  for (const [who, mode, extra] of grants) names.push((await json(['grant', 'create', name, '--uid', String(who.uid), '--mode', mode, ...(extra || [])])).name);
  return names;
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const tri = (n) => (n * (n - 1)) / 2;

// Raw data-plane client: acquire with events, show what came, ring with the
// bare kernel doorbell, then wait on it and ignore the broker's notices.
const RAW = `
const native = require(REPO + '/dist/native/index.js');
const { dataRequestCodec, dataReplyCodec } = require(REPO + '/dist/proto/load.js');
const sock = native.SeqpacketSocket.connect(process.argv[2] + '/data.sock', { maxPacket: 4097, maxFds: 4 });
let bell;
sock.on('message', (data, fds) => {
  const reply = dataReplyCodec().decode(data);
  if (!reply.acquire) { report({ event: 'packet', kind: reply.reply }); return; }
  bell = new native.KernelDoorbell(native.dupFd(fds[0]));
  let notify = 'ok';
  try { bell.notify(); } catch (e) { notify = e.code; }
  bell.start(() => report({ event: 'woke', revoked: bell.revoked(), seq: bell.seq() }));
  report({ event: 'acquired', events: reply.acquire.events, fds: fds.length, backend: reply.acquire.backend, notify, seq: bell.seq() });
});
sock.send(dataRequestCodec().encode({ requestId: 1, acquire: { region: process.argv[3], mode: 'ACCESS_MODE_READ_ONLY', wantEvents: true } }));
`;

// Two regions and few processes: under emulation every node start (a CLI
// call included) costs seconds, and the whole script must fit in one guest step.
//   kev (64 KiB): 1001 rw, 1002 rw: the rings (SDK, C, C->Python, C with the
//                 broker stopped, one after the other on the same ring), then
//                 deleted under an SDK and a Python asyncio waiter
//   kro (4 KiB):  1001 rw, 1002 ro, 65534 ro --allow-notify: permission,
//                 broadcast, coalescing, the broker stopped, then 1002's grant
//                 revoked under SDK, C, raw and Python waiters
async function main() {
  if (!fs.existsSync('/dev/shmbroker')) {
    ok(false, '/dev/shmbroker exists');
    return;
  }
  await broker.start();
  ok(true, 'broker (kmod) starts');
  await region('kev', [[U1, 'rw'], [U2, 'rw']]);
  const [, kroRo] = await region('kro', [[U1, 'rw'], [U2, 'ro'], [U3, 'ro', ['--allow-notify']]], '4KiB');
  const sumOf = (from, n) => tri(from + n) - tri(from);
  let base = 0; // frames already through kev's ring

  // 1. The wire: one fd, events.kernel; the kernel refuses NOTIFY on a ro fd.
  const raw = node(RAW, [runtimeDir, 'kro'], U2);
  {
    const got = await raw.next((o) => o.event === 'acquired');
    ok(
      got && same(got.events, { mayNotify: false, pageVersion: 0, kernel: true }) && got.fds === 1 && got.backend === 'kmod' && got.notify === 'EPERM',
      'kmod acquire with events: one fd (the region fd is the doorbell), events.kernel; bare NOTIFY on a ro fd without allow_notify is EPERM from the kernel',
      got || raw.stderrText,
    );
    const c = proc([EVENTS, 'raw-notify', 'kro', 'ro'], U2);
    const l = await c.line(/^notify /);
    ok(l === 'notify rc=-1 raw=EPERM may_notify=0 backend=kmod', 'C: a ro lease without allow_notify: shmb_region_notify -EPERM, bare ioctl EPERM', l || c.out() + c.stderrText);
    const c3 = proc([EVENTS, 'raw-notify', 'kro', 'ro'], U3);
    const l3 = await c3.line(/^notify /);
    ok(l3 === 'notify rc=0 raw=OK may_notify=1 backend=kmod', 'C: a ro lease whose grant has --allow-notify rings through the library and the bare ioctl (the broker opened it with ALLOW_NOTIFY)', l3 || c3.out() + c3.stderrText);
  }

  // 2. Rings across uids on kev: SDK-SDK, C-C, C-Python.
  {
    const frames = 200;
    // The producer starts only once the consumer holds its lease, so the
    // consumer meets an empty ring and sleeps on the doorbell. Started side by
    // side, a producer that won the race kept ahead of the consumer the whole
    // way (64 slots), and neither waited often enough to be sure the consumer did
    // (CI, 2026-12-03: consumer wakes 0, producer 1). Either side's wake is a
    // doorbell wake, so the check counts both.
    const consumer = node(RING, [runtimeDir, 'kev', 'consumer', String(frames), String(WAIT_MS)], U2);
    const ready = await consumer.next((o) => o.event === 'ready');
    const producer = node(RING, [runtimeDir, 'kev', 'producer', String(frames), String(WAIT_MS)], U1);
    const done = await consumer.next((o) => o.event !== 'ready');
    const pdone = await producer.next((o) => o.event === 'done');
    ok(
      same(ready, { event: 'ready', mayNotify: true, backend: 'kmod' }) && done && done.event === 'done' && done.bad === 0 && done.sum === sumOf(base, frames) && pdone && pdone.bad === 0 && done.wakes + pdone.wakes > 0,
      `SDK: producer uid 1001 -> consumer uid 1002, ${frames} frames through a ring in a kmod region, woken by the kernel doorbell`,
      { ready, done, pdone, err: consumer.stderrText + producer.stderrText },
    );
    base += frames;
  }
  {
    const frames = 500;
    const p = proc([EVENTS, 'ring', 'kev', 'producer', String(frames)], U1);
    const c = proc([EVENTS, 'ring', 'kev', 'consumer', String(frames)], U2);
    const l = await c.line(/^done /);
    const [pe, ce] = [await p.exited(), await c.exited()];
    ok(new RegExp(`^done sum=${sumOf(base, frames)} bad=0 wakes=\\d+$`).test(l || '') && pe.code === 0 && ce.code === 0,
      `C: producer uid 1001 -> consumer uid 1002, ${frames} frames through a ring in a kmod region`, `${l} ${JSON.stringify([pe, ce])} ${p.stderrText}${c.stderrText}`);
    base += frames;
  }
  {
    const frames = 150;
    const p = proc([EVENTS, 'ring', 'kev', 'producer', String(frames)], U1);
    const c = py(PY_RING_CONSUMER, ['kev', String(frames), String(WAIT_MS / 1000)], U2);
    const l = await c.line(/^(done|stuck)/);
    const [pe, ce] = [await p.exited(), await c.exited()];
    ok(new RegExp(`^done sum=${sumOf(base, frames)} bad=0 wakes=\\d+ backend=kmod$`).test(l || '') && pe.code === 0 && ce.code === 0,
      `C producer uid 1001 -> Python consumer uid 1002, ${frames} frames through a ring in a kmod region`, `${l} ${JSON.stringify([pe, ce])} ${p.stderrText}${c.out()}${c.stderrText}`);
    base += frames;
  }

  // 3. Broadcast, coalescing, permission (SDK) on kro.
  const notifier = node(WAITER, [runtimeDir, 'kro', 'rw'], U1);
  const waiters = [node(WAITER, [runtimeDir, 'kro', 'ro', '3'], U2), node(WAITER, [runtimeDir, 'kro', 'ro'], U2)];
  let seq;
  {
    const nready = await notifier.next((o) => o.event === 'ready');
    const wready = [];
    for (const w of waiters) wready.push(await w.next((o) => o.event === 'ready'));
    seq = nready ? nready.seq : 0;
    ok(
      nready && nready.mayNotify === true &&
        wready.every((r) => r && same(r, { event: 'ready', seq, mayNotify: false, notifyError: { code: 'PERMISSION_DENIED', reason: 'NOTIFY_NOT_ALLOWED' } })),
      'SDK: a ro lease without allow_notify gets PERMISSION_DENIED NOTIFY_NOT_ALLOWED (the kernel said EPERM)',
      { nready, wready },
    );
    for (const w of waiters) w.send(`wait ${seq} 120000`);
    notifier.send('notify');
    const n1 = await notifier.next((o) => o.event === 'notified');
    const woke1 = [];
    for (const w of waiters) woke1.push(await w.next((o) => o.event === 'woke'));
    for (let i = 0; i < 5; i++) notifier.send('notify');
    const n6 = await notifier.next((o) => o.event === 'notified' && o.seq === seq + 6);
    for (const w of waiters) w.send(`wait ${seq + 1}`);
    const woke6 = [];
    for (const w of waiters) woke6.push(await w.next((o) => o.event === 'woke'));
    ok(
      n1 && n1.seq === seq + 1 && woke1.every((e) => same(e && e.ev, { type: 'notify', seq: seq + 1, count: 1 })) &&
        n6 && woke6.every((e) => same(e && e.ev, { type: 'notify', seq: seq + 6, count: 5 })),
      'SDK: broadcast (waiters of another uid, in two processes, all wake) and coalescing (5 notifies, one wake-up, count 5)',
      { seq, n1, woke1, n6, woke6 },
    );
    seq += 6;
  }
  const ringer = node(WAITER, [runtimeDir, 'kro', 'ro'], U3);
  {
    // Its ready probe notifies once (allowed): seq + 1.
    const rr = await ringer.next((o) => o.event === 'ready');
    for (const w of waiters) w.send(`wait ${seq + 1} 120000`);
    ringer.send('notify');
    const n = await ringer.next((o) => o.event === 'notified');
    const woke = [];
    for (const w of waiters) woke.push(await w.next((o) => o.event === 'woke'));
    ok(
      rr && rr.mayNotify === true && rr.notifyError === null && rr.seq === seq + 1 && n && n.seq === seq + 2 && woke.every((e) => same(e && e.ev, { type: 'notify', seq: seq + 2, count: 1 })),
      'SDK: a ro lease (uid 65534) whose grant has --allow-notify rings; the waiters wake',
      { seq, rr, n, woke },
    );
    seq += 2;
  }

  // 4. The broker is not on the notify path: SIGSTOP it, then notify and wait.
  {
    const frames = 100;
    const p = proc([EVENTS, 'ring', 'kev', 'producer', String(frames), 'hold'], U1);
    const c = proc([EVENTS, 'ring', 'kev', 'consumer', String(frames), 'hold'], U2);
    const acq = [await p.line(/^acquired/), await c.line(/^acquired/)];
    broker.proc.kill('SIGSTOP');
    // The stop is delivered asynchronously: go on once the broker is in state T.
    const isStopped = () => fs.readFileSync(`/proc/${broker.proc.pid}/stat`, 'utf8').split(') ')[1].startsWith('T');
    let stopped = false;
    for (let i = 0; i < 500 && !(stopped = isStopped()); i++) await new Promise((r) => setTimeout(r, 20));
    for (const w of waiters) w.send(`wait ${seq} 120000`);
    notifier.send('notify');
    const n = await notifier.next((o) => o.event === 'notified');
    const woke = [];
    for (const w of waiters) woke.push(await w.next((o) => o.event === 'woke'));
    p.send('go');
    c.send('go');
    const l = await c.line(/^done /);
    const pl = await p.line(/^done /);
    const stillStopped = isStopped();
    broker.proc.kill('SIGCONT');
    ok(stopped && stillStopped && n && n.seq === seq + 1 && woke.every((e) => same(e && e.ev, { type: 'notify', seq: seq + 1, count: 1 })),
      'SDK: notify (uid 1001) and wait (uid 1002, two processes) work while the broker is SIGSTOPped', { stopped, stillStopped, n, woke });
    ok(stopped && stillStopped && acq.every((a) => a === 'acquired backend=kmod') && new RegExp(`^done sum=${sumOf(base, frames)} bad=0 wakes=\\d+$`).test(l || '') && pl,
      `C: ${frames} frames through a ring (uid 1001 -> uid 1002) while the broker is SIGSTOPped`, { acq, l, pl, err: p.stderrText + c.stderrText });
    await Promise.all([p.exited(), c.exited()]);
    base += frames;
    seq += 1;
  }

  // 5. Revoke 1002's grant on kro while the SDK, C (own poll loop) and raw
  //    clients wait: every waiter wakes with revoked.
  {
    const poller = proc([EVENTS, 'poll', 'kro', 'ro', '4'], U2);
    const ready = await poller.line(/^ready /);
    const n = py(PY_NOTIFIER, ['kro', 'rw'], U1);
    const nl = await n.line(/^notified /);
    const all = await poller.line(/^all-notified$/);
    ok(ready === `ready seq=${seq} may_notify=0 notify_rc=-1` && nl === `notified ${seq + 1} True` && all !== undefined,
      'C: 4 ro leases (uid 1002) in the caller\'s own poll(2) loop wake on a Python notify (uid 1001); their notify is -EPERM', { seq, ready, nl, all, err: poller.stderrText + n.stderrText });
    for (const w of waiters) w.send('loop');
    await new Promise((r) => setTimeout(r, 2000)); // let the loops start waiting (not a timing assertion)
    await cli(['grant', 'revoke', kroRo]);
    const ends = [];
    for (const w of waiters) ends.push(await w.next((o) => o.event === 'loop-ended'));
    ok(ends[0] && same(ends[0].last, Array(3).fill({ type: 'revoked', reason: 'GRANT_REVOKED' })) && same(ends[0].counts, [1, 1, 1]) &&
        ends[1] && same(ends[1].last, [{ type: 'revoked', reason: 'GRANT_REVOKED' }]),
      'SDK: revoke while 4 leases (2 processes) wait: every waiter wakes with revoked GRANT_REVOKED', ends);
    const end = await poller.line(/^revoked /);
    ok(end === 'revoked n=4 reason=GRANT_REVOKED', 'C: revoke ends the 4 leases\' waits in the poll loop with GRANT_REVOKED', end || poller.stderrText);
    // The raw client ignores the notice: the broker revokes in the kernel
    // after the grace period, and EPOLLHUP on the region fd wakes its waiter.
    const woke = await raw.next((o) => o.event === 'woke' && o.revoked);
    ok(woke !== undefined, 'revoke while a client that ignores the notice waits: the kernel (EPOLLHUP) wakes it, revoked', woke || raw.out() + raw.stderrText);
  }

  // 6. Delete kev while an SDK (2 leases) and a Python asyncio waiter wait.
  {
    const deleted = node(WAITER, [runtimeDir, 'kev', 'ro', '2'], U1);
    const waiter = py(PY_ASYNC_WAITER, ['kev', '120'], U2);
    const dr = await deleted.next((o) => o.event === 'ready');
    const refused = await waiter.line(/^notify /);
    const ready = await waiter.line(/^ready /);
    const s0 = Number((ready || 'ready 0').split(' ')[1]);
    // One C notify: a single frame through the ring's producer side.
    const p = proc([EVENTS, 'ring', 'kev', 'producer', '1'], U1);
    const pe = await p.exited();
    const ev = await waiter.line(/^event notify/);
    deleted.send('loop');
    await new Promise((r) => setTimeout(r, 2000)); // let the loop start waiting (not a timing assertion)
    await cli(['region', 'delete', 'kev']);
    const end = await waiter.line(/^event revoked/);
    const we = await waiter.exited();
    const d = await deleted.next((o) => o.event === 'loop-ended');
    ok(refused === 'notify refused True' && dr && pe.code === 0 && ev === `event notify ${s0 + 1} 1` && end && we.code === 0,
      'Python asyncio ro waiter (uid 1002): notify refused (EPERM), wakes on a C notify (uid 1001), ends revoked when the region is deleted',
      { refused, ready, ev, end, we, err: waiter.stderrText });
    ok(d && same(d.last, Array(2).fill({ type: 'revoked', reason: 'REGION_DELETED' })) && same(d.counts, [1, 1]),
      'SDK: delete while 2 leases wait: every waiter wakes with revoked REGION_DELETED', d || deleted.stderrText);
  }
}

main()
  .catch((e) => ok(false, 'kmod events suite ran', e.stack))
  .finally(async () => {
    killChildren();
    const b = broker.proc;
    if (b && b.exitCode === null) {
      b.kill('SIGCONT');
      // kmod regions outlive the broker: delete them, or the module stays busy.
      for (const name of REGIONS) await cli(['region', 'delete', name]);
      for (let i = 0; i < 100; i++) {
        const r = await cli(['region', 'list', '-o', 'json']);
        if (r.code !== 0 || (JSON.parse(r.stdout.toString()).regions || []).length === 0) break;
        await new Promise((res) => setTimeout(res, 200));
      }
      b.kill('SIGTERM');
      await new Promise((r) => b.once('exit', r));
    }
    fs.rmSync(work, { recursive: true, force: true });
    finish();
  });
