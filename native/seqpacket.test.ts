// SeqpacketSocket / SeqpacketServer against real AF_UNIX sockets.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  bindingPath,
  closeFd,
  memfdCreate,
  NativeError,
  PAGE_SIZE,
  peerCredOfFd,
  SeqpacketServer,
  SeqpacketSocket,
} from './index';

const CHILD = path.join(__dirname, 'test-child.js');

let dir: string;
let n = 0;
const sockPath = (): string => path.join(dir, `s${n++}.sock`);
const open: Array<{ close(): void }> = [];
function track<T extends { close(): void }>(x: T): T {
  open.push(x);
  return x;
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** memfds open in this process: what a leak of received fds would show. */
function memfds(): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:')) n++;
    } catch {
      /* closed meanwhile (the readdir fd itself) */
    }
  }
  return n;
}

let fdsBefore: number;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmb-native-'));
  fs.chmodSync(dir, 0o777); // children of other uids connect here
  fdsBefore = openFds();
});
afterEach(() => {
  for (const x of open.splice(0)) x.close();
});
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  // net.Socket and child-process pipes close asynchronously: wait for them
  await until(() => openFds() <= fdsBefore, 5000).catch(() => undefined);
  expect(openFds()).toBe(fdsBefore);
});

function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function once<T extends unknown[]>(em: NodeJS.EventEmitter, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for '${event}'`)), ms);
    em.once(event, (...args: unknown[]) => {
      clearTimeout(t);
      resolve(args as T);
    });
  });
}

/** A connected (client, server-side) pair. */
async function pair(
  serverOpts: Parameters<typeof SeqpacketServer.listen>[1] = {},
  clientOpts: Parameters<typeof SeqpacketSocket.connect>[1] = {},
): Promise<{ client: SeqpacketSocket; peer: SeqpacketSocket; server: SeqpacketServer }> {
  const p = sockPath();
  const server = track(SeqpacketServer.listen(p, serverOpts));
  const conn = once<[SeqpacketSocket]>(server, 'connection');
  const client = track(SeqpacketSocket.connect(p, clientOpts));
  const [peer] = await conn;
  track(peer);
  return { client, peer, server };
}

function collect(sock: SeqpacketSocket): Array<{ data: Buffer; fds: number[] }> {
  const got: Array<{ data: Buffer; fds: number[] }> = [];
  sock.on('message', (data, fds) => got.push({ data, fds }));
  return got;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timeout');
    await tick(5);
  }
}

describe('SeqpacketSocket / SeqpacketServer', () => {
  it('keeps message boundaries, both directions', async () => {
    const { client, peer } = await pair();
    const atPeer = collect(peer);
    const atClient = collect(client);
    const sizes = [1, 7, 4096, 1, 60000, 3];
    sizes.forEach((s, i) => expect(client.send(Buffer.alloc(s, i + 1))).toBe(true));
    await until(() => atPeer.length === sizes.length);
    expect(atPeer.map((m) => m.data.length)).toEqual(sizes);
    atPeer.forEach((m, i) => expect(m.data.every((b) => b === i + 1)).toBe(true));
    expect(atPeer.every((m) => m.fds.length === 0)).toBe(true);
    peer.send(new Uint8Array([1, 2, 3]));
    peer.send(Buffer.from('reply'));
    await until(() => atClient.length === 2);
    expect([...atClient[0]!.data]).toEqual([1, 2, 3]);
    expect(atClient[1]!.data.toString()).toBe('reply');
  });

  it('passes fds by SCM_RIGHTS (same inode, received close-on-exec)', async () => {
    const { client, peer } = await pair();
    const atPeer = collect(peer);
    const a = memfdCreate('pass-a', PAGE_SIZE);
    const b = memfdCreate('pass-b', PAGE_SIZE);
    client.send(Buffer.from('two fds'), [a, b]);
    await until(() => atPeer.length === 1);
    const [msg] = atPeer;
    expect(msg!.data.toString()).toBe('two fds');
    expect(msg!.fds).toHaveLength(2);
    expect(fs.fstatSync(msg!.fds[0]!).ino).toBe(fs.fstatSync(a).ino);
    expect(fs.fstatSync(msg!.fds[1]!).ino).toBe(fs.fstatSync(b).ino);
    expect(msg!.fds[0]).not.toBe(a);
    for (const fd of msg!.fds) {
      const flags = /flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!;
      expect(parseInt(flags, 8) & 0o2000000).toBe(0o2000000); // MSG_CMSG_CLOEXEC
      closeFd(fd);
    }
    closeFd(a);
    closeFd(b);
  });

  it('closes received fds when nobody listens for messages', async () => {
    const { client, peer } = await pair();
    void peer;
    const before = memfds();
    const a = memfdCreate('unheard', PAGE_SIZE);
    client.send(Buffer.from('x'), [a, a, a]);
    closeFd(a);
    await tick(200); // delivered to a socket without 'message' listener: fds closed
    expect(memfds()).toBe(before);
  });

  it('reports the peer credentials of the same process', async () => {
    const { client, peer } = await pair();
    const me = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
    expect(peer.peerCred()).toMatchObject(me);
    expect(client.peerCred()).toMatchObject(me);
    expect(peerCredOfFd(peer.fd)).toEqual(peer.peerCred());
    expect(Array.isArray(peer.peerCred().groups)).toBe(true);
  });

  it('reports uid, gid and supplementary groups of a peer of another uid', async () => {
    const p = sockPath();
    const server = track(SeqpacketServer.listen(p));
    fs.chmodSync(p, 0o666);
    const conn = once<[SeqpacketSocket]>(server, 'connection', 20_000);
    const child = spawn(
      'setpriv',
      ['--reuid=1002', '--regid=1002', '--groups=2001,2002', process.execPath, CHILD, bindingPath, 'peer', p],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      const [sock] = await conn;
      track(sock);
      const msg = once<[Buffer, number[]]>(sock, 'message', 20_000);
      const cred = sock.peerCred();
      expect(cred.pid).toBe(child.pid);
      expect(cred.uid).toBe(1002);
      expect(cred.gid).toBe(1002);
      expect([...cred.groups].sort()).toEqual([2001, 2002]);
      expect(peerCredOfFd(sock.fd)).toEqual(cred);
      const [data] = await msg;
      expect(data.toString()).toBe('hello');
      // the child closes its end when its stdin ends: 'close' here, once
      const closed = once(sock, 'close', 20_000);
      child.stdin!.end();
      await closed;
      expect(sock.fd).toBe(-1);
    } finally {
      child.kill();
    }
  });

  it('peerCredOfFd works on a net.Socket (stream) fd', async () => {
    const p = sockPath();
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(p, r));
    try {
      const got = new Promise<unknown>((resolve) =>
        srv.once('connection', (s) => {
          const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
          resolve(peerCredOfFd(fd));
          s.destroy();
        }),
      );
      const c = net.connect(p);
      c.on('error', () => {});
      expect(await got).toMatchObject({ pid: process.pid, uid: process.getuid!() });
      c.destroy();
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('a packet larger than maxPacket gives EMSGSIZE, its fds are closed, the socket stays usable', async () => {
    const { client, peer } = await pair({ maxPacket: 16 });
    const errors: NativeError[] = [];
    peer.on('error', (e) => errors.push(e));
    const atPeer = collect(peer);
    const before = memfds();
    const a = memfdCreate('trunc', PAGE_SIZE);
    client.send(Buffer.alloc(100, 1), [a]);
    closeFd(a);
    client.send(Buffer.from('small'));
    await until(() => atPeer.length === 1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(NativeError);
    expect(errors[0]!.code).toBe('EMSGSIZE');
    expect(errors[0]!.syscall).toBe('recvmsg');
    expect(atPeer[0]!.data.toString()).toBe('small');
    expect(memfds()).toBe(before);
  });

  it('more fds than maxFds gives ETOOMANYREFS, every received fd is closed', async () => {
    const { client, peer } = await pair({ maxFds: 2 });
    const errors: NativeError[] = [];
    peer.on('error', (e) => errors.push(e));
    const atPeer = collect(peer);
    const before = memfds();
    const fds = [0, 1, 2, 3, 4].map((i) => memfdCreate(`many-${i}`, PAGE_SIZE));
    client.send(Buffer.from('too many'), fds);
    fds.forEach((fd) => closeFd(fd));
    const ok = memfdCreate('ok', PAGE_SIZE);
    client.send(Buffer.from('fine'), [ok]);
    closeFd(ok);
    await until(() => atPeer.length === 1);
    expect(errors.map((e) => e.code)).toEqual(['ETOOMANYREFS']);
    expect(atPeer[0]!.data.toString()).toBe('fine');
    expect(atPeer[0]!.fds).toHaveLength(1);
    closeFd(atPeer[0]!.fds[0]!);
    expect(memfds()).toBe(before);
  });

  it('queues under backpressure: 10,000 packets arrive in order and drain fires', async () => {
    const { client, peer } = await pair();
    const COUNT = 10_000;
    const seen: number[] = [];
    let fdsSeen = 0;
    const probe = memfdCreate('bp-probe', PAGE_SIZE);
    const ino = fs.fstatSync(probe).ino;
    // A slow reader: pauses 1 ms every 500 packets.
    peer.on('message', (data, fds) => {
      seen.push(data.readUInt32LE(0));
      for (const fd of fds) {
        expect(fs.fstatSync(fd).ino).toBe(ino);
        closeFd(fd);
        fdsSeen++;
      }
      if (seen.length % 500 === 0) {
        const end = Date.now() + 1;
        while (Date.now() < end);
      }
    });
    let drains = 0;
    client.on('drain', () => drains++);
    let queuedAt = -1;
    const payload = Buffer.alloc(512);
    for (let i = 0; i < COUNT; i++) {
      payload.writeUInt32LE(i, 0);
      const sent = client.send(payload, i % 1000 === 999 ? [probe] : undefined);
      if (!sent && queuedAt < 0) queuedAt = i;
    }
    closeFd(probe); // queued packets hold their own duplicates
    expect(queuedAt).toBeGreaterThan(0);
    expect(client.queuedPackets).toBeGreaterThan(0);
    await until(() => seen.length === COUNT, 30_000);
    await until(() => drains > 0);
    expect(drains).toBe(1);
    expect(client.queuedPackets).toBe(0);
    for (let i = 0; i < COUNT; i++) if (seen[i] !== i) throw new Error(`packet ${i} out of order: ${seen[i]}`);
    expect(fdsSeen).toBe(10);
  });

  it('close from the client side: the server side gets one close event', async () => {
    const { client, peer } = await pair();
    let closes = 0;
    let clientEvents = 0;
    peer.on('close', () => closes++);
    client.on('close', () => clientEvents++);
    client.close();
    client.close(); // idempotent
    expect(client.fd).toBe(-1);
    expect(client.closed).toBe(true);
    await until(() => closes === 1);
    await tick(20);
    expect(closes).toBe(1);
    expect(clientEvents).toBe(0); // no callback after close()
    expect(peer.fd).toBe(-1);
    expect(peer.closed).toBe(true);
    expect(() => client.send(Buffer.from('x'))).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('close from the server side: the client gets close; a send racing it gives EPIPE', async () => {
    const { client, peer } = await pair();
    const events: string[] = [];
    client.on('close', () => events.push('close'));
    client.on('error', (e) => events.push(`error:${e.code}`));
    peer.close();
    client.send(Buffer.from('too late')); // before the loop notices the hang-up
    await until(() => events.includes('close'));
    expect(events).toContain('error:EPIPE');
    expect(events.filter((e) => e === 'close')).toHaveLength(1);
  });

  it('connect errors are NativeErrors: ENOENT, ECONNREFUSED; listen does not unlink (EADDRINUSE)', () => {
    const p = sockPath();
    try {
      SeqpacketSocket.connect(p);
      throw new Error('connected');
    } catch (e) {
      expect(e).toBeInstanceOf(NativeError);
      expect((e as NativeError).code).toBe('ENOENT');
      expect((e as NativeError).syscall).toBe('connect');
    }
    const s = SeqpacketServer.listen(p);
    expect(s.fd).toBeGreaterThanOrEqual(0);
    expect(() => SeqpacketServer.listen(p)).toThrow(expect.objectContaining({ code: 'EADDRINUSE', syscall: 'bind' }));
    s.close();
    s.close();
    expect(s.fd).toBe(-1);
    expect(fs.existsSync(p)).toBe(true); // the caller unlinks
    expect(() => SeqpacketSocket.connect(p)).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }));
    // a stream socket is not a seqpacket one
    expect(() => SeqpacketSocket.connect('/dev/null')).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }));
  });

  it('unref: idle sockets and servers do not keep the process alive', () => {
    const p = sockPath();
    const r = spawnSync(process.execPath, [CHILD, bindingPath, 'unref', p], { encoding: 'utf8', timeout: 10_000 });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ started: true });
  });

  it('server: accept4 EMFILE is an error event, accepting pauses and then resumes', () => {
    const p = sockPath();
    const r = spawnSync('prlimit', ['--nofile=64', process.execPath, CHILD, bindingPath, 'emfile', p], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.errors).toEqual(['EMFILE']);
    // paused 100 ms between attempts: a few errors, not a busy loop
    expect(res.errorsWhileFull).toBeGreaterThanOrEqual(1);
    expect(res.errorsWhileFull).toBeLessThan(20);
    expect(res.acceptedWhileFull).toBe(0);
    expect(res.acceptedTotal).toBeGreaterThan(10); // the backlog is drained once fds are free
  });

  it('unref/ref return this and the socket keeps working', async () => {
    const { client, peer, server } = await pair();
    expect(client.unref()).toBe(client);
    expect(server.unref()).toBe(server);
    const got = once<[Buffer]>(peer, 'message');
    client.send(Buffer.from('still here'));
    expect((await got)[0].toString()).toBe('still here');
    expect(client.ref()).toBe(client);
    expect(server.ref()).toBe(server);
  });
});
