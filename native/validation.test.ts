// Argument validation of the public surface: every bad option throws a
// TypeError (wrong type) or RangeError (bad value) whose message names it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  closeFd,
  getSeals,
  KmodDevice,
  Mapping,
  memfdCreate,
  NativeError,
  PAGE_SIZE,
  peerCredOfFd,
  SeqpacketServer,
  SeqpacketSocket,
} from './index';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Row = [label: string, fn: () => unknown, type: typeof TypeError | typeof RangeError, names: string];

let dir: string;
let memfd: number;
let mapping: Mapping;
let server: SeqpacketServer;
let client: SeqpacketSocket;
let dev: KmodDevice;
let fdsBefore: number;

beforeAll(() => {
  fdsBefore = fs.readdirSync('/proc/self/fd').length;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmb-valid-'));
  memfd = memfdCreate('valid', PAGE_SIZE);
  mapping = Mapping.map(memfd, { length: PAGE_SIZE, writable: true });
  server = SeqpacketServer.listen(path.join(dir, 's.sock'));
  client = SeqpacketSocket.connect(path.join(dir, 's.sock'));
  dev = KmodDevice.open('/dev/null'); // any O_RDWR-openable file: validation happens before the ioctl
});

afterAll(async () => {
  mapping.release();
  closeFd(memfd);
  client.close();
  server.close();
  dev.close();
  dev.close();
  fs.rmSync(dir, { recursive: true, force: true });
  await new Promise((r) => setTimeout(r, 20));
  expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore);
});

