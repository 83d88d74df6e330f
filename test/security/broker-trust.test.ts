// Issue 16 item 1: clients authenticate the broker before sending anything.
// uid 1002 squats a runtime directory and serves a fake broker on both
// sockets; the SDK (data and control plane), the CLI, the C library and the
// Python binding, run as uid 1001, must refuse with BROKER_NOT_TRUSTED naming
// what did not match, and send the fake nothing. Three shapes of the attack:
//  - a directory of uid 1002's own, named by SHMBROKER_RUNTIME_DIR (the
//    path check refuses before connecting: the fake sees no connection);
//  - root-owned directory and socket files with uid 1002 listening behind
//    them (the SO_PEERCRED check refuses after connecting: no byte sent);
//  - the old per-uid /tmp fallback, squatted, with an empty environment
//    (nobody looks there any more: the fake sees no connection).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, BrokerProcess, hasSetpriv, makeTempDir, REPO, run, type RunResult } from '../support/broker-process';
import { execFileSync } from 'node:child_process';

const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
const FAKE = path.join(__dirname, 'fake-broker.js');
const E2E = path.join(REPO, 'clients', 'c', 'build', 'shmb_e2e');
const PYDIR = path.join(REPO, 'clients', 'python');
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) ?? 'python3';
const PATH_ONLY = `PATH=${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;

interface Fake {
  proc: ChildProcess;
  events: Array<{ conn?: string; bytes?: string; n?: number }>;
  stop(): Promise<void>;
}

async function startFake(dir: string): Promise<Fake> {
  const proc = spawn('setpriv', [`--reuid=${U2.uid}`, `--regid=${U2.gid}`, '--clear-groups', '--', process.execPath, FAKE, dir, REPO], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: Fake['events'] = [];
  let buf = '';
  let err = '';
  let ready = false;
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const o = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (o.ready) ready = true;
      else events.push(o);
    }
  });
  const deadline = Date.now() + 15_000;
  while (!ready) {
    if (proc.exitCode !== null) throw new Error(`fake broker exited: ${err}`);
    if (Date.now() > deadline) throw new Error(`fake broker did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    proc,
    events,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/** Every client, as uid 1001, trying to read region "secrets" (or the status) from `env`'s broker. */
