// A read-only grantee (a real process of uid 1001, using the SDK) tries
// every way to write that the memfd backend must refuse.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, runNode } from './support/broker-process';

const U1 = { uid: 1001, gid: 1001 };

const ATTACKER = `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
// The fd is this process's either way (/proc/self/fd/N); the SDK keeps it out of its API, its internal module has it.
const { sdkRegionAccess } = require(REPO + '/dist/clients/sdk/mapped-region.js');
const native = require(REPO + '/dist/native/index.js');
const fs = require('node:fs');
const out = {};
function attempt(name, fn) {
  try { fn(); out[name] = 'ALLOWED'; } catch (e) { out[name] = e.code || e.message; }
}
(async () => {
  const client = await connect({ runtimeDir: process.argv[2], reconnect: false });
  try { await client.acquire('ro', { mode: 'rw' }); out.acquireRw = 'ALLOWED'; } catch (e) { out.acquireRw = e.reason; }
  const region = await client.acquire('ro', { mode: 'ro' });
  out.size = region.size;
  out.mode = region.mode;
  out.firstByte = new Uint8Array(region.buffer)[0];
  const fd = sdkRegionAccess.fd(region);
  attempt('writableMmap', () => native.Mapping.map(fd, { length: region.size, writable: true }).release());
  attempt('mprotectWrite', () => { const m = native.Mapping.map(fd, { length: region.size, writable: false }); try { m.protect('readwrite'); } finally { m.release(); } });
  attempt('reopenProcFdRdwr', () => fs.closeSync(fs.openSync('/proc/self/fd/' + fd, 'r+')));
  attempt('reopenProcPidFdRdwr', () => fs.closeSync(fs.openSync('/proc/' + process.pid + '/fd/' + fd, fs.constants.O_WRONLY)));
  attempt('ftruncate', () => fs.ftruncateSync(fd, region.size * 2));
  attempt('fchmod', () => fs.fchmodSync(fd, 0o666));
  attempt('writeSyscall', () => fs.writeSync(fd, Buffer.from('x'), 0, 1, 0));
  // Seals cannot be removed, only added, and F_SEAL_SEAL forbids adding: check they are all there.
  out.seals = native.getSeals(fd) === (native.SEAL.SEAL | native.SEAL.SHRINK | native.SEAL.GROW);
  await region.release();
  out.detachedAfterRelease = region.buffer.byteLength;
  client.close();
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(3); });
`;

describe('read-only grantee attacks (memfd)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
    await broker.json(['region', 'create', 'ro', '--size', '64KiB']);
    const w = await broker.cli(['region', 'write', 'ro'], { input: Buffer.from([0xab]) });
    expect(w.code).toBe(0);
    await broker.json(['grant', 'create', 'ro', '--uid', '1001', '--mode', 'ro']);
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('refuses every write path and leaves the bytes untouched', async () => {
    const r = await runNode(ATTACKER, { ...U1, args: [broker.runtimeDir] });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.toString());
    expect(out).toEqual({
      acquireRw: 'GRANT_READ_ONLY',
      size: 65536,
      mode: 'ro',
      firstByte: 0xab,
      writableMmap: 'EACCES',
      mprotectWrite: 'EACCES',
      reopenProcFdRdwr: 'EACCES',
      reopenProcPidFdRdwr: 'EACCES',
      ftruncate: 'EINVAL', // the kernel's answer for an fd not open for writing (and the size is sealed besides)
      fchmod: 'EPERM',
      writeSyscall: 'EBADF',
      seals: true,
      detachedAfterRelease: 0,
    });
    const check = await broker.cli(['region', 'read', 'ro', '--length', '1']);
    expect(check.stdout[0]).toBe(0xab);
  });
});
