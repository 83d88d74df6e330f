'use strict';
// Child programs of the region-events tests, shared by test/region-events.test.ts
// (memfd, on the host, vitest) and test/vm/kmod-events.vm-test.js (kmod, in
// the VM, plain node): the same ring and waiter against either doorbell.
// Each runs with REPO and report() defined by the runner (NodeChild / child()).

// The ring: u32 head (frames written) at 0, u32 tail (frames read) at 4,
// 64 slots of 64 bytes from offset 64. Each side re-reads the indices after
// reading the sequence, so a notify between the two is never lost.
const RING = `
const SLOTS = 64, SLOT = 64, BASE = 64;
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
(async () => {
  // WAIT_MS: how long one wait may see nothing before the run counts as stuck
  // (the VM suite gives more: the other side may still be starting under TCG).
  const [dir, name, role, frames, waitMs = '20000'] = process.argv.slice(2);
  const client = await connect({ runtimeDir: dir });
  const region = await client.acquire(name, { mode: 'rw', shared: true, events: true });
  const idx = new Uint32Array(region.buffer, 0, 2);
  const bytes = new Uint8Array(region.buffer);
  report({ event: 'ready', mayNotify: region.mayNotify, backend: region.backend });
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
    const ev = await region.wait({ after: seen, timeoutMs: Number(waitMs) });
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
// "ended" (after the lease ended): what events(), seq and notify() give then.
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
    if (cmd === 'ended') {
      const after = [];
      for await (const ev of region.events()) after.push(ev);
      let notify = 'ok';
      try { region.notify(); } catch (e) { notify = { code: e.code, reason: e.reason }; }
      report({ event: 'ended', events: after, seq: region.seq, notify });
    }
    if (cmd === 'notify') report({ event: 'notified', seq: region.notify() });
  });
})().catch((e) => { report({ event: 'error', message: e.message, reason: e.reason }); process.exit(3); });
`;

// The ring of clients/c/tests/shmb_events.c, consumed from Python (uses the
// binding's prelude: sys and shmbroker imported by the runner). Arguments:
// region, frames, and the wait timeout in seconds (20; the VM passes more).
const PY_RING_CONSUMER = `
import struct
c = shmbroker.Client()
r = c.acquire(sys.argv[1], 'rw', events=True)
frames = int(sys.argv[2])
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 20
buf = r.buf
total = bad = wakes = 0
i = 0
while i < frames:
    seen = r.seq
    head, tail = struct.unpack_from('<II', buf, 0)
    if tail < head:
        at = 64 + (tail % 64) * 64
        n = struct.unpack_from('<I', buf, at)[0]
        if n != tail or buf[at + 63] != (tail & 0xff):
            bad += 1
        total += n
        struct.pack_into('<I', buf, 4, tail + 1)
        r.notify()
        i += 1
        continue
    ev = r.wait(seen, timeout)
    if ev.type != 'notify':
        print('stuck', ev, head, tail, flush=True)
        sys.exit(4)
    wakes += 1
print('done sum=%d bad=%d wakes=%d backend=%s' % (total, bad, wakes, r.backend), flush=True)
del buf
r.release()
c.close()
`;

// A read-only waiter in asyncio (selectors under the hood): says whether it
// may notify, wakes on notifies, ends with the revoked event.
//   argv: region, and the wait timeout in seconds (30; the VM passes more).
const PY_ASYNC_WAITER = `
import asyncio
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 30
async def main():
    c = shmbroker.Client()
    r = c.acquire(sys.argv[1], 'ro', events=True)
    try:
        r.notify()
        print('notify allowed', flush=True)
    except shmbroker.ShmbrokerError as e:
        print('notify refused', e.errno == 1, flush=True)
    print('ready', r.seq, flush=True)
    seq = r.seq
    while True:
        ev = await asyncio.wait_for(r.wait_async(seq), timeout)
        print('event', ev.type, ev.seq, ev.count, flush=True)
        if ev.type != 'notify':
            break
        seq = ev.seq
    r.release()
    c.close()
asyncio.run(main())
`;

// One notify: argv region and mode (rw unless given).
const PY_NOTIFIER = `
c = shmbroker.Client()
r = c.acquire(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else 'rw', events=True)
print('notified', r.notify(), r.may_notify, flush=True)
r.release()
c.close()
`;

module.exports = { RING, WAITER, PY_RING_CONSUMER, PY_ASYNC_WAITER, PY_NOTIFIER };
