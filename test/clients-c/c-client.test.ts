// libshmbroker (clients/c) and its Python binding (clients/python) against a
// real broker process, as real processes of other uids: a C producer and a
// Python consumer of different uids share a frame buffer granted by the CLI,
// bytes go both ways, read-only is enforced, revocation notices reach C and
// Python clients, and the C client is valgrind-clean against the real broker.
// Also runs the library's own suites (make check, make valgrind, the Python
// fake-peer tests). Backends: memfd, plus kmod when /dev/shmbroker exists
// (inside the test VM, see test/vm/guest.d/40-c-client.sh); override with
// SHMBROKER_C_TEST_BACKENDS=memfd,kmod.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir, REPO, run, type RunOptions, type RunResult } from '../support/broker-process';

const CDIR = path.join(REPO, 'clients', 'c');
const BUILD = path.join(CDIR, 'build');
const E2E = path.join(BUILD, 'shmb_e2e');
const PRODUCER = path.join(BUILD, 'producer');
const CONSUMER = path.join(REPO, 'clients', 'python', 'examples', 'consumer.py');
const PYDIR = path.join(REPO, 'clients', 'python');
const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
const U3 = { uid: 1003, gid: 1003 };
const IN_VM = process.env.SHMBROKER_IN_VM === '1';

// Python for other uids must be readable by them: Debian's, not a per-user pyenv.
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) ?? 'python3';
const HAVE_VALGRIND = spawnSync('valgrind', ['--version']).status === 0;
// NumPy is optional: this test runs when the python3 on root's PATH has it.
const HAVE_ROOT_NUMPY = spawnSync('python3', ['-c', 'import numpy']).status === 0;

const backends = (process.env.SHMBROKER_C_TEST_BACKENDS ?? (fs.existsSync('/dev/shmbroker') ? 'memfd,kmod' : 'memfd'))
  .split(',')
  .filter(Boolean);

const VALGRIND = ['valgrind', '--quiet', '--error-exitcode=97', '--leak-check=full', '--show-leak-kinds=definite,indirect,possible', '--errors-for-leak-kinds=definite,indirect,possible', '--track-fds=yes'];

beforeAll(() => {
  execFileSync('make', ['-s', '-C', CDIR], { stdio: ['ignore', 'ignore', 'inherit'] });
}, 180_000);

/** Asserts a valgrind --track-fds report lists no fd other than inherited ones. */
function expectNoFdLeak(stderr: string): void {
  const open = stderr.match(/Open (file descriptor|AF_UNIX socket|AF_INET socket)[^\n]*/g) ?? [];
  const inherited = stderr.match(/<inherited from parent>/g) ?? [];
  expect(open.length, stderr).toBe(inherited.length);
}

function ok(r: RunResult, what: string): string {
  expect(r.code, `${what} exited ${r.code} (${r.signal ?? ''}):\n${r.stderr}\n${r.stdout}`).toBe(0);
  return r.stdout.toString();
}