const X = {} as any;
const rows: Row[] = [
  // memfdCreate
  ['memfdCreate name not a string', () => memfdCreate(1 as any, 4096), TypeError, 'name'],
  ['memfdCreate name with NUL', () => memfdCreate('a\0b', 4096), TypeError, 'name'],
  ['memfdCreate name too long', () => memfdCreate('n'.repeat(250), 4096), RangeError, 'name'],
  ['memfdCreate size string', () => memfdCreate('x', '4096' as any), TypeError, 'sizeBytes'],
  ['memfdCreate size 0', () => memfdCreate('x', 0), RangeError, 'sizeBytes'],
  ['memfdCreate size negative', () => memfdCreate('x', -4096), RangeError, 'sizeBytes'],
  ['memfdCreate size fractional', () => memfdCreate('x', 4096.5), RangeError, 'sizeBytes'],
  ['memfdCreate size NaN', () => memfdCreate('x', NaN), RangeError, 'sizeBytes'],
  ['memfdCreate size Infinity', () => memfdCreate('x', Infinity), RangeError, 'sizeBytes'],
  ['memfdCreate size > MAX_SAFE_INTEGER', () => memfdCreate('x', 2 ** 53), RangeError, 'sizeBytes'],
  ['memfdCreate size bigint', () => memfdCreate('x', 4096n as any), TypeError, 'sizeBytes'],
  ['memfdCreate options not an object', () => memfdCreate('x', 4096, 'huge' as any), TypeError, 'options'],
  ['memfdCreate options.hugetlb not boolean', () => memfdCreate('x', 4096, { hugetlb: 1 as any }), TypeError, 'options.hugetlb'],
  ['memfdCreate unknown option', () => memfdCreate('x', 4096, { hugepages: true } as any), TypeError, 'hugepages'],
  // fds
  ['getSeals fd string', () => getSeals('3' as any), TypeError, 'fd'],
  ['getSeals fd negative', () => getSeals(-1), RangeError, 'fd'],
  ['closeFd fd fractional', () => closeFd(1.5), RangeError, 'fd'],
  ['closeFd fd too big', () => closeFd(2 ** 31), RangeError, 'fd'],
  ['peerCredOfFd fd null', () => peerCredOfFd(null as any), TypeError, 'fd'],
  // Mapping.map
  ['map fd undefined', () => Mapping.map(undefined as any, { length: 4096, writable: true }), TypeError, 'fd'],
  ['map options missing', () => Mapping.map(memfd, undefined as any), TypeError, 'options'],
  ['map options.length missing', () => Mapping.map(memfd, { writable: true } as any), TypeError, 'options.length'],
  ['map options.length 0', () => Mapping.map(memfd, { length: 0, writable: true }), RangeError, 'options.length'],
  ['map options.length fractional', () => Mapping.map(memfd, { length: 1.5, writable: true }), RangeError, 'options.length'],
  ['map options.writable missing', () => Mapping.map(memfd, { length: 4096 } as any), TypeError, 'options.writable'],
  ['map options.writable string', () => Mapping.map(memfd, { length: 4096, writable: 'yes' as any }), TypeError, 'options.writable'],
  ['map options.shared number', () => Mapping.map(memfd, { length: 4096, writable: true, shared: 1 as any }), TypeError, 'options.shared'],
  ['map options.offset unaligned', () => Mapping.map(memfd, { length: 4096, writable: true, offset: 100 }), RangeError, 'options.offset'],
  ['map options.offset negative', () => Mapping.map(memfd, { length: 4096, writable: true, offset: -4096 }), RangeError, 'options.offset'],
  ['map options.offset string', () => Mapping.map(memfd, { length: 4096, writable: true, offset: '0' as any }), TypeError, 'options.offset'],
  ['map offset+length overflow', () => Mapping.map(memfd, { length: 2 ** 53 - 1, writable: true, offset: 4096 }), RangeError, 'options.offset + options.length'],
  ['map unknown option', () => Mapping.map(memfd, { length: 4096, writable: true, prot: 'rw' } as any), TypeError, 'prot'],
  ['protect bad value', () => mapping.protect('rw' as any), TypeError, 'prot'],
  ['protect number', () => mapping.protect(3 as any), TypeError, 'prot'],
  ['Mapping constructor', () => new (Mapping as any)(X, X), TypeError, 'Mapping.map()'],
  // SeqpacketSocket
  ['connect path number', () => SeqpacketSocket.connect(5 as any), TypeError, 'path'],
  ['connect path empty', () => SeqpacketSocket.connect(''), RangeError, 'path'],
  ['connect path too long', () => SeqpacketSocket.connect('/' + 'p'.repeat(107)), RangeError, 'path'],
  ['connect path NUL', () => SeqpacketSocket.connect('/tmp/a\0b'), TypeError, 'path'],
  ['connect options.maxPacket 0', () => SeqpacketSocket.connect('/x', { maxPacket: 0 }), RangeError, 'options.maxPacket'],
  ['connect options.maxPacket huge', () => SeqpacketSocket.connect('/x', { maxPacket: 2 ** 40 }), RangeError, 'options.maxPacket'],
  ['connect options.maxFds 254', () => SeqpacketSocket.connect('/x', { maxFds: 254 }), RangeError, 'options.maxFds'],
  ['connect options.maxFds string', () => SeqpacketSocket.connect('/x', { maxFds: '8' as any }), TypeError, 'options.maxFds'],
  ['connect unknown option', () => SeqpacketSocket.connect('/x', { backlog: 1 } as any), TypeError, 'backlog'],
  ['send data string', () => client.send('hi' as any), TypeError, 'data'],
  ['send data Uint16Array', () => client.send(new Uint16Array(2) as any), TypeError, 'data'],
  ['send data empty', () => client.send(new Uint8Array(0)), RangeError, 'data'],
  ['send fds not array', () => client.send(Buffer.from('x'), 3 as any), TypeError, 'fds'],
  ['send fds[1] negative', () => client.send(Buffer.from('x'), [memfd, -1]), RangeError, 'fds[1]'],
  ['send fds[0] string', () => client.send(Buffer.from('x'), ['3' as any]), TypeError, 'fds[0]'],
  ['send too many fds', () => client.send(Buffer.from('x'), new Array(254).fill(memfd)), RangeError, 'fds'],
  ['SeqpacketSocket constructor', () => new (SeqpacketSocket as any)(X, X), TypeError, 'connect()'],
  // SeqpacketServer
  ['listen path object', () => SeqpacketServer.listen({} as any), TypeError, 'path'],
  ['listen options.backlog 0', () => SeqpacketServer.listen('/x', { backlog: 0 }), RangeError, 'options.backlog'],
  ['listen options.maxPacket fractional', () => SeqpacketServer.listen('/x', { maxPacket: 1.5 }), RangeError, 'options.maxPacket'],
  ['listen options.maxFds -1', () => SeqpacketServer.listen('/x', { maxFds: -1 }), RangeError, 'options.maxFds'],
  ['listen options array', () => SeqpacketServer.listen('/x', [] as any), TypeError, 'options'],
  // KmodDevice
  ['kmod open path number', () => KmodDevice.open(1 as any), TypeError, 'path'],
  ['kmod create size 0', () => dev.create(0), RangeError, 'sizeBytes'],
  ['kmod create size string', () => dev.create('1MiB' as any), TypeError, 'sizeBytes'],
  ['kmod create options.hugepage', () => dev.create(4096, { hugepage: 'y' as any }), TypeError, 'options.hugepage'],
  ['kmod create options.numaNode -2', () => dev.create(4096, { numaNode: -2 }), RangeError, 'options.numaNode'],
  ['kmod create options.numaNode fractional', () => dev.create(4096, { numaNode: 0.5 }), RangeError, 'options.numaNode'],
  ['kmod openGrant regionId number', () => dev.openGrant(1 as any, { readOnly: true }), TypeError, 'regionId'],
  ['kmod openGrant regionId 0n', () => dev.openGrant(0n, { readOnly: true }), RangeError, 'regionId'],
  ['kmod openGrant regionId 2^64', () => dev.openGrant(2n ** 64n, { readOnly: true }), RangeError, 'regionId'],
  ['kmod openGrant options missing', () => dev.openGrant(1n, undefined as any), TypeError, 'options'],
  ['kmod openGrant options.readOnly missing', () => dev.openGrant(1n, {} as any), TypeError, 'options.readOnly'],
  ['kmod openGrant options.cloexec string', () => dev.openGrant(1n, { readOnly: false, cloexec: 'no' as any }), TypeError, 'options.cloexec'],
  ['kmod revoke grantId negative', () => dev.revoke(-1n), RangeError, 'grantId'],
  ['kmod destroy regionId string', () => dev.destroy('1' as any), TypeError, 'regionId'],
  ['kmod info regionId undefined', () => dev.info(undefined as any), TypeError, 'regionId'],
];

