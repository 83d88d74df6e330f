// The addon across threads: SharedArrayBuffer mappings shared with a worker,
// and worker termination with handles still open (nothing leaks, no crash).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

import { bindingPath, closeFd, Mapping, memfdCreate, PAGE_SIZE } from './index';

const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

function runWorker(code: string, workerData: unknown): Worker {
  return new Worker(code, { eval: true, workerData });
}

describe('threads', () => {
  it('a SharedArrayBuffer mapping works with Atomics across a worker, and release zeroes it for the worker too', async () => {
    const fd = memfdCreate('threads-sab', PAGE_SIZE);
    const m = Mapping.map(fd, { length: PAGE_SIZE, writable: true, shared: true });
    const probe = Mapping.map(fd, { length: PAGE_SIZE, writable: false });
    closeFd(fd);
    const i32 = new Int32Array(m.buffer);
    const w = runWorker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      const i32 = new Int32Array(workerData.sab);
      for (let k = 0; k < 100000; k++) Atomics.add(i32, 0, 1);
      Atomics.store(i32, 1, 1);
      Atomics.notify(i32, 1);
      parentPort.once('message', () => {
        // after release() in the main thread: zero pages, no fault
        parentPort.postMessage({ after: Atomics.load(i32, 0), len: i32.length });
      });
      `,
      { sab: m.buffer },
    );
    const exited = new Promise((r) => w.once('exit', r));
    for (let k = 0; k < 100000; k++) Atomics.add(i32, 0, 1);
    while (Atomics.load(i32, 1) !== 1) await new Promise((r) => setTimeout(r, 5));
    expect(Atomics.load(i32, 0)).toBe(200000);
    expect(new Int32Array(probe.buffer)[0]).toBe(200000); // it is the region
    m.release();
    const reply = new Promise<{ after: number; len: number }>((r) => w.once('message', r));
    w.postMessage('released');
    expect(await reply).toEqual({ after: 0, len: PAGE_SIZE / 4 });
    expect(new Int32Array(probe.buffer)[0]).toBe(200000); // the region itself is untouched
    await w.terminate();
    await exited;
    probe.release();
  });

  it('terminating a worker with open sockets, a server and mappings leaks no fd', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmb-threads-'));
    const before = openFds();
    const w = runWorker(
      `
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.bindingPath);
      const srv = b.SeqpacketServer.listen(workerData.sock, 16, 65536, 8);
      srv.start((ev, s) => {
        if (ev === 'connection') { s.start(() => {}); s.send(Buffer.from('hi')); }
      });
      const c = b.SeqpacketSocket.connect(workerData.sock, 65536, 8);
      const fd = b.memfdCreate('worker', 4096, false);
      globalThis.keep = [b.Mapping.map(fd, 4096, true, true, 0), b.Mapping.map(fd, 4096, true, false, 0)];
      c.start((ev, data) => {
        if (ev !== 'message') return;
        for (let i = 0; i < 2000; i++) c.send(Buffer.alloc(1024)); // leave packets queued
        c.send(Buffer.from('x'), [fd]); // queued behind the others: holds a dup of fd
        b.closeFd(fd);
        parentPort.postMessage(data.toString());
      });
      `,
      { bindingPath, sock: path.join(dir, 'w.sock') },
    );
    const msg = await new Promise((r) => w.once('message', r));
    expect(msg).toBe('hi');
    await w.terminate();
    for (let i = 0; i < 100 && openFds() > before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(openFds()).toBe(before);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  it('terminating a worker while packets with fds pour in: no abort, nothing leaks (30 rounds, in a child process)', () => {
    // A worker's environment that is shutting down refuses every Node-API
    // call; the socket's read loop used to turn the refusal into a thrown
    // exception, which node-addon-api makes a fatal error from a libuv
    // callback ("Error::ThrowAsJavaScriptException napi_throw", abort).
    // Found by CI in the test above under load; this forces the window: a
    // flood of packets, each with an fd, while the worker is terminated.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmb-threads-flood-'));
    const script = `
      const { Worker } = require('node:worker_threads');
      const fs = require('node:fs');
      const b = require(${JSON.stringify(bindingPath)});
      const sock = ${JSON.stringify(path.join(dir, 'f.sock'))};
      const srv = b.SeqpacketServer.listen(sock, 16, 65536, 8);
      const conns = [];
      srv.start((ev, s) => { if (ev === 'connection') { s.start(() => {}); conns.push(s); } });
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      (async () => {
        const before = fds();
        for (let round = 0; round < 30; round++) {
          const w = new Worker(\`
            const { parentPort, workerData } = require('node:worker_threads');
            const b = require(workerData.bindingPath);
            const c = b.SeqpacketSocket.connect(workerData.sock, 65536, 8);
            let n = 0;
            c.start((ev, data, fds) => {
              if (ev !== 'message') return;
              for (const fd of fds) b.closeFd(fd);
              if (++n === 10) parentPort.postMessage('reading');
            });
          \`, { eval: true, workerData: { bindingPath: ${JSON.stringify(bindingPath)}, sock } });
          const fd = b.memfdCreate('flood', 4096, false);
          let flooding = true;
          const flood = () => {
            if (!flooding) return;
            // Once the worker is gone its connection is reset or closed.
            try {
              for (const s of conns) for (let i = 0; i < 64; i++) s.send(Buffer.alloc(512), [fd]);
            } catch (e) {
              if (!['EBADF', 'EPIPE', 'ECONNRESET'].includes(e.code)) throw e;
            }
            setImmediate(flood);
          };
          setTimeout(flood, 5);
          await new Promise((r) => w.once('message', r));
          await w.terminate();
          flooding = false;
          for (const s of conns.splice(0)) s.close();
          b.closeFd(fd);
        }
        srv.close();
        for (let i = 0; i < 100 && fds() > before; i++) await new Promise((r) => setTimeout(r, 20));
        process.stdout.write(JSON.stringify({ survived: true, leakedFds: fds() - before }));
      })();
    `;
    try {
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
      expect(r.stderr).not.toContain('FATAL ERROR');
      expect(r.signal).toBeNull();
      expect(JSON.parse(r.stdout || '{}')).toEqual({ survived: true, leakedFds: 0 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
