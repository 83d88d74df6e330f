// Region doorbells end to end (docs/ARCHITECTURE.md, "Region events"): real
// broker, real SDK clients of other uids, notifies that never go through
// the broker. A ring buffer passes frames between two uids; notifies are
// broadcast and coalesced with a sequence; a wait-only lease cannot notify,
// even by attacking its event page fd; revocation, deletion and release wake
// every waiter; idle waiters cost no CPU.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, NodeChild } from './support/broker-process';

const BACKEND = process.env.SHMBROKER_TEST_BACKEND ?? 'memfd';

// The ring: u32 head (frames written) at 0, u32 tail (frames read) at 4,
// 64 slots of 64 bytes from offset 64. Each side re-reads the indices after
// reading the sequence, so a notify between the two is never lost.
const RING = `
const SLOTS = 64, SLOT = 64, BASE = 64;
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
(async () => {
  const [dir, name, role, frames] = process.argv.slice(2);
  const client = await connect({ runtimeDir: dir });
  const region = await client.acquire(name, { mode: 'rw', shared: true, events: true });
  const idx = new Uint32Array(region.buffer, 0, 2);
  const bytes = new Uint8Array(region.buffer);
  report({ event: 'ready', mayNotify: region.mayNotify });
  const total = Number(frames);
  let sum = 0, wakes = 0, bad = 0;
  for (let i = 0; i < total; ) {
    const seen = region.seq;
    const head = Atomics.load(idx, 0), tail = Atomics.load(idx, 1);
    if (role === 'producer' && head - tail < SLOTS) {
      const at = BASE + (head % SLOTS) * SLOT;
      bytes.fill(head & 0xff, at, at + SLOT);
      new DataView(region.buffer).setUint32(at, head, true);
      Atomics.store(idx, 0, head + 1);
      region.notify();
      i++;
      continue;
    }
    if (role === 'consumer' && tail < head) {
      const at = BASE + (tail % SLOTS) * SLOT;
      const n = new DataView(region.buffer).getUint32(at, true);
      if (n !== tail || bytes[at + SLOT - 1] !== (tail & 0xff)) bad++;
      sum += n;
      Atomics.store(idx, 1, tail + 1);
      region.notify();
      i++;
      continue;
    }
    const ev = await region.wait({ after: seen, timeoutMs: 20000 });
    if (ev.type !== 'notify') { report({ event: 'stuck', ev, head, tail }); process.exit(4); }
    wakes++;
  }
  report({ event: 'done', sum, bad, wakes });
  await region.release();
  client.close();
})().catch((e) => { report({ event: 'error', message: e.message, reason: e.reason }); process.exit(3); });
`;

// A waiter: acquires (ro or rw), reports its lease's abilities, then reports
// every event until the loop ends. "wait N [T]" waits once with after=N (timeout T ms).
const WAITER = `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
const readline = require('node:readline');
(async () => {
  const [dir, name, mode, count] = process.argv.slice(2);
  const client = await connect({ runtimeDir: dir });
  const regions = [];
  for (let i = 0; i < Number(count || 1); i++) regions.push(await client.acquire(name, { mode, events: true }));
  const region = regions[0];
  let notifyError = null;
  if (mode === 'ro') { try { region.notify(); } catch (e) { notifyError = { code: e.code, reason: e.reason }; } }
  report({ event: 'ready', seq: region.seq, mayNotify: region.mayNotify, notifyError });
  readline.createInterface({ input: process.stdin }).on('line', async (line) => {
    const [cmd, arg, timeoutMs] = line.split(' ');
    if (cmd === 'wait') report({ event: 'woke', ev: await region.wait({ after: Number(arg), timeoutMs: Number(timeoutMs || 15000) }) });
    if (cmd === 'loop') {
      const evs = await Promise.all(regions.map(async (r) => { const got = []; for await (const ev of r.events()) got.push(ev); return got; }));
      report({ event: 'loop-ended', last: evs.map((e) => e[e.length - 1]), counts: evs.map((e) => e.length) });
      client.close();
    }
    if (cmd === 'release') await region.release();
    if (cmd === 'notify') report({ event: 'notified', seq: region.notify() });
  });
})().catch((e) => { report({ event: 'error', message: e.message, reason: e.reason }); process.exit(3); });
`;