function clients(env: Record<string, string>, emptyEnv = false): Array<[string, () => Promise<RunResult>]> {
  // With emptyEnv the client process gets nothing but PATH (env -i), as a login with no setup would.
  const as = (cmd: string, args: string[]): Promise<RunResult> =>
    emptyEnv ? run('env', ['-i', PATH_ONLY, cmd, ...args], { ...U1, env: {} }) : run(cmd, args, { ...U1, env });
  const sdk = (body: string) =>
    as(process.execPath, [
      '-e',
      `const sdk = require(${JSON.stringify(`${REPO}/dist/clients/sdk/index.js`)});
       (async () => { ${body} })().then(() => { console.log('NO REFUSAL'); process.exit(0); },
         (e) => { console.log(JSON.stringify({ reason: e.reason, message: e.message })); process.exit(3); });`,
    ]);
  return [
    ['SDK data plane', () => sdk(`const c = await sdk.connect({ reconnect: false }); const r = await c.acquire('secrets'); console.log('MAPPED', r.size);`)],
    ['SDK control plane', () => sdk(`const c = new sdk.ControlClient(); await c.call('BrokerService', 'GetStatus', {});`)],
    ['CLI region read', () => as(process.execPath, [BIN, 'region', 'read', 'secrets'])],
    ['CLI status', () => as(process.execPath, [BIN, 'status'])],
    ['C library', () => as(E2E, ['read', 'secrets', '0', '16'])],
    [
      'Python binding',
      () => as(PYTHON, ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(PYDIR)}); import shmbroker\nshmbroker.Client().acquire("secrets", "ro")`]),
    ],
  ];
}

describe.skipIf(!hasSetpriv())('clients authenticate the broker (uid 1002 serves a fake broker, uid 1001 refuses)', () => {
  let top: string;
  beforeAll(() => {
    top = makeTempDir('shmbroker-trust-');
    fs.chmodSync(top, 0o1777); // like /tmp: anybody may create a directory here
    execFileSync('make', ['-s', '-C', path.join(REPO, 'clients', 'c')], { stdio: ['ignore', 'ignore', 'inherit'] });
  }, 180_000);
  afterAll(() => fs.rmSync(top, { recursive: true, force: true }));

  it('a directory uid 1002 squatted: refused before connecting, naming the owner', async () => {
    const dir = path.join(top, 'squat');
    const fake = await startFake(dir);
    try {
      expect(fs.statSync(dir).uid).toBe(1002);
      for (const [who, attempt] of clients({ SHMBROKER_RUNTIME_DIR: dir })) {
        const r = await attempt();
        const out = `${r.stdout}${r.stderr}`;
        expect(r.code, `${who}: ${out}`).not.toBe(0);
        expect(out, who).toContain('BROKER_NOT_TRUSTED');
        expect(out, who).toMatch(/owned by uid 1002/);
        expect(out, who).not.toMatch(/MAPPED|NO REFUSAL/);
      }
      expect(fake.events).toEqual([]); // nobody even connected
    } finally {
      await fake.stop();
    }
  }, 120_000);

  it('root-owned directory and sockets with uid 1002 listening behind them: SO_PEERCRED refuses, nothing is sent', async () => {
    const dir = path.join(top, 'peer');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chownSync(dir, 1002, 1002);
    const fake = await startFake(dir);
    try {
      // Make every file look like root's broker's; only the listener is not.
      for (const f of ['data.sock', 'broker.sock']) fs.lchownSync(path.join(dir, f), 0, 0);
      fs.chownSync(dir, 0, 0);
      fs.chmodSync(dir, 0o755);
      for (const [who, attempt] of clients({ SHMBROKER_RUNTIME_DIR: dir })) {
        const r = await attempt();
        const out = `${r.stdout}${r.stderr}`;
        expect(r.code, `${who}: ${out}`).not.toBe(0);
        expect(out, who).toContain('BROKER_NOT_TRUSTED');
        expect(out, who).toMatch(/runs as uid 1002/);
      }
      expect(fake.events.filter((e) => e.conn).length).toBeGreaterThanOrEqual(6);
      expect(fake.events.filter((e) => e.bytes)).toEqual([]); // connected, but sent nothing
    } finally {
      await fake.stop();
    }
  }, 120_000);

  it('the old /tmp/shmbroker-1001 fallback, squatted: with an empty environment nobody looks there', async () => {
    const dir = '/tmp/shmbroker-1001';
    fs.rmSync(dir, { recursive: true, force: true });
    const fake = await startFake(dir);
    try {
      for (const [who, attempt] of clients({}, true)) {
        const r = await attempt();
        const out = `${r.stdout}${r.stderr}`;
        expect(r.code, `${who}: ${out}`).not.toBe(0);
        expect(out, who).not.toMatch(/MAPPED|NO REFUSAL/);
        expect(out, who).not.toContain('/tmp/shmbroker-1001');
      }
      expect(fake.events).toEqual([]);
    } finally {
      await fake.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('item 3: a symlinked parent that uid 1002 swaps during the check (real broker / fake broker): root\'s CLI refuses every time', async () => {
    const real = await BrokerProcess.start();
    const evil = path.join(top, 'evil');
    const fake = await startFake(path.join(evil, 'fake', 'run')); // creates evil/ and evil/fake/ as uid 1002
    const swapper = spawn('setpriv', [`--reuid=${U2.uid}`, `--regid=${U2.gid}`, '--clear-groups', '--', process.execPath, '-e', `
      const fs = require('node:fs');
      const [link, a, b] = process.argv.slice(1);
      for (let i = 0; ; i++) {
        fs.symlinkSync(i % 2 ? a : b, link + '.new');
        fs.renameSync(link + '.new', link); // atomic swap of the parent
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // 1 ms: a shared machine
      }`, path.join(evil, 'p'), real.dir, path.join(evil, 'fake')], { stdio: 'ignore' });
    try {
      while (!fs.existsSync(path.join(evil, 'p'))) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < 10; i++) {
        const r = await run(process.execPath, [BIN, '--runtime-dir', path.join(evil, 'p', 'run'), 'status']);
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/owned by uid 1002.*BROKER_NOT_TRUSTED/);
      }
      expect(fake.events).toEqual([]);
    } finally {
      swapper.kill('SIGKILL');
      await fake.stop();
      await real.cleanup();
    }
  }, 120_000);
});
