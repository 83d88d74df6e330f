// The SDK's connection to the broker's data plane (RUNTIME_DIR/data.sock):
// acquire a region by name, get it mapped, release it, and react to
// revocation notices. The connection re-establishes itself after a broker
// restart and offers back the regions it still holds.
//
// One connection's state machine (open, lost, reconnect, re-offer), its
// request table and the leases it holds change together, so they stay in
// this file; the mapping (mapped-region.ts), the events (region-events.ts),
// the broker's authentication (broker-trust.ts) and the abort of a wait
// (until-aborted.ts) live apart.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import { dataReplyCodec, dataRequestCodec, MAX_DATA_PACKET_BYTES } from '../../proto/load';
import type { DataReply__Output } from '../../proto/generated/shmbroker/v1/DataReply';
import type { DataRequest } from '../../proto/generated/shmbroker/v1/DataRequest';
import { errorFromStatus, InvalidArgumentError, ProtocolError, ShmbrokerError, UnavailableError } from './errors';
import { BrokerNotTrustedError, checkPeer, checkRegionFd, checkSocketPath, trustedUids } from './broker-trust';
import { sdkRegionAccess, type MappedRegion, type Mode, type RevocationEvent } from './mapped-region';
import { DATA_SOCKET, isValidRegionId, parseGrantMode, REGION_ID_PATTERN, toAccessMode } from '../../proto/wire';
import { resolveRuntimeDir } from './runtime-dir';
import { untilAborted } from './until-aborted';

/** Options of connect(). */
export interface ConnectOptions {
  /** Broker runtime directory; default per docs/ARCHITECTURE.md, "Command line and discovery". */
  runtimeDir?: string;
  /** Reconnect after the broker goes away (default true). */
  reconnect?: boolean;
  /** Longest wait between reconnect attempts, ms (default 2000). */
  maxReconnectDelayMs?: number;
}

/** Options of BrokerClient.acquire(). */
export interface AcquireOptions {
  /** 'ro' (default) or 'rw'. */
  mode?: Mode;
  /** Map as a SharedArrayBuffer (for Atomics), default false. */
  shared?: boolean;
  /** Also take the region's doorbell: region.notify(), wait(), events(). Default false. */
  events?: boolean;
  /**
   * Gives up when this signal aborts: acquire() rejects with the signal's
   * reason, and a lease the broker grants afterwards is released at once.
   */
  signal?: AbortSignal;
  /** Gives up after this many milliseconds, the same way (rejects with a 'TimeoutError' DOMException, as AbortSignal.timeout does). */
  timeoutMs?: number;
}

/** The events a BrokerClient emits, with their listener arguments: `client.on('disconnect', (err) => ...)`. */
export interface BrokerClientEvents {
  /** The connection to the broker was lost; pending requests failed with this error. A reconnect follows unless `reconnect: false`. */
  disconnect: [error: UnavailableError];
  /** Connected again after a disconnect, and the held regions were offered back (those the broker no longer knew were revoked with 'LEASE_LOST'). */
  reconnect: [];
  /** A release the broker refused (other than an already-ended lease): the region is unmapped here regardless. */
  warning: [error: ShmbrokerError];
  /** The broker sent something this SDK cannot use, or offering the regions back failed. Without an 'error' listener Node throws it. */
  error: [error: Error];
}

interface Pending {
  resolve: (reply: DataReply__Output, fds: number[]) => void;
  reject: (err: Error) => void;
}


/**
 * A connection to the broker's data plane (RUNTIME_DIR/data.sock), from
 * connect(): acquire regions by name and get them mapped. It reconnects after
 * a broker restart and offers the regions it holds back.
 */
export class BrokerClient extends EventEmitter<BrokerClientEvents> {
  /** The data-plane socket this client talks to. */
  readonly socketPath: string;
  #sock: native.SeqpacketSocket | undefined;
  #nextRequestId = 1;
  readonly #pending = new Map<number, Pending>();
  /** Requests not answered yet: what drain() waits for. */
  readonly #inflight = new Set<Promise<unknown>>();
  /**
   * Request ids of releases sent with no_reply: the broker answers only a
   * refusal. Requests are answered in order, so a reply to a later request
   * means every earlier one went through; those ids are dropped then.
   */
  readonly #oneWay = new Set<number>();
  readonly #regions = new Map<number, MappedRegion>();
  #closed = false;
  readonly #reconnect: boolean;
  readonly #maxDelay: number;
  #reconnectTimer: NodeJS.Timeout | undefined;
  /** The authenticated broker's uid: region fds must be its own. */
  #brokerUid = 0;
  /** What #updateRef last told which socket. */
  #refSock: native.SeqpacketSocket | undefined;
  #refd = true;