describe('libshmbroker own suites', () => {
  it('make check (codec unit tests, fake-peer tests)', () => {
    const out = execFileSync('make', ['-s', '-C', CDIR, 'check'], { encoding: 'utf8' });
    expect(out).toMatch(/test_proto: \d+ checks, 0 failures/);
    expect(out).toMatch(/test_fakepeer: \d+ checks, 0 failures/);
  }, 120_000);

  it.skipIf(!HAVE_VALGRIND || IN_VM)('make valgrind: no memory errors, no leaks', () => {
    const r = spawnSync('make', ['-s', '-C', CDIR, 'valgrind'], { encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/test_fakepeer: \d+ checks, 0 failures/);
  }, 300_000);

  it.skipIf(IN_VM)('make sanitize: the same tests under AddressSanitizer and UBSan', () => {
    const r = spawnSync('make', ['-s', '-C', CDIR, 'sanitize'], { encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/test_fakepeer: \d+ checks, 0 failures/);
  }, 300_000);

  it('the library builds warning-free with -Wall -Wextra -Werror and exports only shmb_*', () => {
    // A fresh build directory, so that every file really compiles here.
    const dir = fs.mkdtempSync('/tmp/shmb-build-');
    const r = spawnSync('make', ['-C', CDIR, `B=${dir}`, 'lib'], { encoding: 'utf8' });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/warning/i);
    expect(r.stdout).toContain('-Wall -Wextra -Werror');
    const syms = execFileSync('nm', ['-D', '--defined-only', path.join(BUILD, 'libshmbroker.so')], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ').pop()!);
    expect(syms.length).toBeGreaterThan(10);
    expect(syms.filter((s) => !s.startsWith('shmb_'))).toEqual([]);
    const soname = execFileSync('readelf', ['-d', path.join(BUILD, 'libshmbroker.so.0.1.0')], { encoding: 'utf8' });
    expect(soname).toContain('[libshmbroker.so.0]');
    expect(fs.readFileSync(path.join(BUILD, 'shmbroker.pc'), 'utf8')).toMatch(/Libs: .*-lshmbroker/);
    expect(fs.existsSync(path.join(BUILD, 'libshmbroker.a'))).toBe(true);
  }, 120_000);

  it('a program builds against the installed library through pkg-config', () => {
    const dest = fs.mkdtempSync('/tmp/shmb-install-');
    try {
      execFileSync('make', ['-s', '-C', CDIR, 'install', `DESTDIR=${dest}`, 'PREFIX=/usr'], { stdio: 'ignore' });
      const pc = path.join(dest, 'usr', 'lib', 'pkgconfig');
      const env = { ...process.env, PKG_CONFIG_PATH: pc, PKG_CONFIG_SYSROOT_DIR: dest };
      const flags = execFileSync('pkg-config', ['--cflags', '--libs', 'shmbroker'], { env, encoding: 'utf8' }).trim().split(/\s+/);
      const src = path.join(dest, 'p.c');
      fs.writeFileSync(src, '#include <shmbroker.h>\n#include <stdio.h>\nint main(void){char b[128];return shmb_socket_path("/x",b,sizeof b)>0?0:1;}\n');
      execFileSync('cc', ['-std=c99', '-Wall', '-Werror', '-o', path.join(dest, 'p'), src, ...flags], { stdio: 'inherit' });
      const libdir = path.join(dest, 'usr', 'lib');
      execFileSync(path.join(dest, 'p'), { env: { ...process.env, LD_LIBRARY_PATH: libdir } });
      const ldd = execFileSync('ldd', [path.join(dest, 'p')], { env: { ...process.env, LD_LIBRARY_PATH: libdir }, encoding: 'utf8' });
      expect(ldd).toContain(`libshmbroker.so.0 => ${libdir}/libshmbroker.so.0`);
    } finally {
      fs.rmSync(dest, { recursive: true, force: true });
    }
  }, 60_000);

  it('Python binding against the fake peer (unittest)', () => {
    const r = spawnSync(PYTHON, ['-m', 'unittest', 'discover', '-s', path.join(PYDIR, 'tests')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\nOK/);
  }, 120_000);
});

for (const backend of backends) {
  describe(`C and Python clients against a real broker (${backend})`, () => {
    let broker: BrokerProcess;
    let env: NodeJS.ProcessEnv;
    let configDir: string | undefined;
    const grants: Record<string, number> = {};

    const as = (who: RunOptions, extra: RunOptions = {}): RunOptions => ({ ...who, env, timeoutMs: 60_000, ...extra });
    const c = (who: RunOptions, args: string[], extra: RunOptions = {}) => run(E2E, args, as(who, extra));
    const py = (who: RunOptions, script: string, args: string[] = []) =>
      run(PYTHON, ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(PYDIR)}); import shmbroker\n${script}`, ...args], as(who));

    async function grant(region: string, who: { uid: number }, mode: 'ro' | 'rw'): Promise<number> {
      const g = await broker.json<{ name: string }>(['grant', 'create', region, '--uid', String(who.uid), '--mode', mode]);
      return Number(g.name.split('/').pop());
    }

    beforeAll(async () => {
      // Lift the per-uid data-plane rate limit (1000/s) for the latency run.
      configDir = makeTempDir('shmbroker-c-config-');
      const config = path.join(configDir, 'config.yaml');
      fs.writeFileSync(config, 'dataPlane:\n  maxRequestsPerSecondPerUid: 1000000\n');
      broker = await BrokerProcess.start({ backend, config });
      env = { SHMBROKER_RUNTIME_DIR: broker.runtimeDir };
      await broker.json(['region', 'create', 'frames', '--size', '1MiB']);
      await broker.json(['region', 'create', 'mailbox', '--size', '64KiB']);
      grants.framesU1 = await grant('frames', U1, 'rw');
      grants.framesU2 = await grant('frames', U2, 'ro');
      grants.mailboxU1 = await grant('mailbox', U1, 'ro');
      grants.mailboxU2 = await grant('mailbox', U2, 'rw');
    }, 60_000);

    afterAll(async () => {
      if (broker && backend === 'kmod') {
        // The module must be idle before rmmod: delete what we created.
        for (const name of ['frames', 'mailbox', 'revoke-c', 'revoke-py', 'deleted', 'restart', 'vg', 'bench']) {
          await broker.cli(['region', 'delete', name]);
        }
      }
      await broker?.cleanup();
      if (configDir) fs.rmSync(configDir, { recursive: true, force: true });
    });

    it('a C producer (uid 1001) and a Python consumer (uid 1002) share a frame buffer granted by the CLI', async () => {
      const consumer = run(PYTHON, [CONSUMER, 'frames', '--until', '150', '--timeout', '60'], as(U2));
      const producer = run(PRODUCER, ['frames', '150', '5'], as(U1));
      const [p, cons] = await Promise.all([producer, consumer]);
      expect(ok(p, 'producer')).toContain('wrote 150 frames of 640x480 into frames');
      const stats = JSON.parse(ok(cons, 'consumer'));
      expect(stats).toMatchObject({ corrupt: 0, last_frame: 150, width: 640, height: 480, revoked: false });
      expect(stats.verified).toBeGreaterThan(0);
    }, 120_000);

    it('bytes go from C (uid 1001) to Python (uid 1002) and back, and the CLI sees them', async () => {
      const msg = `from C ${backend} ${Date.now()}`;
      expect(ok(await c(U1, ['write', 'frames', '4096', msg]), 'C write')).toContain(`wrote ${msg.length} bytes`);
      const seen = await py(U2, `
with shmbroker.Client() as c, c.acquire('frames', 'ro') as r:
    v = r.buf
    sys.stdout.write(bytes(v[4096:4096 + int(sys.argv[1])]).decode())
    v.release()
    assert r.mode == 'ro' and r.size == 1 << 20 and r.backend == sys.argv[2], (r.mode, r.size, r.backend)
`, [String(msg.length), backend]);
      expect(ok(seen, 'python read')).toBe(msg);
      const cli = await broker.cli(['region', 'read', 'frames', '--offset', '4096', '--length', String(msg.length)]);
      expect(cli.stdout.toString()).toBe(msg);

      const reply = `from Python ${backend}`;
      ok(await py(U2, `
with shmbroker.Client() as c, c.acquire('mailbox', 'rw') as r:
    v = r.buf
    v[100:100 + len(sys.argv[1])] = sys.argv[1].encode()
    v.release()
`, [reply]), 'python write');
      expect(ok(await c(U1, ['read', 'mailbox', '100', String(reply.length)]), 'C read')).toBe(reply);
    }, 60_000);

    it.skipIf(!HAVE_ROOT_NUMPY)('a NumPy array over a region (root, rw) is seen by C (uid 1002)', async () => {
      const r = await run('python3', ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(PYDIR)}); import shmbroker, numpy as np
with shmbroker.Client() as c, c.acquire('frames', 'rw') as r:
    a = r.numpy('uint32', shape=(16,), offset=8192)
    a[:] = np.arange(16, dtype=np.uint32) * 3
    del a
`], { env, timeoutMs: 60_000 });
      ok(r, 'numpy write');
      const out = await c(U2, ['read', 'frames', '8192', '64']);
      const words = new Uint32Array(new Uint8Array(out.stdout).buffer.slice(0, 64));
      expect([...words]).toEqual([...Array(16).keys()].map((i) => i * 3));
    }, 60_000);

    it('read-only: no way to write from C or Python, and rw acquire is refused', async () => {
      const out = ok(await c(U2, ['ro-check', 'frames']), 'ro-check');
      expect(out).toContain('mprotect=EACCES');
      expect(out).toContain('mmap_rw=EACCES');
      expect(out).toMatch(/reopen_rw=(EACCES|ENXIO|EPERM)/);
      expect(out).toContain('acquire_rw=-13 reason=GRANT_READ_ONLY');
      const r = await py(U2, `
import errno, mmap
with shmbroker.Client() as c:
    with c.acquire('frames', 'ro') as r:
        v = r.buf
        try:
            v[0] = 1
            print('WROTE')
        except TypeError:
            print('view-readonly')
        v.release()
        try:
            mmap.mmap(r.fd, r.size, access=mmap.ACCESS_WRITE)
            print('MAPPED-RW')
        except PermissionError:
            print('mmap-rw-refused')
    try:
        c.acquire('frames', 'rw')
        print('ACQUIRED-RW')
    except shmbroker.ShmbrokerError as e:
        print('rw', errno.errorcode[e.errno], e.reason)
`);
      expect(ok(r, 'python ro').split('\n')).toEqual(['view-readonly', 'mmap-rw-refused', 'rw EACCES GRANT_READ_ONLY', '']);
    }, 60_000);

    it('no grant and no region are clean errors with the broker reason (the same one: without a grant the region is not visible)', async () => {
      expect(ok(await c(U3, ['acquire', 'frames', 'ro']), 'no grant')).toMatch(/^rc=-2 reason=REGION_NOT_FOUND/);
      expect(ok(await c(U1, ['acquire', 'nosuch', 'ro']), 'no region')).toMatch(/^rc=-2 reason=REGION_NOT_FOUND/);
      expect(ok(await c(U1, ['acquire', 'Bad_Name', 'ro']), 'bad name')).toMatch(/^rc=-22 reason=$/m);
    }, 60_000);

    it('a C client sees the revocation notice of `grant revoke` and releases', async () => {
      await broker.json(['region', 'create', 'revoke-c', '--size', '64KiB']);
      const id = await grant('revoke-c', U1, 'rw');
      const waiter = spawnWaiter(E2E, ['wait-revoke', 'revoke-c', 'rw', '30000'], as(U1));
      const lease = await waiter.line(/^acquired (\d+)$/m);
      expect(ok(await broker.cli(['grant', 'revoke', String(id)]), 'grant revoke')).toBeDefined();
      const r = await waiter.done;
      const out = ok(r, 'wait-revoke');
      expect(out).toContain(`revoked ${lease[1]} GRANT_REVOKED`);
      expect(out).toContain('released rc=0');
      // The grant is gone: a new acquire is refused.
      expect(ok(await c(U1, ['acquire', 'revoke-c', 'rw']), 'after revoke')).toMatch(/^rc=-2 reason=REGION_NOT_FOUND/);
    }, 60_000);

    it('a Python client sees the revocation notice through select() + process_events()', async () => {
      await broker.json(['region', 'create', 'revoke-py', '--size', '64KiB']);
      const id = await grant('revoke-py', U2, 'ro');
      const waiter = spawnWaiter(PYTHON, ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(PYDIR)}); import shmbroker, select
c = shmbroker.Client()
r = c.acquire('revoke-py', 'ro')
print('acquired', r.lease_id, flush=True)
revs = []
while not revs:
    if not c.events_pending:
        select.select([c], [], [], 30)
    revs = c.process_events()
rv = revs[0]
print('revoked', rv.lease_id, rv.reason, rv.region is r, r.revoked, flush=True)
r.release()
c.close()
`], as(U2));
      const lease = await waiter.line(/^acquired (\d+)$/m);
      ok(await broker.cli(['grant', 'revoke', String(id)]), 'grant revoke');
      expect(ok(await waiter.done, 'python wait')).toContain(`revoked ${lease[1]} GRANT_REVOKED True True`);
    }, 60_000);

    it('deleting a region sends REGION_DELETED to its holders', async () => {
      await broker.json(['region', 'create', 'deleted', '--size', '64KiB']);
      await grant('deleted', U1, 'ro');
      const waiter = spawnWaiter(E2E, ['wait-revoke', 'deleted', 'ro', '30000'], as(U1));
      await waiter.line(/^acquired \d+$/m);
      ok(await broker.cli(['region', 'delete', 'deleted']), 'region delete');
      expect(ok(await waiter.done, 'wait-revoke')).toMatch(/revoked \d+ REGION_DELETED/);
    }, 60_000);

    it('after a broker restart the C client offers its region back (OfferRequest) and the memory is kept', async () => {
      await broker.json(['region', 'create', 'restart', '--size', '64KiB']);
      await grant('restart', U1, 'rw');
      const text = `held across a restart on ${backend}`;
      const holder = spawnWaiter(E2E, ['hold-offer', 'restart', text, '60000'], as(U1));
      const lease = await holder.line(/^acquired (\d+)$/m);
      await broker.kill9();
      await holder.line(/^disconnected rc=-104$/m);
      await broker.start();
      const out = ok(await holder.done, 'hold-offer');
      expect(out, out).toContain(`offered rc=0 lease=${lease[1]}`);
      expect(out).toContain('released rc=0');
      const shown = await broker.json<{ state: string }>(['region', 'show', 'restart']);
      expect(shown.state).toBe('REGION_STATE_ACTIVE');
      const r = await broker.cli(['region', 'read', 'restart', '--length', String(text.length)]);
      expect(r.stdout.toString()).toBe(text);
    }, 120_000);

    it.skipIf(!HAVE_VALGRIND || IN_VM)('the C client is valgrind-clean against the real broker (write, read, revocation)', async () => {
      await broker.json(['region', 'create', 'vg', '--size', '256KiB']);
      const id = await grant('vg', U1, 'rw');
      const w = await run('valgrind', [...VALGRIND, E2E, 'write', 'vg', '0', 'valgrind'], as(U1));
      ok(w, 'valgrind write');
      expectNoFdLeak(w.stderr);
      const r = await run('valgrind', [...VALGRIND, E2E, 'read', 'vg', '0', '8'], as(U1));
      expect(ok(r, 'valgrind read')).toBe('valgrind');
      expectNoFdLeak(r.stderr);
      const waiter = spawnWaiter('valgrind', [...VALGRIND, E2E, 'wait-revoke', 'vg', 'rw', '60000'], as(U1));
      await waiter.line(/^acquired \d+$/m);
      ok(await broker.cli(['grant', 'revoke', String(id)]), 'grant revoke');
      const done = await waiter.done;
      expect(ok(done, 'valgrind wait-revoke')).toMatch(/revoked \d+ GRANT_REVOKED/);
      expectNoFdLeak(done.stderr);
    }, 180_000);

    it('acquire latency from C (logged; the broker keeps no fds behind)', async () => {
      await broker.json(['region', 'create', 'bench', '--size', '1MiB']);
      await grant('bench', U1, 'ro');
      const fdsBefore = broker.fdCount();
      const r = await run(path.join(BUILD, 'bench_acquire'), ['bench', IN_VM ? '200' : '2000', 'ro'], as(U1));
      const res = JSON.parse(ok(r, 'bench'));
      console.log(`C acquire latency (${backend}): ${JSON.stringify(res)}`);
      expect(res.acquire_us.p50).toBeGreaterThan(0);
      // The broker closes a connection's fds as it handles the hang-up: look until it has (15 s at most).
      await expect.poll(() => broker.fdCount(), { timeout: 15_000, interval: 20 }).toBeLessThanOrEqual(fdsBefore);
    }, 120_000);
  });
}

/** A child process whose stdout we can wait on line by line before it exits. */
function spawnWaiter(cmd: string, args: string[], o: RunOptions) {
  let argv = [cmd, ...args];
  if (o.uid !== undefined) argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, '--clear-groups', '--', ...argv];
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    waiters.splice(0).forEach((w) => w());
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
  let exited = false;
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      exited = true;
      waiters.splice(0).forEach((w) => w());
      resolve({ code, signal, stdout: Buffer.from(stdout), stderr });
    }),
  );
  return {
    done,
    async line(re: RegExp): Promise<RegExpMatchArray> {
      for (;;) {
        const m = stdout.match(re);
        if (m) return m;
        if (exited) throw new Error(`${cmd} exited before printing ${re}:\n${stdout}\n${stderr}`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}
