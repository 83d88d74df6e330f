// memfd and Mapping against the real kernel (tests run as root; the attack
// cases run a child as uid 1001).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bindingPath, closeFd, getSeals, Mapping, memfdCreate, NativeError, PAGE_SIZE, SEAL } from './index';

const CHILD = path.join(__dirname, 'test-child.js');

function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd');
}

let fdsBefore: number;
beforeAll(() => {
  fdsBefore = openFds().length;
});
afterAll(() => {
  expect(openFds().length).toBe(fdsBefore);
});

function expectNativeError(fn: () => unknown, code: string, syscall?: string): NativeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NativeError);
    const e = err as NativeError;
    expect(e.code).toBe(code);
    if (syscall !== undefined) expect(e.syscall).toBe(syscall);
    return e;
  }
  throw new Error(`expected NativeError ${code}`);
}

describe('memfdCreate', () => {
  it('creates a sealed memfd of mode 0600 and the asked size', () => {
    const fd = memfdCreate('shmbroker-test', 3 * PAGE_SIZE);
    try {
      const st = fs.fstatSync(fd);
      expect(st.mode & 0o7777).toBe(0o600);
      expect(st.size).toBe(3 * PAGE_SIZE);
      expect(getSeals(fd)).toBe(SEAL.SHRINK | SEAL.GROW | SEAL.SEAL);
      expect(fs.readlinkSync(`/proc/self/fd/${fd}`)).toBe('/memfd:shmbroker-test (deleted)');
      // MFD_CLOEXEC: flags in fdinfo are octal, O_CLOEXEC = 02000000
      const flags = /flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
      expect(parseInt(flags, 8) & 0o2000000).toBe(0o2000000);
    } finally {
      closeFd(fd);
    }
  });

  it('cannot be shrunk or grown once sealed, but can be written', () => {
    const fd = memfdCreate('sealed', PAGE_SIZE);
    try {
      expect(() => fs.ftruncateSync(fd, 0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(() => fs.ftruncateSync(fd, 2 * PAGE_SIZE)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(() => fs.writeSync(fd, Buffer.from('x'), 0, 1, PAGE_SIZE)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(fs.writeSync(fd, Buffer.from('ok'), 0, 2, 0)).toBe(2);
      expect(fs.fstatSync(fd).size).toBe(PAGE_SIZE);
    } finally {
      closeFd(fd);
    }
  });

  it('throws a NativeError with code, errno, syscall and message', () => {
    const e = expectNativeError(() => getSeals(987654), 'EBADF', 'fcntl(F_GET_SEALS)');
    expect(e.errno).toBe(9);
    expect(e.message).toBe('fcntl(F_GET_SEALS): Bad file descriptor (EBADF)');
    expect(e.name).toBe('NativeError');
    expect(e).toBeInstanceOf(Error);
    const devnull = fs.openSync('/dev/null', 'r');
    try {
      expectNativeError(() => getSeals(devnull), 'EINVAL', 'fcntl(F_GET_SEALS)');
    } finally {
      fs.closeSync(devnull);
    }
    expectNativeError(() => closeFd(987654), 'EBADF', 'close');
  });

  it('closes the memfd when a step after memfd_create fails (no fd leaked)', () => {
    const before = openFds().length;
    // hugetlb memfds only take huge-page multiples: ftruncate(1) fails (or
    // memfd_create itself when the kernel has no hugetlbfs).
    const e = expectNativeError(() => memfdCreate('huge', 1, { hugetlb: true }), 'EINVAL');
    expect(['ftruncate', 'memfd_create']).toContain(e.syscall);
    expect(openFds().length).toBe(before);
  });
});

describe('Mapping', () => {
  it('round-trips bytes between two mappings of one memfd, and honours offset', () => {
    const fd = memfdCreate('roundtrip', 2 * PAGE_SIZE);
    const a = Mapping.map(fd, { length: 2 * PAGE_SIZE, writable: true });
    const b = Mapping.map(fd, { length: 2 * PAGE_SIZE, writable: false });
    const c = Mapping.map(fd, { length: PAGE_SIZE, writable: false, offset: PAGE_SIZE });
    closeFd(fd); // mappings outlive the fd
    try {
      expect(a.buffer).toBeInstanceOf(ArrayBuffer);
      expect(a.buffer.byteLength).toBe(2 * PAGE_SIZE);
      expect([a.length, a.writable, a.shared, a.released]).toEqual([2 * PAGE_SIZE, true, false, false]);
      expect(b.writable).toBe(false);
      const wa = new Uint8Array(a.buffer);
      wa.set(Buffer.from('hello shm'), 0);
      wa[PAGE_SIZE] = 0x5a;
      expect(Buffer.from(b.buffer, 0, 9).toString()).toBe('hello shm');
      expect(new Uint8Array(c.buffer)[0]).toBe(0x5a);
    } finally {
      a.release();
      b.release();
      c.release();
    }
  });

  it('refuses to map past the end of a memfd (would SIGBUS on touch)', () => {
    const fd = memfdCreate('short', PAGE_SIZE);
    try {
      expect(() => Mapping.map(fd, { length: 2 * PAGE_SIZE, writable: false })).toThrow(RangeError);
      expect(() => Mapping.map(fd, { length: PAGE_SIZE, writable: false, offset: PAGE_SIZE })).toThrow(
        /options\.offset \+ options\.length \(8192\) exceeds the size of the file \(4096 bytes\)/,
      );
      Mapping.map(fd, { length: 100, writable: false }).release(); // a partial page is fine
    } finally {
      closeFd(fd);
    }
  });

  it('release() detaches the ArrayBuffer (byteLength 0); a second release is a no-op', () => {
    const fd = memfdCreate('release', PAGE_SIZE);
    const m = Mapping.map(fd, { length: PAGE_SIZE, writable: true });
    closeFd(fd);
    const view = new Uint8Array(m.buffer);
    view[0] = 1;
    const mapsBefore = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('memfd:release')).length;
    expect(mapsBefore).toBe(1);
    m.release();
    expect(m.released).toBe(true);
    expect(m.buffer.byteLength).toBe(0);
    expect(view.length).toBe(0);
    expect(view[0]).toBeUndefined();
    m.release();
    expect(m.released).toBe(true);
    const mapsAfter = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('memfd:release')).length;
    expect(mapsAfter).toBe(0);
    expectNativeError(() => m.protect('read'), 'EBADF', 'mprotect');
  });

  it('shared: true gives a SharedArrayBuffer that works with Atomics; release leaves a zero view', () => {
    const fd = memfdCreate('sab', PAGE_SIZE);
    const s = Mapping.map(fd, { length: PAGE_SIZE, writable: true, shared: true });
    const other = Mapping.map(fd, { length: PAGE_SIZE, writable: true });
    closeFd(fd);
    try {
      expect(s.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(s.shared).toBe(true);
      const i32 = new Int32Array(s.buffer);
      expect(Atomics.add(i32, 0, 5)).toBe(0);
      expect(Atomics.compareExchange(i32, 0, 5, 42)).toBe(5);
      expect(Atomics.load(i32, 0)).toBe(42);
      expect(Atomics.notify(i32, 0, 1)).toBe(0);
      expect(new Int32Array(other.buffer)[0]).toBe(42); // same pages
      new Int32Array(other.buffer)[1] = 7;
      expect(Atomics.load(i32, 1)).toBe(7);

      s.release();
      expect(s.released).toBe(true);
      expect(s.buffer.byteLength).toBe(PAGE_SIZE); // a SAB cannot be detached
      expect(Atomics.load(i32, 0)).toBe(0); // zero pages, no fault
      expect(i32.every((v) => v === 0)).toBe(true);
      Atomics.store(i32, 0, 99); // private pages: does not reach the region
      expect(new Int32Array(other.buffer)[0]).toBe(42);
      s.release(); // no-op
    } finally {
      other.release();
    }
  });

  it('a read-only mapping can be protected to none/read but writes need a writable fd', () => {
    const fd = memfdCreate('prot', PAGE_SIZE);
    const ro = fs.openSync(`/proc/self/fd/${fd}`, 'r');
    try {
      const w = Mapping.map(fd, { length: PAGE_SIZE, writable: true });
      w.protect('read');
      w.protect('none');
      w.protect('readwrite');
      new Uint8Array(w.buffer)[0] = 3;
      w.release();

      // Even root cannot map an O_RDONLY fd writable (MAP_SHARED needs FMODE_WRITE)
      expectNativeError(() => Mapping.map(ro, { length: PAGE_SIZE, writable: true }), 'EACCES', 'mmap');
      const r = Mapping.map(ro, { length: PAGE_SIZE, writable: false });
      expect(new Uint8Array(r.buffer)[0]).toBe(3);
      expectNativeError(() => r.protect('readwrite'), 'EACCES', 'mprotect');
      r.protect('none');
      r.release();
    } finally {
      fs.closeSync(ro);
      closeFd(fd);
    }
  });

  it('a process of another uid holding an O_RDONLY fd cannot get write access', () => {
    const fd = memfdCreate('ro-attack', PAGE_SIZE);
    fs.writeSync(fd, Buffer.from([0xab]), 0, 1, 0);
    const ro = fs.openSync(`/proc/self/fd/${fd}`, 'r');
    try {
      const r = spawnSync(process.execPath, [CHILD, bindingPath, 'ro-attack', String(PAGE_SIZE)], {
        uid: 1001,
        gid: 1001,
        stdio: ['pipe', 'pipe', 'pipe', ro],
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const res = JSON.parse(r.stdout);
      expect(res.uid).toBe(1001);
      expect(res.gid).toBe(1001);
      expect(res.mapWritable).toMatchObject({ ok: false, code: 'EACCES', syscall: 'mmap' });
      expect(res.mapReadOnly).toEqual({ ok: true, value: 0xab });
      expect(res.protectReadWrite).toMatchObject({ ok: false, code: 'EACCES', syscall: 'mprotect' });
      expect(res.reopenRdwr).toMatchObject({ ok: false, code: 'EACCES' });
      expect(res.reopenRdonly).toMatchObject({ ok: false, code: 'EACCES' }); // mode 0600, owner root
      expect(res.fchmod).toMatchObject({ ok: false, code: 'EPERM' });
      expect(res.ftruncate.ok).toBe(false);
    } finally {
      fs.closeSync(ro);
      closeFd(fd);
    }
  });

  it('a 64 MiB plain ArrayBuffer is not counted as external memory: map/release cycles do not force Mark-Compacts', async () => {
    const { PerformanceObserver, constants } = await import('node:perf_hooks');
    const size = 64 * 1024 * 1024;
    const fd = memfdCreate('gc-pressure', size);
    let majors = 0;
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
    });
    obs.observe({ entryTypes: ['gc'] });
    try {
      for (let i = 0; i < 100; i++) {
        const m = Mapping.map(fd, { length: size, writable: true });
        new Uint8Array(m.buffer)[i] = 1;
        m.release();
        if (i % 10 === 9) await new Promise((r) => setImmediate(r)); // let the GC entries arrive
      }
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      obs.disconnect();
      closeFd(fd);
    }
    // With the length counted as external memory, nearly every cycle forced one (about 40 to 80 per 100).
    expect(majors).toBeLessThanOrEqual(5);
  });

  it('a plain ArrayBuffer mapping cannot be transferred away from its Mapping (only release() detaches it)', () => {
    const fd = memfdCreate('no-transfer', PAGE_SIZE);
    try {
      const m = Mapping.map(fd, { length: PAGE_SIZE, writable: true });
      const buf = m.buffer as ArrayBuffer;
      new Uint8Array(buf)[0] = 7;
      // Marked untransferable: Node copies it instead (or, in newer Node, refuses); never detaches it.
      let copy: ArrayBuffer | undefined;
      try {
        copy = structuredClone(buf, { transfer: [buf] });
      } catch (err) {
        expect((err as Error).name).toBe('DataCloneError');
      }
      if (copy) expect(new Uint8Array(copy)[0]).toBe(7);
      expect(buf.byteLength).toBe(PAGE_SIZE);
      expect(new Uint8Array(buf)[0]).toBe(7);
      m.release();
      expect(buf.byteLength).toBe(0);
    } finally {
      closeFd(fd);
    }
  });

  it('a buffer dropped without release() is unmapped by its deleter', async () => {
    const count = () =>
      fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('memfd:gc-probe')).length;
    const fd = memfdCreate('gc-probe', PAGE_SIZE);
    (() => {
      for (let i = 0; i < 8; i++) {
        Mapping.map(fd, { length: PAGE_SIZE, writable: true });
        Mapping.map(fd, { length: PAGE_SIZE, writable: true, shared: true });
      }
    })();
    closeFd(fd);
    expect(count()).toBe(16);
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc === undefined) {
      // Without --expose-gc, pressure the heap until the collector runs.
      for (let round = 0; round < 50 && count() > 0; round++) {
        for (let i = 0; i < 200; i++) new ArrayBuffer(1024 * 1024);
        await new Promise((r) => setTimeout(r, 20));
      }
    } else {
      for (let round = 0; round < 20 && count() > 0; round++) {
        gc();
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    expect(count()).toBe(0);
  });
});