  private constructor(socketPath: string, options: ConnectOptions) {
    super();
    this.socketPath = socketPath;
    this.#reconnect = options.reconnect ?? true;
    this.#maxDelay = options.maxReconnectDelayMs ?? 2000;
  }

  /** Connects to the broker and authenticates it (see connect()). */
  static async connect(options: ConnectOptions = {}): Promise<BrokerClient> {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    if (options.runtimeDir !== undefined && typeof options.runtimeDir !== 'string') {
      throw new TypeError('options.runtimeDir must be a string');
    }
    const client = new BrokerClient(path.join(resolveRuntimeDir(options.runtimeDir), DATA_SOCKET), options);
    client.#open();
    return client;
  }

  #open(): void {
    // Authenticate before sending anything (broker-trust.ts): the path, then the peer.
    let sock: native.SeqpacketSocket;
    const uids = trustedUids();
    try {
      checkSocketPath(this.socketPath, uids);
      sock = native.SeqpacketSocket.connect(this.socketPath, { maxPacket: MAX_DATA_PACKET_BYTES + 1, maxFds: 4 });
    } catch (err) {
      if (err instanceof BrokerNotTrustedError) throw err;
      const e = err as native.NativeError;
      throw new UnavailableError('UNAVAILABLE', 'BROKER_UNREACHABLE', `cannot connect to the broker at ${this.socketPath}: ${e.message}`);
    }
    try {
      this.#brokerUid = checkPeer(sock.peerCred(), this.socketPath, uids);
    } catch (err) {
      sock.close();
      throw err;
    }
    this.#sock = sock;
    sock.on('message', (data, fds) => this.#onPacket(data, fds));
    sock.on('error', (err) => this.#lost(sock, err));
    sock.on('close', () => this.#lost(sock));
    this.#updateRef();
  }

  #updateRef(): void {
    // Like a net.Socket with a listener: the connection keeps the process
    // alive while it waits for a reply or holds regions (whose revocation
    // notices arrive on it); an idle client does not. Only a change reaches
    // the addon (this runs several times per acquire).
    const want = this.#pending.size > 0 || this.#regions.size > 0;
    const sock = this.#sock;
    if (!sock || (this.#refSock === sock && this.#refd === want)) return;
    this.#refSock = sock;
    this.#refd = want;
    if (want) sock.ref();
    else sock.unref();
  }

  #lost(sock: native.SeqpacketSocket, err?: Error): void {
    if (sock !== this.#sock) return;
    sock.close();
    this.#sock = undefined;
    const failure = new UnavailableError('UNAVAILABLE', 'BROKER_DISCONNECTED', `lost the connection to the broker${err ? `: ${err.message}` : ''}`);
    for (const p of this.#pending.values()) p.reject(failure);
    this.#pending.clear();
    this.#oneWay.clear(); // never answered now: the broker ends those leases with the process, or they are re-offered
    if (this.#closed) return;
    this.emit('disconnect', failure);
    if (this.#reconnect) this.#scheduleReconnect(50);
  }

  #scheduleReconnect(delay: number): void {
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed) return;
      try {
        this.#open();
      } catch {
        this.#scheduleReconnect(Math.min(delay * 2, this.#maxDelay));
        return;
      }
      void this.#reoffer().then(
        () => this.emit('reconnect'),
        (e: unknown) => this.emit('error', e instanceof Error ? e : new Error(String(e))),
      );
    }, delay);
    // Reconnecting matters only while the application holds regions.
    if (this.#regions.size === 0) this.#reconnectTimer.unref();
  }

  /** After a reconnect: offer back every held region's fd, so the broker re-attaches the lease (and, on memfd, re-adopts the memory). */
  async #reoffer(): Promise<void> {
    for (const region of [...this.#regions.values()]) {
      if (region.released) continue;
      let accepted: boolean;
      try {
        const { reply } = await this.#request(
          { offer: { region: region.name, leaseId: region.leaseId, mode: toAccessMode(region.mode) } },
          [sdkRegionAccess.fd(region)],
        );
        // An error reply (rate limited, say) is not a refusal: keep the region.
        if (!reply.offer) continue;
        accepted = reply.offer.accepted === true;
      } catch {
        // The connection went away again mid-offer (the broker died again):
        // not a refusal either. The next reconnect offers the rest.
        return;
      }
      if (!accepted) {
        // The broker no longer knows this lease: it was revoked or the
        // region deleted while we were away.
        this.#regions.delete(region.leaseId);
        sdkRegionAccess.revoke(region, { reason: 'LEASE_LOST', graceMs: 0 });
      }
    }
  }

  /**
   * Tells the broker a lease is released, without a reply to wait for
   * (ReleaseRequest.no_reply): the broker ends the lease all the same and
   * answers only a refusal, reported as 'warning' (LEASE_NOT_FOUND is not:
   * the lease already ended, revoked or re-offered away). Not connected: the
   * broker ends the lease when this process is gone (or it is re-offered).
   */
  #releaseOneWay(leaseId: number): void {
    const sock = this.#sock;
    if (!sock || this.#closed) return;
    const requestId = this.#nextRequestId++;
    this.#oneWay.add(requestId);
    sock.send(dataRequestCodec().encode({ requestId, release: { leaseId, noReply: true } }));
  }

  #request(request: Omit<DataRequest, 'requestId'>, fds?: number[]): Promise<{ reply: DataReply__Output; fds: number[] }> {
    const sock = this.#sock;
    if (this.#closed) return Promise.reject(new UnavailableError('UNAVAILABLE', 'CLIENT_CLOSED', 'the client is closed'));
    if (!sock) return Promise.reject(new UnavailableError('UNAVAILABLE', 'BROKER_DISCONNECTED', 'not connected to the broker (reconnecting)'));
    const requestId = this.#nextRequestId++;
    const packet = dataRequestCodec().encode({ ...request, requestId });
    const p = new Promise<{ reply: DataReply__Output; fds: number[] }>((resolve, reject) => {
      this.#pending.set(requestId, { resolve: (reply, got) => resolve({ reply, fds: got }), reject });
      this.#updateRef();
      sock.send(packet, fds);
    });
    this.#inflight.add(p);
    const settled = (): void => void this.#inflight.delete(p);
    p.then(settled, settled);
    return p;
  }

  /**
   * Resolves once every request sent so far is answered, and every release
   * (which the broker does not answer) has left this process's send queue
   * for the socket, where the broker reads it even after close() (or once
   * the connection is gone). A short-lived process calls it before close().
   */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#inflight]);
    const sock = this.#sock;
    if (sock && sock.queuedPackets > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          sock.off('drain', done);
          sock.off('close', done);
          sock.off('error', done);
          resolve();
        };
        sock.on('drain', done);
        sock.on('close', done);
        sock.on('error', done);
      });
    }
  }

  #onPacket(data: Buffer, fds: number[]): void {
    let reply: DataReply__Output;
    try {
      reply = dataReplyCodec().decode(data);
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      this.emit('error', new ProtocolError('INTERNAL', 'MALFORMED_REPLY', `malformed reply from the broker: ${(err as Error).message}`));
      return;
    }
    if (reply.requestId === 0) {
      for (const fd of fds) fs.closeSync(fd);
      if (reply.revocation) this.#onRevocation(reply.revocation.leaseId, reply.revocation.reason, reply.revocation.graceMs);
      return;
    }
    if (this.#oneWay.size > 0) this.#settleOneWay(reply);
    const pending = this.#pending.get(reply.requestId);
    if (!pending) {
      for (const fd of fds) fs.closeSync(fd);
      return;
    }
    this.#pending.delete(reply.requestId);
    this.#updateRef();
    pending.resolve(reply, fds);
  }

  /** A reply arrived: earlier one-way releases went through; a refusal of one is a 'warning'. */
  #settleOneWay(reply: DataReply__Output): void {
    const refused = this.#oneWay.has(reply.requestId) && reply.error;
    for (const id of this.#oneWay) {
      if (id > reply.requestId) break; // ids are added in increasing order
      this.#oneWay.delete(id);
    }
    if (refused && refused.reason !== 'LEASE_NOT_FOUND') this.emit('warning', errorFromStatus(refused.code, refused.reason, refused.message));
  }

  #onRevocation(leaseId: number, reason: string, graceMs: number): void {
    const region = this.#regions.get(leaseId);
    if (!region) return;
    this.#regions.delete(leaseId);
    this.#updateRef();
    sdkRegionAccess.revoke(region, { reason: reason as RevocationEvent['reason'], graceMs });
    // Tell the broker at once, so it need not wait out the grace period.
    this.#releaseOneWay(leaseId);
  }

  /** Acquires a region by name and maps it. */
  async acquire(name: string, options: AcquireOptions = {}): Promise<MappedRegion> {
    if (!isValidRegionId(name)) {
      throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_REGION_NAME', `name must match ${REGION_ID_PATTERN.source.slice(1, -1)}, got ${JSON.stringify(name)}`);
    }
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const mode = parseGrantMode(options.mode ?? 'ro');
    if (!mode) throw new TypeError(`options.mode must be 'ro' or 'rw', got ${JSON.stringify(options.mode)}`);
    if (options.shared !== undefined && typeof options.shared !== 'boolean') throw new TypeError('options.shared must be a boolean');
    if (options.events !== undefined && typeof options.events !== 'boolean') throw new TypeError('options.events must be a boolean');
    const wantEvents = options.events ?? false;
    if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0)) {
      throw new TypeError('options.timeoutMs must be a number >= 0');
    }
    const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    signal?.throwIfAborted();
    // A zero budget is spent before anything is sent (AbortSignal.timeout(0) would fire only on the next timer turn).
    if (options.timeoutMs === 0) throw new DOMException('acquire timed out (timeoutMs 0)', 'TimeoutError');
    const { reply, fds } = await untilAborted(
      this.#request({ acquire: { region: name, mode: toAccessMode(mode), wantEvents } }),
      signal,
      // Granted after the caller gave up: hand the lease straight back.
      (late) => {
        for (const fd of late.fds) fs.closeSync(fd);
        if (late.reply.acquire) this.#releaseOneWay(late.reply.acquire.leaseId);
      },
    );
    if (reply.error) {
      for (const fd of fds) fs.closeSync(fd);
      throw errorFromStatus(reply.error.code, reply.error.reason, reply.error.message);
    }
    const a = reply.acquire;
    // With events: the event page and the eventfd follow the region fd,
    // unless the region fd itself is the doorbell (kmod: events.kernel).
    const kernelEvents = a?.events?.kernel === true;
    if (!a || fds.length !== (wantEvents && !kernelEvents ? 3 : 1) || (a.events !== null) !== wantEvents) {
      for (const fd of fds) fs.closeSync(fd);
      throw new ProtocolError('INTERNAL', 'MALFORMED_REPLY', `the broker answered an acquire with ${a ? `${fds.length} fds` : reply.reply ?? 'nothing'}`);
    }
    const fd = fds[0]!;
    let mapping: native.Mapping;
    let doorbell: native.Doorbell | native.KernelDoorbell | undefined;
    try {
      // The doorbell owns its fds from here, also when it throws (kmod: a
      // dup of the region fd, so it can outlive the mapping's own fd).
      if (wantEvents) {
        doorbell = kernelEvents ? new native.KernelDoorbell(native.dupFd(fd)) : new native.Doorbell(fds[1]!, fds[2]!, { mayNotify: a.events!.mayNotify });
      }
      const st = fs.fstatSync(fd);
      if (st.size !== a.sizeBytes) {
        throw new ProtocolError('INTERNAL', 'SIZE_MISMATCH', `region ${name}: the broker said ${a.sizeBytes} bytes, the fd has ${st.size}`);
      }
      checkRegionFd(fd, this.#brokerUid, a.backend, st);
      mapping = native.Mapping.map(fd, { length: a.sizeBytes, writable: mode === 'rw', shared: options.shared ?? false });
    } catch (err) {
      fs.closeSync(fd);
      doorbell?.close();
      this.#releaseOneWay(a.leaseId);
      if (err instanceof ShmbrokerError) throw err;
      const e = err as native.NativeError;
      // One stable reason (the registry's MAP_FAILED); the errno is in the message.
      throw new ShmbrokerError('INTERNAL', 'MAP_FAILED', `cannot map region ${name}: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    }
    const region = sdkRegionAccess.create({
      name,
      size: a.sizeBytes,
      mode,
      backend: a.backend,
      grant: a.grant,
      leaseId: a.leaseId,
      fd,
      mapping,
      onRelease: (r) => this.#release(r),
      ...(doorbell ? { doorbell, mayNotify: a.events!.mayNotify } : {}),
    });
    this.#regions.set(a.leaseId, region);
    this.#updateRef();
    return region;
  }

  async #release(region: MappedRegion): Promise<void> {
    this.#regions.delete(region.leaseId);
    this.#updateRef();
    // The mapping is already gone here, which is all the caller waits for;
    // the broker's acknowledgement is not worth a packet on the hot path, so
    // it sends none (requests on one connection are handled in order, so a
    // later acquire still follows this release). A refusal is reported as 'warning'.
    this.#releaseOneWay(region.leaseId);
  }

  /** Regions currently held through this client. */
  get regions(): MappedRegion[] {
    return [...this.#regions.values()];
  }

  /** True while the data-plane connection is up (false between a disconnect and the reconnect). */
  get connected(): boolean {
    return this.#sock !== undefined;
  }

  /** Closes the connection. Held regions stay mapped until released. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    this.#sock?.close();
    this.#sock = undefined;
    const failure = new UnavailableError('UNAVAILABLE', 'CLIENT_CLOSED', 'the client was closed');
    for (const p of this.#pending.values()) p.reject(failure);
    this.#pending.clear();
  }
}

/**
 * Connects to the broker at `options.runtimeDir` (else $SHMBROKER_RUNTIME_DIR,
 * else /run/shmbroker), after checking it is the real one (run by root or
 * $SHMBROKER_BROKER_UID): rejects with BrokerNotTrustedError otherwise, with an
 * UnavailableError ('BROKER_UNREACHABLE') when nothing answers.
 */
export async function connect(options?: ConnectOptions): Promise<BrokerClient> {
  return BrokerClient.connect(options);
}
