// Region events from the C library and its Python binding, against a real
// broker, as real processes of other uids (docs/ARCHITECTURE.md, "Region
// events"): a C producer and a Python consumer of different uids pass
// frames through a ring buffer with doorbells (and two C processes do the
// same); C waiters in the caller's own poll(2) loop over their event fds
// are woken by a Python notifier and by a revocation; a Python asyncio
// waiter wakes on a C notify and on region deletion. Backends: memfd, plus
// kmod when /dev/shmbroker exists (inside the test VM).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, REPO, run, type RunOptions, type RunResult } from '../support/broker-process';
// The Python programs are shared with the kmod VM suite (test/vm/kmod-events.vm-test.js).
import programs from '../support/event-programs.js';

const CDIR = path.join(REPO, 'clients', 'c');
const EVENTS = path.join(CDIR, 'build', 'shmb_events');
const PYDIR = path.join(REPO, 'clients', 'python');
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) ?? 'python3';
const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
const { PY_RING_CONSUMER, PY_ASYNC_WAITER, PY_NOTIFIER } = programs as Record<'PY_RING_CONSUMER' | 'PY_ASYNC_WAITER' | 'PY_NOTIFIER', string>;
const backends = (process.env.SHMBROKER_C_TEST_BACKENDS ?? (fs.existsSync('/dev/shmbroker') ? 'memfd,kmod' : 'memfd')).split(',').filter(Boolean);

/** A process whose stdout lines the test waits for. */
function spawnLines(cmd: string, args: string[], o: RunOptions & { env?: NodeJS.ProcessEnv }) {
  const argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid}`, '--clear-groups', '--', cmd, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => {
      for (const w of waiters.splice(0)) w();
      resolve({ code, signal, stdout: Buffer.from(out), stderr: err });
    }),
  );
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void done.then(() => clearTimeout(timer));
  return {
    done,
    async line(re: RegExp): Promise<RegExpMatchArray> {
      for (;;) {
        const m = out.match(re);
        if (m) return m;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before ${re}: ${out}\n${err}`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

function ok(r: RunResult, what: string): string {
  expect(r.code, `${what} exited ${r.code} (${r.signal ?? ''}):\n${r.stderr}\n${r.stdout}`).toBe(0);
  return r.stdout.toString();
}

beforeAll(() => {
  execFileSync('make', ['-s', '-C', CDIR], { stdio: ['ignore', 'ignore', 'inherit'] });
}, 180_000);

for (const backend of backends) {
  describe(`region events from C and Python (${backend})`, () => {
    let broker: BrokerProcess;
    let env: NodeJS.ProcessEnv;
    const as = (who: RunOptions): RunOptions => ({ ...who, env, timeoutMs: 60_000 });
    const py = (script: string, args: string[]): [string, string[]] => [
      PYTHON,
      ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(PYDIR)}); import shmbroker\n${script}`, ...args],
    ];

    beforeAll(async () => {
      broker = await BrokerProcess.start({ backend });
      env = { SHMBROKER_RUNTIME_DIR: broker.runtimeDir };
    }, 60_000);
    afterAll(async () => {
      if (broker && backend === 'kmod') {
        for (const name of ['ring-c', 'ring-py', 'polled', 'asyncio']) await broker.cli(['region', 'delete', name]);
      }
      await broker?.cleanup();
    });

    async function regionFor(name: string, grants: Array<[{ uid: number }, 'ro' | 'rw']>): Promise<string[]> {
      await broker.json(['region', 'create', name, '--size', '64KiB']);
      const names: string[] = [];
      for (const [who, mode] of grants) names.push((await broker.json(['grant', 'create', name, '--uid', String(who.uid), '--mode', mode])).name);
      return names;
    }

    it('a C producer (uid 1001) and a C consumer (uid 1002) pass frames through a ring with doorbells', async () => {
      await regionFor('ring-c', [[U1, 'rw'], [U2, 'rw']]);
      const frames = 5000;
      const [p, c] = await Promise.all([
        run(EVENTS, ['ring', 'ring-c', 'producer', String(frames)], as(U1)),
        run(EVENTS, ['ring', 'ring-c', 'consumer', String(frames)], as(U2)),
      ]);
      ok(p, 'producer');
      const m = ok(c, 'consumer').match(/^done sum=(\d+) bad=(\d+) wakes=(\d+)$/m);
      expect(m, c.stdout.toString()).not.toBeNull();
      expect(Number(m![1])).toBe((frames * (frames - 1)) / 2);
      expect(Number(m![2])).toBe(0);
    }, 120_000);

    it('a C producer (uid 1001) and a Python consumer (uid 1002) pass frames through a ring with doorbells', async () => {
      await regionFor('ring-py', [[U1, 'rw'], [U2, 'rw']]);
      const frames = 2000;
      const [cmd, args] = py(PY_RING_CONSUMER, ['ring-py', String(frames)]);
      const [p, c] = await Promise.all([run(EVENTS, ['ring', 'ring-py', 'producer', String(frames)], as(U1)), run(cmd, args, as(U2))]);
      ok(p, 'producer');
      expect(ok(c, 'python consumer')).toMatch(new RegExp(`^done sum=${(frames * (frames - 1)) / 2} bad=0 wakes=\\d+ backend=${backend}$`, 'm'));
    }, 120_000);

    it('C waiters in their own poll(2) loop wake on a Python notify, then on revocation', async () => {
      const [, ro] = await regionFor('polled', [[U1, 'rw'], [U2, 'ro']]);
      const poller = spawnLines(EVENTS, ['poll', 'polled', 'ro', '8'], as(U2));
      // Wait-only leases: the notify is refused with EPERM.
      expect((await poller.line(/^ready .*$/m))[0]).toBe('ready seq=0 may_notify=0 notify_rc=-1');
      const [cmd, args] = py(PY_NOTIFIER, ['polled']);
      expect(ok(await run(cmd, args, as(U1)), 'python notifier')).toBe('notified 1 True\n');
      await poller.line(/^all-notified$/m);
      ok(await broker.cli(['grant', 'revoke', ro!]), 'grant revoke');
      expect(ok(await poller.done, 'poller')).toMatch(/^revoked n=8 reason=GRANT_REVOKED$/m);
    }, 60_000);

    it('a Python asyncio waiter (ro) wakes on a C notify and ends with the region deleted', async () => {
      await regionFor('asyncio', [[U1, 'rw'], [U2, 'ro']]);
      const [cmd, args] = py(PY_ASYNC_WAITER, ['asyncio']);
      const waiter = spawnLines(cmd, args, as(U2));
      await waiter.line(/^ready 0$/m);
      // One C notify through the ring tool's producer side: a single frame.
      ok(await run(EVENTS, ['ring', 'asyncio', 'producer', '1'], as(U1)), 'C notify');
      await waiter.line(/^event notify 1 1$/m);
      ok(await broker.cli(['region', 'delete', 'asyncio']), 'region delete');
      const out = ok(await waiter.done, 'python asyncio waiter');
      expect(out).toContain('notify refused True');
      expect(out).toMatch(/^event revoked \d+ 0$/m);
    }, 60_000);
  });
}
