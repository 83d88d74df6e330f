/**
 * shmbroker native layer: the public surface of the C++ addon
 * (build/Release/shmbroker_native.node, built from native/src by binding.gyp,
 * or the prebuilt binary of the SDK package: see findBinding).
 *
 * Every option is validated here and named in the error: TypeError for a
 * wrong type, RangeError for a value out of range. Failing syscalls throw (or
 * emit) a NativeError with `code` ('EACCES'), `errno` (13) and `syscall`.
 *
 * Sizes are JS numbers: integers in (0, Number.MAX_SAFE_INTEGER].
 */
import { EventEmitter } from 'node:events';
import { markAsUntransferable } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as path from 'node:path';

// ---------------------------------------------------------------------------
// Errors

/** A failed system call: message like "memfd_create: Invalid argument (EINVAL)". */
export class NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  constructor(message: string, code: string, errno: number, syscall: string) {
    super(message);
    this.name = 'NativeError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
  }
}

// ---------------------------------------------------------------------------
// Loading the binding

interface NativeMappingHandle {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly length: number;
  readonly writable: boolean;
  readonly shared: boolean;
  readonly released: boolean;
  release(): void;
  protect(prot: number): void;
}

type SocketCallback = (event: string, a?: unknown, b?: unknown) => void;

interface NativeSocketHandle {
  readonly fd: number;
  readonly queuedPackets: number;
  start(cb: SocketCallback): void;
  send(data: Uint8Array, fds?: number[]): boolean;
  peerCred(): PeerCred;
  close(): void;
  ref(): unknown;
  unref(): unknown;
}

interface NativeServerHandle {
  readonly fd: number;
  start(cb: SocketCallback): void;
  close(): void;
  ref(): unknown;
  unref(): unknown;
}

interface NativeKmodHandle {
  readonly fd: number;
  create(size: number, hugepage: boolean, numaNode: number): bigint;
  openGrant(regionId: bigint, readOnly: boolean, cloexec: boolean, allowNotify?: boolean): { fd: number; grantId: bigint };
  listGrants(regionId: bigint): bigint[];
  revoke(grantId: bigint): void;
  destroy(regionId: bigint): void;
  info(regionId: bigint): KmodRegionInfo;
  list(): bigint[];
  close(): void;
}

/** What both doorbell handles of the addon (memfd and kernel) do alike. */
interface NativeBellHandle {
  readonly fd: number;
  seq(): number;
  notify(): number;
  start(cb: () => void): void;
  stop(): void;
  close(): void;
}

interface NativeDoorbellHandle extends NativeBellHandle {
  deleted(): boolean;
}

interface NativeKernelDoorbellHandle extends NativeBellHandle {
  revoked(): boolean;
}

interface Binding {
  setErrorClass(ctor: typeof NativeError): void;
  eventfdCreate(): number;
  dupFd(fd: number): number;
  Doorbell: new (pageFd: number, bellFd: number, mayNotify: boolean) => NativeDoorbellHandle;
  KernelDoorbell: new (regionFd: number) => NativeKernelDoorbellHandle;
  memfdCreate(name: string, size: number, hugetlb: boolean): number;
  getSeals(fd: number): number;
  closeFd(fd: number): void;
  nofileLimit(raise: boolean): { soft: number; hard: number };
  peerCredOfFd(fd: number): PeerCred;
  flockExclusive(fd: number): boolean;
  sdNotify(socketPath: string, message: string): void;
  SEAL: { SEAL: number; SHRINK: number; GROW: number; WRITE: number; FUTURE_WRITE: number };
  pageSize: number;
  Mapping: { map(fd: number, length: number, writable: boolean, shared: boolean, offset: number): NativeMappingHandle };
  SeqpacketSocket: { connect(path: string, maxPacket: number, maxFds: number): NativeSocketHandle };
  SeqpacketServer: {
    listen(path: string, backlog: number, maxPacket: number, maxFds: number): NativeServerHandle;
  };
  KmodDevice: { open(path: string): NativeKmodHandle };
}

/**
 * The directory holding package.json, walking up from here: native/ when run
 * from source (vitest), dist/native/ when compiled, in the repository (the
 * broker) or in an installed @shmbroker/sdk (packages/sdk).
 */