describe('argument validation', () => {
  it.each(rows)('%s', (_label, fn, type, name) => {
    let thrown: unknown;
    try {
      fn();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(type);
    expect((thrown as Error).message).toContain(name);
  });

  it('the ioctls reach the kernel and come back as NativeErrors (ENOTTY on /dev/null)', () => {
    const cases: Array<[() => unknown, string]> = [
      [() => dev.create(4096), 'ioctl(SHMBROKER_IOC_CREATE)'],
      [() => dev.openGrant(1n, { readOnly: true }), 'ioctl(SHMBROKER_IOC_OPEN)'],
      [() => dev.revoke(1n), 'ioctl(SHMBROKER_IOC_REVOKE)'],
      [() => dev.destroy(1n), 'ioctl(SHMBROKER_IOC_DESTROY)'],
      [() => dev.info(1n), 'ioctl(SHMBROKER_IOC_INFO)'],
      [() => dev.list(), 'ioctl(SHMBROKER_IOC_LIST)'],
    ];
    for (const [fn, syscall] of cases) {
      expect(fn).toThrow(NativeError);
      expect(fn).toThrow(expect.objectContaining({ code: 'ENOTTY', errno: 25, syscall }));
    }
  });

  it('KmodDevice.open of a missing device is ENOENT; a closed device is EBADF', () => {
    expect(() => KmodDevice.open(path.join(dir, 'no-such-device'))).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'open' }),
    );
    const d = KmodDevice.open('/dev/null');
    expect(d.fd).toBeGreaterThan(2);
    d.close();
    expect(d.fd).toBe(-1);
    expect(() => d.list()).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});
