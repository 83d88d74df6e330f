// Issue 16 items 8, 9, 10: one broker per state directory (flock, the
// holder's pid named), private state files (umask 077, 0700 enforced, loose
// files fixed, uid 1001 cannot read the WAL), and an all-or-nothing start
// (a taken metrics port leaves nothing running and nothing bound; a bad
// configuration exits 78; readiness by sd_notify only once everything serves).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, BrokerProcess, makeTempDir, run } from '../support/broker-process';

const U1 = { uid: 1001, gid: 1001 };
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) ?? 'python3';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function serveArgs(dir: string, run = 'run', state = 'state'): string[] {
  return [BIN, 'serve', '--runtime-dir', path.join(dir, run), '--state-dir', path.join(dir, state), '--backend', 'memfd'];
}

describe('one broker per state directory (item 8)', () => {
  it('a second broker on the same state directory, other runtime directory, is refused naming the holder; live regions stay live', async () => {
    const broker = await BrokerProcess.start();
    cleanups.push(() => broker.cleanup());
    await broker.json(['region', 'create', 'live', '--size', '4KiB']);
    expect((await broker.cli(['region', 'write', 'live'], { input: 'still here' })).code).toBe(0);
    const second = await run(process.execPath, [BIN, 'serve', '--runtime-dir', path.join(broker.dir, 'run2'), '--state-dir', broker.stateDir, '--backend', 'memfd']);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`in use by another broker (pid ${broker.pid}`);
    expect(second.stderr).toContain('ALREADY_RUNNING');
    expect(fs.existsSync(path.join(broker.dir, 'run2', 'broker.sock'))).toBe(false);
    const r = await broker.json(['region', 'show', 'live']);
    expect(r.state).not.toMatch(/LOST/);
    expect((await broker.cli(['region', 'read', 'live', '--length', '10'])).stdout.toString()).toBe('still here');
  }, 60_000);
});

describe('private state (item 9)', () => {
  it('a 0755 state directory (hostPath DirectoryOrCreate) is made 0700, every file is 0600, uid 1001 reads nothing', async () => {
    const dir = makeTempDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.mkdirSync(path.join(dir, 'state'), { mode: 0o755 });
    fs.chmodSync(path.join(dir, 'state'), 0o755);
    const broker = await BrokerProcess.start({ dir });
    cleanups.push(() => broker.stop().then(() => undefined));
    await broker.json(['region', 'create', 'secret-name', '--size', '4KiB']);
    expect(fs.statSync(broker.stateDir).mode & 0o7777).toBe(0o700);
    const files = fs.readdirSync(broker.stateDir);
    expect(files).toEqual(expect.arrayContaining(['shmbroker.db', 'shmbroker.db-wal', 'shmbroker.db-shm', 'audit.key', 'audit.anchor', 'broker.lock']));
    for (const f of files) expect(`${f} ${(fs.statSync(path.join(broker.stateDir, f)).mode & 0o777).toString(8)}`).toBe(`${f} 600`);
    // Even with the directory opened up again by hand, the files stay unreadable to uid 1001.
    fs.chmodSync(broker.stateDir, 0o755);
    const peek = await run('cat', [path.join(broker.stateDir, 'shmbroker.db-wal')], U1);
    expect(peek.code).not.toBe(0);
    expect(peek.stderr).toMatch(/Permission denied/);
    expect(peek.stdout.toString()).not.toContain('secret-name');
  }, 60_000);

  it('files left readable by an older broker are made 0600 at start; a state directory of another uid is refused (exit 78)', async () => {
    const broker = await BrokerProcess.start();
    cleanups.push(() => broker.cleanup());
    await broker.json(['region', 'create', 'x', '--size', '4KiB']);
    await broker.stop();
    for (const f of ['shmbroker.db', 'audit.key', 'audit.anchor']) fs.chmodSync(path.join(broker.stateDir, f), 0o644);
    await broker.start();
    for (const f of ['shmbroker.db', 'audit.key', 'audit.anchor']) expect(fs.statSync(path.join(broker.stateDir, f)).mode & 0o777).toBe(0o600);
    expect(broker.log).toMatch(/made 0600/);
    await broker.stop();
    fs.chownSync(broker.stateDir, 1001, 1001);
    const r = await run(process.execPath, serveArgs(broker.dir));
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/owned by uid 1001.*UNSAFE_DIRECTORY/);
  }, 60_000);
});