function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`shmbroker native: no package.json above ${__dirname}`);
    dir = parent;
  }
}

// node-gyp-build picks build/Release (built from source: `node-gyp rebuild`
// in the repository, or the package's install script once approved), else the
// matching prebuilt binary the SDK package ships in prebuilds/ (prebuildify,
// Node-API, so one file serves every Node version): an install whose scripts
// npm 11 has not run yet still loads. packages/sdk/README.md says more.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

function findBinding(): string {
  const root = packageRoot();
  try {
    return nodeGypBuild.path(root);
  } catch (err) {
    const sdk = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name?: string }).name === '@shmbroker/sdk';
    throw new Error(
      sdk
        ? `shmbroker native addon: no prebuilt binary in ${path.join(root, 'prebuilds')} matches ${process.platform}-${process.arch} (Node-API), and none was built from source. ` +
            'Approve the package\'s install script so npm builds it (needs python3, make and a C++ compiler): `npm install-scripts approve @shmbroker/sdk` then `npm rebuild @shmbroker/sdk`. ' +
            `(${(err as Error).message.trim()})`
        : `shmbroker native addon not built in ${path.join(root, 'build', 'Release')}: run \`npx node-gyp rebuild\` at the repository root (npm ci does it)`,
    );
  }
}

/** Absolute path of the addon this process loads: build/Release/shmbroker_native.node, or the SDK package's prebuilt binary. */
export const bindingPath: string = findBinding();

function loadBinding(): Binding {
  let b: Binding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    b = require(bindingPath) as Binding;
  } catch (err) {
    const e = new Error(`shmbroker native addon not loadable from ${bindingPath}: ${(err as Error).message}`);
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
  b.setErrorClass(NativeError);
  return b;
}

const native: Binding = loadBinding();

// ---------------------------------------------------------------------------
// Validation helpers (exported for the other layers that take the same options)

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

/** A size in bytes: integer in [1, MAX_SAFE_INTEGER] (fits size_t and off_t on 64-bit Linux). */
export function checkSize(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number (bytes), got ${describe(v)}`);
  if (!Number.isInteger(v) || v <= 0 || v > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`${name} must be an integer in [1, ${Number.MAX_SAFE_INTEGER}], got ${v}`);
  }
  return v;
}

/** An integer in [min, max]. */
export function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${v}`);
  }
  return v;
}

/** A file descriptor: integer in [0, 2^31 - 1]. */
export function checkFd(name: string, v: unknown): number {
  return checkInt(name, v, 0, 0x7fffffff);
}

function checkBool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${describe(v)}`);
  return v;
}

function checkOptBool(name: string, v: unknown, dflt: boolean): boolean {
  return v === undefined ? dflt : checkBool(name, v);
}

function checkString(name: string, v: unknown): string {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${describe(v)}`);
  if (v.includes('\0')) throw new TypeError(`${name} must not contain NUL characters`);
  return v;
}

