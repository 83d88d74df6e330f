// Region doorbells end to end (docs/ARCHITECTURE.md, "Region events"): real
// broker, real SDK clients of other uids, notifies that never go through
// the broker. A ring buffer passes frames between two uids; notifies are
// broadcast and coalesced with a sequence; a wait-only lease cannot notify,
// even by attacking its event page fd; revocation, deletion and release wake
// every waiter; idle waiters cost no CPU.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, NodeChild, REPO } from './support/broker-process';
// The ring and waiter programs are shared with the kmod VM suite
// (test/vm/kmod-events.vm-test.js), which runs them against the kernel's doorbell.
import programs from './support/event-programs.js';

const BACKEND = process.env.SHMBROKER_TEST_BACKEND ?? 'memfd';

const { RING, WAITER } = programs as { RING: string; WAITER: string };

/** README.md's doorbell example, verbatim: the first js block under "### Doorbells". */
function readmeDoorbellExample(): string {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Doorbells'));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error('README.md has no js block under "### Doorbells"');
  return m[1]!;
}

describe(`region events (${BACKEND})`, () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: BACKEND });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it("README's doorbell example, verbatim, is the consumer (uid 1002) of the ring's producer (uid 1001)", async () => {
    // Its own broker: the example names its region 'ring'.
    const own = await BrokerProcess.start({ backend: BACKEND });
    const frames = 500;
    await own.json(['region', 'create', 'ring', '--size', '64KiB']);
    await own.json(['grant', 'create', 'ring', '--uid', '1001', '--mode', 'rw']);
    await own.json(['grant', 'create', 'ring', '--uid', '1002', '--mode', 'rw']);
    const consumer = new NodeChild(
      `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
(async () => {
  const client = await connect({ runtimeDir: process.argv[2] });
  const total = Number(process.argv[3]);
${readmeDoorbellExample()}
  report({ event: 'done', tail: Atomics.load(new Uint32Array(region.buffer, 0, 2), 1) });
  await region.release();
  client.close();
})().catch((e) => { report({ event: 'error', message: e.message }); process.exit(3); });`,
      { uid: 1002, args: [own.runtimeDir, String(frames)] },
    );
    const producer = new NodeChild(RING, { uid: 1001, args: [own.runtimeDir, 'ring', 'producer', String(frames)] });
    try {
      expect(await consumer.next((o) => o.event === 'done' || o.event === 'error', 60_000)).toEqual({ event: 'done', tail: frames });
      expect(await producer.next((o) => o.event === 'done' || o.event === 'error' || o.event === 'stuck', 60_000)).toMatchObject({ event: 'done' });
    } finally {
      consumer.kill();
      producer.kill();
      await own.cleanup();
    }
  });

  it('two uids pass frames through a ring buffer with doorbells', async () => {
    await broker.json(['region', 'create', 'ring', '--size', '64KiB']);
    await broker.json(['grant', 'create', 'ring', '--uid', '1001', '--mode', 'rw']);
    await broker.json(['grant', 'create', 'ring', '--uid', '1002', '--mode', 'rw']);
    const frames = 3000;
    // The producer starts once the consumer holds its lease, so the consumer
    // meets an empty ring and sleeps on the doorbell (started side by side, a
    // producer that won the race could stay ahead all the way: the kmod twin
    // of this test saw consumer wakes 0 in CI).
    const consumer = new NodeChild(RING, { uid: 1002, args: [broker.runtimeDir, 'ring', 'consumer', String(frames)] });
    let producer: NodeChild | undefined;
    try {
      expect(await consumer.next((o) => o.event === 'ready')).toEqual({ event: 'ready', mayNotify: true, backend: BACKEND });
      producer = new NodeChild(RING, { uid: 1001, args: [broker.runtimeDir, 'ring', 'producer', String(frames)] });
      const got = await consumer.next((o) => o.event !== 'ready', 60_000);
      expect(got).toMatchObject({ event: 'done', bad: 0, sum: (frames * (frames - 1)) / 2 });
      const pgot = await producer.next((o) => o.event === 'done', 60_000);
      expect(pgot).toMatchObject({ bad: 0 });
      // The pair slept on the doorbell rather than spinning: every pass through wait() was a real notify.
      expect(got.wakes + pgot.wakes).toBeGreaterThan(0);
      expect(await consumer.exited()).toEqual({ code: 0, signal: null });
      expect(await producer.exited()).toEqual({ code: 0, signal: null });
    } finally {
      consumer.kill();
      producer?.kill();
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
        events: { mayNotify: false, pageVersion: 1, kernel: false },
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

  it('after the lease ended: events() yields how it ended and stops, seq keeps its last value, notify is LEASE_ENDED', async () => {
    // Reproducer: events() read the sequence from the closed doorbell first,
    // so a loop started after a revoke threw EBADF instead of yielding 'revoked'.
    await broker.json(['region', 'create', 'gone', '--size', '4KiB']);
    const g = await broker.json(['grant', 'create', 'gone', '--uid', '1002', '--mode', 'rw']);
    const revoked = new NodeChild(WAITER, { uid: 1002, args: [broker.runtimeDir, 'gone', 'rw'] });
    const released = new NodeChild(WAITER, { uid: 1002, args: [broker.runtimeDir, 'gone', 'rw'] });
    try {
      const ready = await revoked.next((o) => o.event === 'ready');
      await released.next((o) => o.event === 'ready');
      released.send('notify');
      const rung = await released.next((o) => o.event === 'notified');
      expect(rung.seq).toBe(ready.seq + 1);
      released.send('release');
      released.send('ended');
      expect(await released.next((o) => o.event === 'ended')).toEqual({
        event: 'ended',
        events: [],
        seq: rung.seq,
        notify: { code: 'FAILED_PRECONDITION', reason: 'LEASE_ENDED' },
      });
      revoked.send(`wait ${ready.seq}`);
      expect(await revoked.next((o) => o.event === 'woke')).toEqual({ event: 'woke', ev: { type: 'notify', seq: rung.seq, count: 1 } });
      expect((await broker.cli(['grant', 'revoke', g.name])).code).toBe(0);
      revoked.send(`wait ${rung.seq}`);
      expect(await revoked.next((o) => o.event === 'woke')).toEqual({ event: 'woke', ev: { type: 'revoked', reason: 'GRANT_REVOKED' } });
      revoked.send('ended');
      expect(await revoked.next((o) => o.event === 'ended' || o.event === 'error')).toEqual({
        event: 'ended',
        events: [{ type: 'revoked', reason: 'GRANT_REVOKED' }],
        seq: rung.seq,
        notify: { code: 'FAILED_PRECONDITION', reason: 'LEASE_ENDED' },
      });
    } finally {
      revoked.kill();
      released.kill();
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
