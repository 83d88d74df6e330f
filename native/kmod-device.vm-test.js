#!/usr/bin/env node
'use strict';
// KmodDevice against the real shmbroker kernel module. Run as root inside the
// test VM (test/vm/guest.d/20-native-kmod.sh), module loaded:
//
//   node native/kmod-device.vm-test.js [--device /dev/shmbroker]
//
// Prints one `ok N - what` / `not ok N - what: why` line per check (TAP),
// then `N passed, N failed`; exits 1 on any failure. Uses the compiled TS
// layer (dist/native/index.js) when it is there, else the raw binding through
// a thin adapter, so it needs neither npx nor a TypeScript loader.
//
// It never touches a mapping after its grant is revoked (that is SIGBUS by
// design): mappings are released first, as the SDK does.
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const DEVICE = (() => {
  const i = process.argv.indexOf('--device');
  return i > 0 ? process.argv[i + 1] : process.env.SHMBROKER_DEVICE || '/dev/shmbroker';
})();
const MiB = 1024 * 1024;
const O_CLOEXEC = 0o2000000;

function loadApi() {
  const dist = path.join(ROOT, 'dist', 'native', 'index.js');
  if (fs.existsSync(dist)) return { kind: 'dist/native/index.js', api: require(dist) };
  const b = require(path.join(ROOT, 'build', 'Release', 'shmbroker_native.node'));
  const wrapDevice = (h) => ({
    get fd() {
      return h.fd;
    },
    create: (size, o = {}) => h.create(size, !!o.hugepage, o.numaNode === undefined ? -1 : o.numaNode),
    openGrant: (id, o) => h.openGrant(id, !!o.readOnly, o.cloexec === undefined ? true : o.cloexec),
    revoke: (id) => h.revoke(id),
    destroy: (id) => h.destroy(id),
    info: (id) => h.info(id),
    list: () => h.list(),
    listGrants: (id) => h.listGrants(id),
    close: () => h.close(),
  });
  return {
    kind: 'build/Release/shmbroker_native.node',
    api: {
      KmodDevice: { open: (p) => wrapDevice(b.KmodDevice.open(p)) },
      Mapping: {
        map: (fd, o) => {
          const h = b.Mapping.map(fd, o.length, o.writable, !!o.shared, o.offset || 0);
          return {
            buffer: h.buffer,
            release: () => h.release(),
            protect: (p) => h.protect({ none: 0, read: 1, readwrite: 2 }[p]),
          };
        },
      },
      closeFd: b.closeFd,
      getSeals: b.getSeals,
    },
  };
}