/** An id: bigint in [1, 2^64 - 1]. */
function checkId(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint, got ${describe(v)}`);
  if (v <= 0n || v > 0xffffffffffffffffn) throw new RangeError(`${name} must be in [1, 2^64 - 1], got ${v}`);
  return v;
}

/** An options object (or undefined) with only the known keys. */
function checkOptions(name: string, v: unknown, known: readonly string[]): Record<string, unknown> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`${name} must be an object, got ${describe(v)}`);
  }
  for (const key of Object.keys(v)) {
    if (!known.includes(key)) throw new TypeError(`${name}: unknown option '${key}' (known: ${known.join(', ')})`);
  }
  return v as Record<string, unknown>;
}

/** sun_path holds 108 bytes including the terminating NUL. */
function checkSocketPath(name: string, v: unknown): string {
  const p = checkString(name, v);
  const len = Buffer.byteLength(p);
  if (len === 0 || len > 107) throw new RangeError(`${name} must be 1 to 107 bytes long, got ${len}`);
  return p;
}

// ---------------------------------------------------------------------------
// fds, memfd

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
  /** Supplementary groups, by SO_PEERGROUPS (taken at connect time). */
  groups: number[];
}

/** F_SEAL_* bits, as F_GET_SEALS reports them. */
export const SEAL: { SEAL: number; SHRINK: number; GROW: number; WRITE: number; FUTURE_WRITE: number } =
  Object.freeze({ ...native.SEAL });

/** The system page size (mmap offsets must be multiples of it). */
export const PAGE_SIZE: number = native.pageSize;

/**
 * memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING[|MFD_HUGETLB]), ftruncate(size),
 * fchmod(0600), F_ADD_SEALS(SHRINK|GROW|SEAL). On any failure the fd is
 * closed and a NativeError thrown. Returns the fd (the caller owns it).
 */
export function memfdCreate(name: string, sizeBytes: number, options?: { hugetlb?: boolean }): number {
  checkString('name', name);
  if (Buffer.byteLength(name) > 249) throw new RangeError(`name must be at most 249 bytes, got ${Buffer.byteLength(name)}`);
  checkSize('sizeBytes', sizeBytes);
  const o = checkOptions('options', options, ['hugetlb']);
  const hugetlb = checkOptBool('options.hugetlb', o.hugetlb, false);
  return native.memfdCreate(name, sizeBytes, hugetlb);
}

/** fcntl(F_GET_SEALS). */
export function getSeals(fd: number): number {
  return native.getSeals(checkFd('fd', fd));
}

/** SO_PEERCRED + SO_PEERGROUPS of a connected AF_UNIX socket fd (e.g. net.Socket's _handle.fd). */
export function peerCredOfFd(fd: number): PeerCred {
  return native.peerCredOfFd(checkFd('fd', fd));
}

/** eventfd(0, EFD_CLOEXEC|EFD_NONBLOCK): a region's doorbell. The caller owns the fd. */
export function eventfdCreate(): number {
  return native.eventfdCreate();
}

/** fcntl(F_DUPFD_CLOEXEC). The caller owns the new fd. */
export function dupFd(fd: number): number {
  return native.dupFd(checkFd('fd', fd));
}

/** flock(fd, LOCK_EX|LOCK_NB): true when now held by this process, false when another holds it. */
export function flockExclusive(fd: number): boolean {
  return native.flockExclusive(checkFd('fd', fd));
}

/** One sd_notify(3) datagram ("READY=1", ...) to `socketPath` ($NOTIFY_SOCKET; "@name" is abstract). */
export function sdNotify(socketPath: string, message: string): void {
  native.sdNotify(checkString('socketPath', socketPath), checkString('message', message));
}

/** close(2). */
export function closeFd(fd: number): void {
  native.closeFd(checkFd('fd', fd));
}

/**
 * RLIMIT_NOFILE of this process (-1 = unlimited); with `raise`, the soft
 * limit is first raised to the hard one (setrlimit; no privilege needed).
 */
export function nofileLimit(raise = false): { soft: number; hard: number } {
  return native.nofileLimit(raise === true);
}

// ---------------------------------------------------------------------------
// Mapping

export type Protection = 'none' | 'read' | 'readwrite';
const PROT: Record<Protection, number> = { none: 0, read: 1, readwrite: 2 };

export interface MapOptions {
  length: number;
  writable: boolean;
  /** SharedArrayBuffer instead of ArrayBuffer (for Atomics). Default false. */
  shared?: boolean;
  /** Byte offset into the fd, a multiple of PAGE_SIZE. Default 0. */
  offset?: number;
}

const kInternal: unique symbol = Symbol('shmbroker.native.internal');

/** One mmap(MAP_SHARED) of an fd. The fd may be closed once mapped. */
export class Mapping {
  readonly #h: NativeMappingHandle;
  /** External buffer over the mapping; a SharedArrayBuffer when mapped with shared: true. */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;

  /** @internal use Mapping.map() */
  constructor(token: typeof kInternal, handle: NativeMappingHandle) {
    if (token !== kInternal) throw new TypeError('use Mapping.map()');
    this.#h = handle;
    this.buffer = handle.buffer;
    // A plain ArrayBuffer's pages are unmapped with this Mapping (see
    // native/src/mapping.cc, NewExternalArrayBuffer): it must not move to
    // another thread. postMessage/structuredClone then refuse it with a
    // DataCloneError instead of detaching it.
    if (!(this.buffer instanceof SharedArrayBuffer)) markAsUntransferable(this.buffer);
  }

  static map(fd: number, options: MapOptions): Mapping {
    checkFd('fd', fd);
    if (options === undefined) throw new TypeError('options must be an object, got undefined');
    const o = checkOptions('options', options, ['length', 'writable', 'shared', 'offset']);
    const length = checkSize('options.length', o.length);
    const writable = checkBool('options.writable', o.writable);
    const shared = checkOptBool('options.shared', o.shared, false);
    const offset = o.offset === undefined ? 0 : checkInt('options.offset', o.offset, 0, Number.MAX_SAFE_INTEGER);
    if (offset % PAGE_SIZE !== 0) throw new RangeError(`options.offset must be a multiple of ${PAGE_SIZE}, got ${offset}`);
    if (offset + length > Number.MAX_SAFE_INTEGER) {
      throw new RangeError('options.offset + options.length must not exceed Number.MAX_SAFE_INTEGER');
    }
    return new Mapping(kInternal, native.Mapping.map(fd, length, writable, shared, offset));
  }

  get length(): number {
    return this.#h.length;
  }
  get writable(): boolean {
    return this.#h.writable;
  }
  get shared(): boolean {
    return this.#h.shared;
  }
  get released(): boolean {
    return this.#h.released;
  }

  /**
   * Idempotent. ArrayBuffer: detached (byteLength 0), then unmapped.
   * SharedArrayBuffer: the range becomes private zero pages (stale views read
   * zeros, never fault); unmapped when the buffer is garbage-collected.
   */
  release(): void {
    this.#h.release();
  }

  /** mprotect(2) on the whole mapping; NativeError (EACCES on a read-only fd, EBADF once released). */
  protect(prot: Protection): void {
    if (typeof prot !== 'string' || !Object.prototype.hasOwnProperty.call(PROT, prot)) {
      throw new TypeError(`prot must be 'none', 'read' or 'readwrite', got ${typeof prot === 'string' ? `'${prot}'` : describe(prot)}`);
    }
    this.#h.protect(PROT[prot]);
  }
}

// ---------------------------------------------------------------------------
// SOCK_SEQPACKET

export interface SocketOptions {
  /** Receive buffer per packet, bytes (default 65536); a bigger packet gives 'error' EMSGSIZE. */
  maxPacket?: number;
  /** Most fds accepted per packet (default 8, at most 253); more give 'error' ETOOMANYREFS. */
  maxFds?: number;
}

export interface ServerOptions extends SocketOptions {
  /** listen(2) backlog (default 511). */
  backlog?: number;
}

const MAX_PACKET_LIMIT = 64 * 1024 * 1024;

function socketLimits(o: Record<string, unknown>): { maxPacket: number; maxFds: number } {
  const maxPacket = o.maxPacket === undefined ? 65536 : checkInt('options.maxPacket', o.maxPacket, 1, MAX_PACKET_LIMIT);
  const maxFds = o.maxFds === undefined ? 8 : checkInt('options.maxFds', o.maxFds, 0, 253);
  return { maxPacket, maxFds };
}

/**
 * A connected AF_UNIX SOCK_SEQPACKET socket in the event loop.
 *
 * Events: 'message' (data: Buffer, fds: number[]) — the listener owns the fds
 * (when there is no 'message' listener they are closed); 'error' (NativeError);
 * 'close' — peer hung up, emitted once, the socket is then closed; 'drain' —
 * queued packets all sent. Nothing is emitted after close().
 */
export class SeqpacketSocket extends EventEmitter {
  #h: NativeSocketHandle;
  #closed = false;

  /** @internal use SeqpacketSocket.connect() or SeqpacketServer */
  constructor(token: typeof kInternal, handle: NativeSocketHandle) {
    super();
    if (token !== kInternal) throw new TypeError('use SeqpacketSocket.connect()');
    this.#h = handle;
    handle.start((event, a, b) => this.#dispatch(event, a, b));
  }

  /** Connects at once (AF_UNIX); NativeError ENOENT, ECONNREFUSED, EAGAIN (backlog full), EACCES... */
  static connect(path: string, options?: SocketOptions): SeqpacketSocket {
    checkSocketPath('path', path);
    const o = checkOptions('options', options, ['maxPacket', 'maxFds']);
    const { maxPacket, maxFds } = socketLimits(o);
    return new SeqpacketSocket(kInternal, native.SeqpacketSocket.connect(path, maxPacket, maxFds));
  }

  #dispatch(event: string, a: unknown, b: unknown): void {
    switch (event) {
      case 'message': {
        const fds = b as number[];
        if (this.listenerCount('message') === 0) {
          for (const fd of fds) native.closeFd(fd);
          return;
        }
        this.emit('message', a as Buffer, fds);
        return;
      }
      case 'error':
        this.emit('error', a as NativeError);
        return;
      case 'close':
        this.#closed = true;
        this.emit('close');
        return;
      case 'drain':
        this.emit('drain');
        return;
    }
  }

  /** The socket's fd, -1 once closed. */
  get fd(): number {
    return this.#h.fd;
  }

  /** True once close() was called or the peer hung up. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Packets waiting in the internal send queue. */
  get queuedPackets(): number {
    return this.#h.queuedPackets;
  }

  /** SO_PEERCRED + SO_PEERGROUPS, as taken at connect time. */
  peerCred(): PeerCred {
    return this.#h.peerCred();
  }

  /**
   * Sends exactly one packet, with `fds` attached by SCM_RIGHTS. Returns true
   * when it went out at once, false when it was queued ('drain' follows).
   * The fds may be closed by the caller as soon as send() returns (queued
   * packets hold duplicates). A failing send (EPIPE...) is reported as an
   * 'error' event on the next tick; sending after close() throws (EBADF).
   * Empty packets are refused: the receiver could not tell one from a hang-up.
   */
  send(data: Uint8Array, fds?: number[]): boolean {
    if (!(data instanceof Uint8Array)) throw new TypeError(`data must be a Uint8Array, got ${describe(data)}`);
    if (data.byteLength === 0) throw new RangeError('data must not be empty (a 0-byte packet reads as a hang-up)');
    if (fds !== undefined) {
      if (!Array.isArray(fds)) throw new TypeError(`fds must be an array of fds, got ${describe(fds)}`);
      if (fds.length > 253) throw new RangeError(`fds must hold at most 253 fds, got ${fds.length}`);
      fds.forEach((fd, i) => checkFd(`fds[${i}]`, fd));
    }
    if (this.#closed) throw new NativeError('sendmsg: Bad file descriptor (EBADF)', 'EBADF', 9, 'sendmsg');
    try {
      return this.#h.send(data, fds);
    } catch (err) {
      if (!(err instanceof NativeError)) throw err;
      process.nextTick(() => {
        if (!this.#closed) this.emit('error', err);
      });
      return false;
    }
  }

  /** Idempotent: stops polling, closes the fd, drops queued packets. No event after this. */
  close(): void {
    this.#closed = true;
    this.#h.close();
  }

  /** The socket keeps the process alive (default). */
  ref(): this {
    this.#h.ref();
    return this;
  }

  /** An idle socket does not keep the process alive. */
  unref(): this {
    this.#h.unref();
    return this;
  }

  override on(event: 'message', listener: (data: Buffer, fds: number[]) => void): this;
  override on(event: 'error', listener: (err: NativeError) => void): this;
  override on(event: 'close' | 'drain', listener: () => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  override once(event: 'message', listener: (data: Buffer, fds: number[]) => void): this;
  override once(event: 'error', listener: (err: NativeError) => void): this;
  override once(event: 'close' | 'drain', listener: () => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this;
  override once(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.once(event, listener);
  }
}

/**
 * A listening AF_UNIX SOCK_SEQPACKET socket. listen() does socket(), bind(),
 * listen() only: it neither unlinks a stale path nor chmods the socket (the
 * caller does both, safely). Events: 'connection' (SeqpacketSocket),
 * 'error' (NativeError: EMFILE etc.; accepting pauses 100 ms, then resumes).
 */
export class SeqpacketServer extends EventEmitter {
  #h: NativeServerHandle;
  #closed = false;

  /** @internal use SeqpacketServer.listen() */
  constructor(token: typeof kInternal, handle: NativeServerHandle) {
    super();
    if (token !== kInternal) throw new TypeError('use SeqpacketServer.listen()');
    this.#h = handle;
    handle.start((event, a) => {
      if (event === 'connection') {
        const sock = new SeqpacketSocket(kInternal, a as NativeSocketHandle);
        if (this.listenerCount('connection') === 0) {
          sock.close();
          return;
        }
        this.emit('connection', sock);
      } else if (event === 'error') {
        this.emit('error', a as NativeError);
      }
    });
  }

  static listen(path: string, options?: ServerOptions): SeqpacketServer {
    checkSocketPath('path', path);
    const o = checkOptions('options', options, ['backlog', 'maxPacket', 'maxFds']);
    const backlog = o.backlog === undefined ? 511 : checkInt('options.backlog', o.backlog, 1, 0x7fffffff);
    const { maxPacket, maxFds } = socketLimits(o);
    return new SeqpacketServer(kInternal, native.SeqpacketServer.listen(path, backlog, maxPacket, maxFds));
  }

  /** The listening fd, -1 once closed. */
  get fd(): number {
    return this.#h.fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Idempotent: stops accepting and closes the listening fd (not the accepted sockets). */
  close(): void {
    this.#closed = true;
    this.#h.close();
  }

  ref(): this {
    this.#h.ref();
    return this;
  }

  unref(): this {
    this.#h.unref();
    return this;
  }

  override on(event: 'connection', listener: (sock: SeqpacketSocket) => void): this;
  override on(event: 'error', listener: (err: NativeError) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }
}

// ---------------------------------------------------------------------------
// Kernel module

export interface KmodRegionInfo {
  sizeBytes: number;
  hugepage: boolean;
  /** -1 when none was asked for. */
  numaNode: number;
  openGrants: number;
  mappings: number;
}

/** An open /dev/shmbroker (O_RDWR|O_CLOEXEC) and the SHMBROKER_IOC_* ioctls. */
export class KmodDevice {
  #h: NativeKmodHandle;

  /** @internal use KmodDevice.open() */
  constructor(token: typeof kInternal, handle: NativeKmodHandle) {
    if (token !== kInternal) throw new TypeError('use KmodDevice.open()');
    this.#h = handle;
  }

  static open(path: string = '/dev/shmbroker'): KmodDevice {
    return new KmodDevice(kInternal, native.KmodDevice.open(checkString('path', path)));
  }

  /** The device fd, -1 once closed. */
  get fd(): number {
    return this.#h.fd;
  }

  /** SHMBROKER_IOC_CREATE. Returns the region id. */
  create(sizeBytes: number, options?: { hugepage?: boolean; numaNode?: number }): bigint {
    checkSize('sizeBytes', sizeBytes);
    const o = checkOptions('options', options, ['hugepage', 'numaNode']);
    const hugepage = checkOptBool('options.hugepage', o.hugepage, false);
    const numaNode = o.numaNode === undefined ? -1 : checkInt('options.numaNode', o.numaNode, -1, 0x7fffffff);
    return this.#h.create(sizeBytes, hugepage, numaNode);
  }

  /**
   * SHMBROKER_IOC_OPEN: a grant fd on the region (the caller owns the fd).
   * allowNotify: SHMBROKER_OPEN_ALLOW_NOTIFY, a read-only grant may NOTIFY
   * (a read-write one always may).
   */
  openGrant(regionId: bigint, options: { readOnly: boolean; cloexec?: boolean; allowNotify?: boolean }): { fd: number; grantId: bigint } {
    checkId('regionId', regionId);
    if (options === undefined) throw new TypeError('options must be an object, got undefined');
    const o = checkOptions('options', options, ['readOnly', 'cloexec', 'allowNotify']);
    const readOnly = checkBool('options.readOnly', o.readOnly);
    const cloexec = checkOptBool('options.cloexec', o.cloexec, true);
    const allowNotify = checkOptBool('options.allowNotify', o.allowNotify, false);
    return this.#h.openGrant(regionId, readOnly, cloexec, allowNotify);
  }

  /** SHMBROKER_IOC_REVOKE: tears down every mapping of the grant. */
  revoke(grantId: bigint): void {
    this.#h.revoke(checkId('grantId', grantId));
  }

  /** SHMBROKER_IOC_DESTROY: revokes every grant and frees the pages. */
  destroy(regionId: bigint): void {
    this.#h.destroy(checkId('regionId', regionId));
  }

  /**
   * SHMBROKER_IOC_LIST_GRANTS: the region's live (unrevoked) grant ids,
   * ascending; for a restarted broker to find grants it has no record of.
   */
  listGrants(regionId: bigint): bigint[] {
    return this.#h.listGrants(checkId('regionId', regionId));
  }

  /** SHMBROKER_IOC_INFO. */
  info(regionId: bigint): KmodRegionInfo {
    return this.#h.info(checkId('regionId', regionId));
  }

  /** Every region id, ascending (pages through SHMBROKER_IOC_LIST). */
  list(): bigint[] {
    return this.#h.list();
  }

  /** Idempotent. Regions stay when the device is closed. */
  close(): void {
    this.#h.close();
  }
}

// ---------------------------------------------------------------------------
// Doorbell (docs/ARCHITECTURE.md, "Region events")

/**
 * What both kinds of doorbell do alike: read the sequence, ring, and call
 * back on every (coalesced) wake-up while started, from the event loop via
 * uv_poll (no thread, no spinning). Ownership of the fds is the subclass's
 * constructor's to say.
 */
abstract class Bell<H extends NativeBellHandle> {
  #closed = false;

  protected constructor(protected readonly h: H) {}

  /** The region's current sequence (number of notifies so far). */
  seq(): number {
    return this.h.seq();
  }

  /** Rings: every waiter of the region wakes. Returns the new sequence. NativeError EPERM on a lease that may not notify. */
  notify(): number {
    return this.h.notify();
  }

  /** Calls `onRing` on every wake-up (coalesced) until stop(). While started, the doorbell keeps the event loop alive. */
  start(onRing: () => void): void {
    if (typeof onRing !== 'function') throw new TypeError('onRing must be a function');
    this.h.start(onRing);
  }

  stop(): void {
    this.h.stop();
  }

  /** The fd polled (readable after a ring), -1 once closed. */
  get fd(): number {
    return this.h.fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Idempotent. */
  close(): void {
    this.#closed = true;
    this.h.close();
  }
}

/**
 * A region's event page and doorbell eventfd as a client holds them (memfd
 * backend). The constructor takes ownership of both fds (closed by close(),
 * also when it throws). Waiting is edge-triggered epoll on the shared
 * eventfd; fd is that epoll fd.
 */
export class Doorbell extends Bell<NativeDoorbellHandle> {
  constructor(pageFd: number, bellFd: number, options: { mayNotify: boolean }) {
    checkFd('pageFd', pageFd);
    checkFd('bellFd', bellFd);
    const o = checkOptions('options', options, ['mayNotify']);
    super(new native.Doorbell(pageFd, bellFd, checkBool('options.mayNotify', o.mayNotify)));
  }

  /** True once the broker marked the region deleted. */
  deleted(): boolean {
    return this.h.deleted();
  }
}

/**
 * The doorbell of a kmod region: the region's grant fd itself (NOTIFY and
 * WAIT ioctls, poll). The constructor takes ownership of `regionFd` (pass a
 * dup of the region fd; closed by close(), also when it throws). The
 * sequence lives in the kernel; fd is that dup; a revoked grant ends the
 * wake-ups (the last call of `onRing`). No broker on the path.
 */
export class KernelDoorbell extends Bell<NativeKernelDoorbellHandle> {
  constructor(regionFd: number) {
    checkFd('regionFd', regionFd);
    super(new native.KernelDoorbell(regionFd));
  }

  /** True once the kernel reported the grant revoked or its region destroyed (as of the last seq(), notify() or wake-up). */
  revoked(): boolean {
    return this.h.revoked();
  }
}