describe(`region events (${BACKEND})`, () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: BACKEND });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('two uids pass frames through a ring buffer with doorbells', async () => {
    await broker.json(['region', 'create', 'ring', '--size', '64KiB']);
    await broker.json(['grant', 'create', 'ring', '--uid', '1001', '--mode', 'rw']);
    await broker.json(['grant', 'create', 'ring', '--uid', '1002', '--mode', 'rw']);
    const frames = 3000;
    const consumer = new NodeChild(RING, { uid: 1002, args: [broker.runtimeDir, 'ring', 'consumer', String(frames)] });
    const producer = new NodeChild(RING, { uid: 1001, args: [broker.runtimeDir, 'ring', 'producer', String(frames)] });
    try {
      expect(await consumer.next((o) => o.event === 'ready')).toEqual({ event: 'ready', mayNotify: true });
      const got = await consumer.next((o) => o.event !== 'ready', 60_000);
      expect(got).toMatchObject({ event: 'done', bad: 0, sum: (frames * (frames - 1)) / 2 });
      // It slept between frames rather than spinning: each pass through wait() was a real notify.
      expect(got.wakes).toBeGreaterThan(0);
      expect(await producer.next((o) => o.event === 'done', 60_000)).toMatchObject({ bad: 0 });
      expect(await consumer.exited()).toEqual({ code: 0, signal: null });
      expect(await producer.exited()).toEqual({ code: 0, signal: null });
    } finally {
      consumer.kill();
      producer.kill();
    }
  });

  it('broadcast and coalescing: every waiter wakes, with the sequence telling how many notifies it covered', async () => {
    await broker.json(['region', 'create', 'bc', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'bc', '--uid', '1001', '--mode', 'rw']);
    await broker.json(['grant', 'create', 'bc', '--uid', '1002', '--mode', 'ro']);
    const notifier = new NodeChild(WAITER, { uid: 1001, args: [broker.runtimeDir, 'bc', 'rw'] });
    const waiters = [0, 1, 2].map(() => new NodeChild(WAITER, { uid: 1002, args: [broker.runtimeDir, 'bc', 'ro'] }));
    try {
      expect(await notifier.next((o) => o.event === 'ready')).toMatchObject({ seq: 0, mayNotify: true });
      for (const w of waiters) {
        // Wait-only: may not notify.
        expect(await w.next((o) => o.event === 'ready')).toEqual({
          event: 'ready',
          seq: 0,
          mayNotify: false,
          notifyError: { code: 'PERMISSION_DENIED', reason: 'NOTIFY_NOT_ALLOWED' },
        });
      }
      for (const w of waiters) w.send('wait 0');
      // Nothing moved: no waiter reports before the notify (checked after it, through the event order).
      notifier.send('notify');
      expect(await notifier.next((o) => o.event === 'notified')).toEqual({ event: 'notified', seq: 1 });
      for (const w of waiters) expect(await w.next((o) => o.event === 'woke')).toEqual({ event: 'woke', ev: { type: 'notify', seq: 1, count: 1 } });
      // Five notifies while nobody waits: the next wait returns at once and covers them all.
      for (let i = 0; i < 5; i++) notifier.send('notify');
      expect(await notifier.next((o) => o.event === 'notified' && o.seq === 6)).toBeTruthy();
      for (const w of waiters) w.send('wait 1');
      for (const w of waiters) expect(await w.next((o) => o.event === 'woke')).toEqual({ event: 'woke', ev: { type: 'notify', seq: 6, count: 5 } });
      // A wait on the current sequence times out when nobody rings.
      waiters[0]!.send('wait 6 500');
      expect(await waiters[0]!.next((o) => o.event === 'woke', 30_000)).toEqual({ event: 'woke', ev: { type: 'timeout', seq: 6 } });
    } finally {
      for (const c of [notifier, ...waiters]) c.kill();
    }
  });

  it('a read-only grant made with --allow-notify may notify; without it, it may not', async () => {
    await broker.json(['region', 'create', 'ron', '--size', '4KiB']);
    const g = await broker.json(['grant', 'create', 'ron', '--uid', '1002', '--mode', 'ro', '--allow-notify']);
    expect(g.allowNotify).toBe(true);
    const plain = await broker.json(['grant', 'create', 'ron', '--uid', '1001', '--mode', 'ro']);
    expect(plain.allowNotify ?? false).toBe(false);
    const ringer = new NodeChild(WAITER, { uid: 1002, args: [broker.runtimeDir, 'ron', 'ro'] });
    const waiter = new NodeChild(WAITER, { uid: 1001, args: [broker.runtimeDir, 'ron', 'ro'] });
    try {
      expect(await ringer.next((o) => o.event === 'ready')).toMatchObject({ mayNotify: true, notifyError: null });
      expect(await waiter.next((o) => o.event === 'ready')).toMatchObject({ mayNotify: false, notifyError: { reason: 'NOTIFY_NOT_ALLOWED' } });
      // The ready probe of the ringer already notified once (seq 1).
      waiter.send('wait 1');
      ringer.send('notify');
      expect(await ringer.next((o) => o.event === 'notified')).toEqual({ event: 'notified', seq: 2 });
      expect(await waiter.next((o) => o.event === 'woke')).toEqual({ event: 'woke', ev: { type: 'notify', seq: 2, count: 1 } });
    } finally {
      ringer.kill();
      waiter.kill();
    }
  });

  it('a wait-only lease cannot make its event page writable (raw data-plane client of another uid)', async () => {
    await broker.json(['region', 'create', 'ropage', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'ropage', '--uid', '1002', '--mode', 'ro']);
    const ATTACK = `
const native = require(REPO + '/dist/native/index.js');
const { dataReplyCodec, dataRequestCodec } = require(REPO + '/dist/proto/load.js');
const fs = require('node:fs');
const sock = native.SeqpacketSocket.connect(process.argv[2] + '/data.sock', { maxPacket: 4097, maxFds: 4 });
sock.on('message', (data, fds) => {
  const reply = dataReplyCodec().decode(data);
  const out = { events: reply.acquire && reply.acquire.events, fds: fds.length };
  const page = fds[1];
  const attempt = (f) => { try { f(); return 'ok'; } catch (e) { return e.code; } };
  out.mapWritable = attempt(() => native.Mapping.map(page, { length: 4096, writable: true }));
  out.reopenWritable = attempt(() => fs.openSync('/proc/self/fd/' + page, 'r+'));
  out.pwrite = attempt(() => fs.writeSync(page, Buffer.alloc(8, 0xff), 0, 8, 8));
  out.fchmod = attempt(() => fs.fchmodSync(page, 0o666));
  out.mapReadOnly = attempt(() => native.Mapping.map(page, { length: 4096, writable: false }));
  report(out);
  process.exit(0);
});
sock.send(dataRequestCodec().encode({ requestId: 1, acquire: { region: 'ropage', mode: 'ACCESS_MODE_READ_ONLY', wantEvents: true } }));
`;
    const child = new NodeChild(ATTACK, { uid: 1002, args: [broker.runtimeDir] });
    try {
      expect(await child.next()).toEqual({
        events: { mayNotify: false, pageVersion: 1 },
        fds: 3,
        mapWritable: 'EACCES',
        reopenWritable: 'EACCES',
        pwrite: 'EBADF',
        fchmod: 'EPERM',
        mapReadOnly: 'ok',
      });
    } finally {
      child.kill();
    }
  });

  it('revoke, delete and release wake every waiter with the matching event', async () => {
    await broker.json(['region', 'create', 'rv', '--size', '4KiB']);
    const g = await broker.json(['grant', 'create', 'rv', '--uid', '1002', '--mode', 'ro']);
    await broker.json(['grant', 'create', 'rv', '--uid', '1001', '--mode', 'ro']);
    const revoked = new NodeChild(WAITER, { uid: 1002, args: [broker.runtimeDir, 'rv', 'ro', '3'] });
    const deleted = new NodeChild(WAITER, { uid: 1001, args: [broker.runtimeDir, 'rv', 'ro', '2'] });
    const released = new NodeChild(WAITER, { uid: 1001, args: [broker.runtimeDir, 'rv', 'ro'] });
    try {
      for (const c of [revoked, deleted, released]) await c.next((o) => o.event === 'ready');
      released.send('wait 0');
      released.send('release');
      expect(await released.next((o) => o.event === 'woke')).toEqual({ event: 'woke', ev: { type: 'released' } });
      revoked.send('loop');
      deleted.send('loop');
      await new Promise((r) => setTimeout(r, 300)); // let the loops start waiting (not a timing assertion)
      expect((await broker.cli(['grant', 'revoke', g.name])).code).toBe(0);
      expect(await revoked.next((o) => o.event === 'loop-ended')).toEqual({
        event: 'loop-ended',
        last: Array(3).fill({ type: 'revoked', reason: 'GRANT_REVOKED' }),
        counts: [1, 1, 1],
      });
      expect((await broker.cli(['region', 'delete', 'rv'])).code).toBe(0);
      expect(await deleted.next((o) => o.event === 'loop-ended')).toEqual({
        event: 'loop-ended',
        last: Array(2).fill({ type: 'revoked', reason: 'REGION_DELETED' }),
        counts: [1, 1],
      });
    } finally {
      for (const c of [revoked, deleted, released]) c.kill();
    }
  });

  it('64 idle waiters use no CPU', async () => {
    await broker.json(['region', 'create', 'idle', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'idle', '--uid', '1002', '--mode', 'ro']);
    // 4 processes x 16 leases, each lease in a for-await loop.
    const children = [0, 1, 2, 3].map(() => new NodeChild(WAITER, { uid: 1002, args: [broker.runtimeDir, 'idle', 'ro', '16'] }));
    try {
      for (const c of children) await c.next((o) => o.event === 'ready');
      for (const c of children) c.send('loop');
      await new Promise((r) => setTimeout(r, 500));
      const ticks = (): number =>
        children.reduce((sum, c) => {
          const f = fs.readFileSync(`/proc/${c.proc.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
          return sum + Number(f[11]) + Number(f[12]); // utime + stime
        }, 0);
      const before = ticks();
      await new Promise((r) => setTimeout(r, 5000));
      const used = ticks() - before;
      // A spinning waiter would use ~500 ticks per core over 5 s; idle ones use
      // only what Node's own housekeeping needs.
      expect(used).toBeLessThanOrEqual(10);
    } finally {
      for (const c of children) c.kill();
    }
  }, 30_000);
});