describe('all-or-nothing start (item 10)', () => {
  it('a taken metrics port: the broker exits non-zero, leaves no socket, no "broker serving" line, and frees the state lock', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => taken.once('listening', r));
    cleanups.push(() => new Promise<void>((r) => taken.close(() => r())));
    const port = (taken.address() as net.AddressInfo).port;
    const dir = makeTempDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const r = await run(process.execPath, [...serveArgs(dir), '--metrics-addr', `127.0.0.1:${port}`], { timeoutMs: 20_000 });
    expect(r.signal).toBeNull(); // it exited by itself, not by the test's timeout
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/EADDRINUSE/);
    expect(`${r.stdout}${r.stderr}`).not.toContain('broker serving');
    expect(fs.readdirSync(path.join(dir, 'run'))).toEqual([]);
    // Nothing holds the state directory: a correct start right after works.
    const ok = await BrokerProcess.start({ dir });
    await ok.stop();
  }, 60_000);

  // (An unknown --backend is a usage error: commander refuses it with exit 2 before serve runs.)
  it.each([
    ['a malformed metrics address', ['--metrics-addr', 'nonsense']],
    ['an invalid configuration file', ['--config', '/dev/null/nope.yaml']],
  ])('%s exits 78 (EX_CONFIG) with one line', async (_name, extra) => {
    const dir = makeTempDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const cfg = path.join(dir, 'bad.yaml');
    fs.writeFileSync(cfg, 'regionSize: {min: lots}\n');
    const args = [...serveArgs(dir), ...extra.map((a) => (a === '/dev/null/nope.yaml' ? cfg : a))];
    const r = await run(process.execPath, args, { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(78);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  }, 60_000);

  it('sd_notify: READY=1 arrives on $NOTIFY_SOCKET only after both sockets serve, STOPPING=1 on SIGTERM', async () => {
    const dir = makeTempDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const notifySock = path.join(dir, 'notify.sock');
    // The service manager's end: a datagram socket (Node has none for AF_UNIX; Python does).
    const listener = spawn(PYTHON, ['-u', '-c', `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("bound", flush=True)
for _ in range(2):
    print(repr(s.recv(4096).decode()), flush=True)`, notifySock], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => void listener.kill());
    let heard = '';
    listener.stdout.on('data', (d: Buffer) => (heard += d.toString()));
    while (!heard.includes('bound')) await new Promise((r) => setTimeout(r, 20));
    const broker = spawn(process.execPath, serveArgs(dir), { env: { ...process.env, NOTIFY_SOCKET: notifySock }, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    broker.stdout.on('data', (d: Buffer) => (log += d.toString()));
    broker.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const deadline = Date.now() + 20_000;
    while (!heard.includes('READY=1')) {
      if (Date.now() > deadline || broker.exitCode !== null) throw new Error(`no READY=1: ${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // Once READY=1 is out, both planes answer.
    expect(fs.existsSync(path.join(dir, 'run', 'data.sock'))).toBe(true);
    const status = spawnSync(process.execPath, [BIN, '--runtime-dir', path.join(dir, 'run'), 'status', '-o', 'json'], { encoding: 'utf8' });
    expect(status.status, status.stderr).toBe(0);
    expect(heard).toContain(`MAINPID=${broker.pid}`);
    const exited = new Promise<number | null>((r) => broker.once('exit', (c) => r(c)));
    broker.kill('SIGTERM');
    expect(await exited).toBe(0);
    // The listener prints what it received: give it time to be scheduled (a
    // broker that never sent STOPPING=1 fails after the deadline).
    await expect.poll(() => heard, { timeout: 10_000, interval: 20 }).toContain('STOPPING=1');
  }, 60_000);
});