let passed = 0;
let failed = 0;
let n = 0;
function check(what, fn) {
  n++;
  try {
    fn();
    passed++;
    console.log(`ok ${n} - ${what}`);
    return true;
  } catch (err) {
    failed++;
    const why = err && err.message ? err.message : String(err);
    console.log(`not ok ${n} - ${what}: ${why.split('\n')[0]}`);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
function eq(a, b, what) {
  if (a !== b) throw new Error(`${what}: expected ${String(b)}, got ${String(a)}`);
}
function throwsCode(fn, codes, what) {
  try {
    fn();
  } catch (err) {
    const list = Array.isArray(codes) ? codes : [codes];
    if (codes === '*' || list.includes(err.code)) return err;
    throw new Error(`${what}: expected ${list.join('|')}, got ${err.code} (${err.message})`);
  }
  throw new Error(`${what}: did not throw`);
}
function cloexecOf(fd) {
  const m = /flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return (parseInt(m[1], 8) & O_CLOEXEC) !== 0;
}
const fdCount = () => fs.readdirSync('/proc/self/fd').length;

function main() {
  console.log(`# device ${DEVICE}, uid ${process.getuid()}, node ${process.version}`);
  if (!fs.existsSync(DEVICE)) {
    console.log(`not ok 1 - ${DEVICE} exists (is the module loaded?)`);
    console.log('0 passed, 1 failed');
    return 1;
  }
  const { kind, api } = loadApi();
  console.log(`# using ${kind}`);
  const { KmodDevice, Mapping, closeFd } = api;
  const fdsBefore = fdCount();

  let dev;
  if (!check('open the device O_RDWR|O_CLOEXEC', () => {
    dev = KmodDevice.open(DEVICE);
    assert(dev.fd > 2, `fd ${dev.fd}`);
    assert(cloexecOf(dev.fd), 'device fd is not close-on-exec');
  })) {
    console.log(`${passed} passed, ${failed} failed`);
    return 1;
  }

  const baseline = new Set();
  check('list() returns bigint ids', () => {
    for (const id of dev.list()) {
      eq(typeof id, 'bigint', 'id type');
      baseline.add(id);
    }
  });

  let id;
  check('create(1 MiB) returns a non-zero bigint region id', () => {
    id = dev.create(MiB);
    eq(typeof id, 'bigint', 'id type');
    assert(id > 0n, 'id is 0');
  });
  check('info() of a new region', () => {
    const i = dev.info(id);
    eq(i.sizeBytes, MiB, 'sizeBytes');
    eq(i.hugepage, false, 'hugepage');
    eq(i.numaNode, -1, 'numaNode');
    eq(i.openGrants, 0, 'openGrants');
    eq(i.mappings, 0, 'mappings');
  });
  check('list() includes the new region', () => {
    assert(dev.list().includes(id), 'missing');
  });

  let rw;
  let ro;
  let wmap;
  let rmap;
  check('openGrant read-write: fd (close-on-exec by default), fstat size, grant id', () => {
    rw = dev.openGrant(id, { readOnly: false });
    eq(typeof rw.grantId, 'bigint', 'grantId type');
    assert(rw.grantId > 0n, 'grantId 0');
    assert(cloexecOf(rw.fd), 'grant fd not close-on-exec');
    eq(fs.fstatSync(rw.fd).size, MiB, 'fstat size');
    eq(dev.info(id).openGrants, 1, 'openGrants');
  });
  check('map read-write and write a pattern; info counts the mapping', () => {
    wmap = Mapping.map(rw.fd, { length: MiB, writable: true });
    const u8 = new Uint8Array(wmap.buffer);
    for (let i = 0; i < MiB; i += 4096) u8[i] = (i / 4096) & 0xff;
    u8[MiB - 1] = 0xee;
    assert(dev.info(id).mappings >= 1, `mappings ${dev.info(id).mappings}`);
  });
  check('openGrant read-only: a read-only mapping sees the pattern', () => {
    ro = dev.openGrant(id, { readOnly: true });
    assert(ro.grantId !== rw.grantId, 'same grant id');
    rmap = Mapping.map(ro.fd, { length: MiB, writable: false });
    const u8 = new Uint8Array(rmap.buffer);
    eq(u8[4096 * 7], 7, 'byte at page 7');
    eq(u8[MiB - 1], 0xee, 'last byte');
    eq(dev.info(id).openGrants, 2, 'openGrants');
  });
  check('read-only grant: writable mmap fails (EACCES/EPERM)', () => {
    throwsCode(() => Mapping.map(ro.fd, { length: MiB, writable: true }), ['EACCES', 'EPERM'], 'writable map');
  });
  check('read-only grant: mprotect(PROT_WRITE) fails (EACCES)', () => {
    throwsCode(() => rmap.protect('readwrite'), ['EACCES', 'EPERM'], 'protect readwrite');
    rmap.protect('read');
  });
  check('grant fds cannot be re-opened through /proc/self/fd', () => {
    throwsCode(() => fs.openSync(`/proc/self/fd/${ro.fd}`, 'r+'), '*', 'reopen ro O_RDWR');
    throwsCode(() => fs.openSync(`/proc/self/fd/${rw.fd}`, 'r'), '*', 'reopen rw O_RDONLY');
  });
  check('mapping past the region size fails', () => {
    throwsCode(() => Mapping.map(rw.fd, { length: 2 * MiB, writable: false }), '*', 'oversized map');
  });
  check('openGrant cloexec:false gives an fd without FD_CLOEXEC', () => {
    const g = dev.openGrant(id, { readOnly: true, cloexec: false });
    try {
      assert(!cloexecOf(g.fd), 'fd is close-on-exec');
    } finally {
      dev.revoke(g.grantId);
      closeFd(g.fd);
    }
  });
  check('closing the last fd of an unmapped grant ends it (revoke is then ENOENT)', () => {
    const before = dev.info(id).openGrants;
    const g = dev.openGrant(id, { readOnly: true });
    eq(dev.info(id).openGrants, before + 1, 'openGrants while open');
    closeFd(g.fd);
    eq(dev.info(id).openGrants, before, 'openGrants after close');
    throwsCode(() => dev.revoke(g.grantId), 'ENOENT', 'revoke after close');
  });
  check('listGrants() returns exactly the live grants, ascending; unknown region ENOENT', () => {
    const g = dev.openGrant(id, { readOnly: true });
    try {
      const live = dev.listGrants(id);
      assert(live.includes(rw.grantId) && live.includes(ro.grantId) && live.includes(g.grantId), `missing: ${live}`);
      eq(live.length, dev.info(id).openGrants, 'count');
      for (let i = 1; i < live.length; i++) assert(live[i - 1] < live[i], 'not ascending');
      dev.revoke(g.grantId);
      assert(!dev.listGrants(id).includes(g.grantId), 'revoked grant listed');
      throwsCode(() => dev.listGrants(id + 1000000n), 'ENOENT', 'unknown region');
    } finally {
      closeFd(g.fd);
    }
  });
  // list() and listGrants() share one paging loop in the addon (256 ids a
  // call): cross a page boundary on both, ids exactly once and ascending.
  check('list() and listGrants() page past 256 ids, each id once, ascending', () => {
    const extra = [];
    const grants = [];
    try {
      for (let i = 0; i < 300; i++) extra.push(dev.create(4096));
      for (let i = 0; i < 300; i++) grants.push(dev.openGrant(extra[0], { readOnly: true }));
      const all = dev.list().filter((r) => !baseline.has(r));
      for (let i = 1; i < all.length; i++) assert(all[i - 1] < all[i], 'regions not ascending');
      for (const r of extra) assert(all.includes(r), `region ${r} missing`);
      eq(all.length, extra.length + 1, 'regions (the 300 plus the one under test)');
      const live = dev.listGrants(extra[0]);
      eq(live.length, 300, 'grants');
      for (let i = 1; i < live.length; i++) assert(live[i - 1] < live[i], 'grants not ascending');
      for (const g of grants) assert(live.includes(g.grantId), `grant ${g.grantId} missing`);
    } finally {
      for (const g of grants) closeFd(g.fd);
      for (const r of extra) dev.destroy(r);
    }
  });
  check('revoke a grant (its mappings released first): counts drop, a later mmap fails', () => {
    rmap.release();
    const before = dev.info(id).openGrants;
    dev.revoke(ro.grantId);
    eq(dev.info(id).openGrants, before - 1, 'openGrants after revoke');
    throwsCode(() => Mapping.map(ro.fd, { length: MiB, writable: false }), '*', 'map after revoke');
    closeFd(ro.fd);
  });
  check('revoking the same grant twice fails', () => {
    throwsCode(() => dev.revoke(ro.grantId), '*', 'second revoke');
  });
  check('releasing the last mapping brings info().mappings to 0', () => {
    wmap.release();
    eq(dev.info(id).mappings, 0, 'mappings');
  });
  check('create rejects a size that is not a page multiple (EINVAL)', () => {
    throwsCode(() => dev.create(4097), 'EINVAL', 'create(4097)');
  });
  check('create with numaNode 0 reports it back', () => {
    const r = dev.create(64 * 1024, { numaNode: 0 });
    try {
      eq(dev.info(r).numaNode, 0, 'numaNode');
    } finally {
      dev.destroy(r);
    }
  });
  check('create with hugepage: 2 MiB region reports hugepage (or fails cleanly without huge pages)', () => {
    let r;
    try {
      r = dev.create(2 * MiB, { hugepage: true });
    } catch (err) {
      assert(['ENOMEM', 'EINVAL', 'EOPNOTSUPP', 'ENOSPC'].includes(err.code), `unexpected ${err.code}`);
      console.log(`# hugepage create: ${err.code} (no huge pages in this guest)`);
      return;
    }
    try {
      const i = dev.info(r);
      eq(i.hugepage, true, 'hugepage');
      eq(i.sizeBytes, 2 * MiB, 'sizeBytes');
    } finally {
      dev.destroy(r);
    }
  });
  check('list() pages through more than 256 regions, ascending', () => {
    const made = [];
    try {
      for (let i = 0; i < 300; i++) made.push(dev.create(4096));
      const all = dev.list();
      for (let i = 1; i < all.length; i++) assert(all[i - 1] < all[i], 'not ascending');
      const set = new Set(all);
      for (const r of made) assert(set.has(r), `missing region ${r}`);
      eq(all.length, baseline.size + 1 + made.length, 'count');
    } finally {
      for (const r of made) dev.destroy(r);
    }
  });
  check('destroy revokes the remaining grant; the region disappears', () => {
    dev.destroy(id);
    assert(!dev.list().includes(id), 'still listed');
    throwsCode(() => dev.info(id), '*', 'info after destroy');
    throwsCode(() => Mapping.map(rw.fd, { length: MiB, writable: false }), '*', 'map after destroy');
    closeFd(rw.fd);
  });
  check('unknown ids give errors, not crashes', () => {
    throwsCode(() => dev.info(0xfffffffffffffff0n), '*', 'info');
    throwsCode(() => dev.destroy(0xfffffffffffffff0n), '*', 'destroy');
    throwsCode(() => dev.openGrant(0xfffffffffffffff0n, { readOnly: true }), '*', 'openGrant');
  });
  check('close() is idempotent and no fd leaked', () => {
    dev.close();
    dev.close();
    eq(fdCount(), fdsBefore, 'open fds');
  });

  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
