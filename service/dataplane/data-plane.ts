// The data plane: RUNTIME_DIR/data.sock, SOCK_SEQPACKET. One DataRequest per
// packet in, one DataReply per packet out, the region fd attached by
// SCM_RIGHTS. The peer is who SO_PEERCRED says it is, checked against the
// grants on every request. Anything malformed closes that connection only,
// is audited, and leaves nothing behind (received fds are closed).
//
// This file is the socket side (accept, per-uid limits, decoding, replies,
// holder exit). The requests themselves are in data-requests.ts, the audit
// of decisions in data-plane-audit.ts, shared types in connection.ts.
import * as fs from 'node:fs';
import * as native from '../../native';
import { dataReplyCodec, dataRequestCodec, MAX_DATA_PACKET_BYTES } from '../../proto/load';
import type { DataReply } from '../../proto/generated/shmbroker/v1/DataReply';
import type { DataRequest__Output } from '../../proto/generated/shmbroker/v1/DataRequest';
import { fromAccessMode } from '../../proto/wire';
import type { Caller } from '../identity/caller';
import { BrokerError, InternalError, ResourceExhaustedError } from '../errors';
import type { LeaseRecord } from '../leases/lease-store';
import { regionName } from '../regions/names';
import type { LeaseNotifier, RevocationReason } from '../leases/revoker';
import { processGone, processIdentity, type ProcessIdentity } from '../leases/process-liveness';
import { Doorbells } from './doorbells';
import { peerFields } from '../logger';
import { withRequest } from '../request-context';
import { closeAll, hasToken, takeToken, type Connection, type DataPlaneDeps, type RateBucket } from './connection';
import { DataPlaneAudit } from './data-plane-audit';
import { reportWriteFailure } from '../write-failures';
import { DataRequests } from './data-requests';

export type { DataPlaneLimits } from './connection';

/** Replies the broker queues for one connection (beyond the kernel's socket buffer) before it drops the peer. */
const MAX_QUEUED_REPLIES = 64;

export class DataPlane implements LeaseNotifier {
  private server: native.SeqpacketServer | undefined;
  private readonly connections = new Map<number, Connection>();
  private readonly leaseOwner = new Map<number, Connection>();
  private readonly perUid = new Map<number, number>();
  private readonly buckets = new Map<number, RateBucket>();
  private readonly connectBuckets = new Map<number, RateBucket>();
  /** Malformed packets per uid: a uid that spent its bucket is refused at accept (no decode, no log line). */
  private readonly malformedBuckets = new Map<number, RateBucket>();
  private readonly audits: DataPlaneAudit;
  private stateFullLoggedAt = -Infinity;
  private stateFullUnlogged = 0;

  /** One log line per interval for a full state disk, not one per request. */
  private stateFullLog(write: (failures: number) => void): void {
    this.stateFullUnlogged++;
    const now = Date.now();
    if (now - this.stateFullLoggedAt < this.deps.limits.refusalAuditIntervalSeconds * 1000) return;
    write(this.stateFullUnlogged);
    this.stateFullLoggedAt = now;
    this.stateFullUnlogged = 0;
  }
  private readonly requests: DataRequests;
  private nextConnId = 1;
  /** Region doorbells handed out with leases that ask for events. */
  readonly doorbells = new Doorbells();

  constructor(private readonly deps: DataPlaneDeps) {
    // A lease that ends (here or anywhere else) leaves its connection's table and its doorbell.
    deps.leases.onEnd((lease) => this.forget(lease.id));
    this.audits = new DataPlaneAudit(deps);
    this.requests = new DataRequests(deps, this);
  }

  listen(path: string): void {
    // Any local uid may connect (who it is decides what it gets): the socket
    // is born 0666 under a temporary umask, so no client ever sees it closed.
    const oldMask = process.umask(0o111);
    try {
      this.server = native.SeqpacketServer.listen(path, { backlog: 512, maxPacket: MAX_DATA_PACKET_BYTES + 1, maxFds: 4 });
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(path, 0o666);
    this.server.on('connection', (sock) => this.accept(sock));
    this.server.on('error', (err) => this.deps.log.warn({ err: err.message, code: err.code }, 'data plane accept failed'));
  }

  /** Open data connections: all of them, or those of one uid. */
  connectionCount(uid?: number): number {
    return uid === undefined ? this.connections.size : (this.perUid.get(uid) ?? 0);
  }


  close(): void {
    for (const t of this.pendingChecks) clearTimeout(t);
    this.pendingChecks.clear();
    this.server?.close();
    this.server = undefined;
    for (const c of [...this.connections.values()]) this.drop(c);
    this.doorbells.close();
    this.audits.close();
  }

  private accept(sock: native.SeqpacketSocket): void {
    let caller: Caller;
    try {
      caller = this.deps.identify(sock.peerCred());
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'data plane peer has no credentials');
      sock.close();
      return;
    }
    // Connection churn (connect, send garbage, repeat) is bounded per uid
    // before anything else: beyond the bucket the connection is closed
    // unread and only counted.
    if (!caller.isAdmin && !takeToken(this.connectBuckets, caller.uid, this.deps.limits.maxConnectsPerSecondPerUid)) {
      this.audit(caller, 'DataPlaneConnect', 'data.sock', 'DENIED', 'CONNECTION_RATE_LIMITED', { rate: this.deps.limits.maxConnectsPerSecondPerUid });
      sock.close();
      return;
    }
    if (!caller.isAdmin && !hasToken(this.malformedBuckets, caller.uid, this.deps.limits.maxMalformedPerSecondPerUid)) {
      this.audit(caller, 'DataPlaneConnect', 'data.sock', 'DENIED', 'MALFORMED_RATE_LIMITED', { rate: this.deps.limits.maxMalformedPerSecondPerUid });
      sock.close();
      return;
    }
    const count = this.perUid.get(caller.uid) ?? 0;
    if (count >= this.deps.limits.maxConnectionsPerUid) {
      this.audit(caller, 'DataPlaneConnect', 'data.sock', 'DENIED', 'TOO_MANY_CONNECTIONS', { limit: this.deps.limits.maxConnectionsPerUid });
      sock.close();
      return;
    }
    this.perUid.set(caller.uid, count + 1);
    const conn: Connection = { id: this.nextConnId++, sock, caller, process: processIdentity(caller.pid), leases: new Set(), closed: false, noticesQueued: 0 };
    sock.on('drain', () => {
      conn.noticesQueued = 0;
    });
    this.connections.set(conn.id, conn);
    sock.on('message', (data: Buffer, fds: number[]) => withRequest(() => this.onPacket(conn, data, fds)));
    sock.on('error', (err: native.NativeError) => {
      // A peer that closes while its last reply is in flight (a CLI that
      // exits after release) is a normal end of the connection, not abuse:
      // no protocol-error audit row, no denial, no WARN.
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') {
        this.deps.log.debug({ ...peerFields(conn.caller), code: err.code }, 'data-plane peer closed before its reply');
        this.drop(conn);
        return;
      }
      // A stable reason (proto/wire EVENT_REASONS); the errno goes in the message.
      const reason = err.code === 'EMSGSIZE' ? 'PACKET_TOO_LARGE' : err.code === 'ETOOMANYREFS' ? 'TOO_MANY_FDS' : 'SOCKET_ERROR';
      this.protocolError(conn, reason, `${err.code}: ${err.message}`);
    });
    sock.on('close', () => this.drop(conn));
  }

  private drop(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    conn.sock.close();
    this.connections.delete(conn.id);
    const n = (this.perUid.get(conn.caller.uid) ?? 1) - 1;
    if (n <= 0) this.perUid.delete(conn.caller.uid);
    else this.perUid.set(conn.caller.uid, n);
    // The leases stay while the process lives: it may still map the region
    // (and reconnect). Once it is gone they end: the broker vouches only for
    // the process it handed the fd to, so on kmod whatever that fd still
    // maps (a forked child, an fd passed on) is revoked with it.
    for (const id of conn.leases) this.leaseOwner.delete(id);
    if (conn.leases.size > 0) {
      const leaseIds = [...conn.leases];
      // The socket closes during the process's exit, before it is reaped.
      const timer: NodeJS.Timeout = setTimeout(() => {
        this.pendingChecks.delete(timer);
        this.endLeasesIfGone(conn.caller, conn.process, leaseIds);
      }, 1000);
      timer.unref();
      this.pendingChecks.add(timer);
    }
  }

  private readonly pendingChecks = new Set<NodeJS.Timeout>();

  private endLeasesIfGone(caller: Caller, proc: ProcessIdentity, leaseIds: number[]): void {
    if (!processGone(proc)) return;
    for (const id of leaseIds) {
      if (this.leaseOwner.has(id)) continue; // re-attached by a reconnect meanwhile
      const lease = this.deps.leases.get(id);
      if (!lease) continue;
      try {
        this.deps.leases.end(lease, 'HOLDER_EXITED', caller);
      } catch (err) {
        this.deps.log.warn({ lease: id, err: (err as Error).message }, 'could not end the lease of an exited process');
      }
    }
  }

  /** True while a connection holds the lease (its holder's exit is noticed there). */
  isAttached(leaseId: number): boolean {
    return this.leaseOwner.has(leaseId);
  }

  private protocolError(conn: Connection, reason: string, message: string, fds: number[] = []): void {
    closeAll(fds);
    if (conn.closed) return;
    // A socket error may be the peer's bad luck; everything else is a packet the peer chose to send.
    if (!conn.caller.isAdmin && reason !== 'SOCKET_ERROR') takeToken(this.malformedBuckets, conn.caller.uid, this.deps.limits.maxMalformedPerSecondPerUid);
    this.deps.log.warn({ ...peerFields(conn.caller), reason, detail: message }, 'data plane protocol error; closing connection');
    this.audit(conn.caller, 'DataPlaneProtocolError', 'data.sock', 'DENIED', reason, { message });
    this.drop(conn);
  }

  /** Audits a decision (data-plane-audit.ts). */
  audit(caller: Caller, action: string, resource: string, result: 'ALLOWED' | 'DENIED' | 'ERROR', reason?: string, details?: Record<string, unknown>): void {
    this.audits.audit(caller, action, resource, result, reason, details);
  }

  private allowRequest(uid: number): boolean {
    return takeToken(this.buckets, uid, this.deps.limits.maxRequestsPerSecondPerUid);
  }

  /** Leases held through uid's live connections (what the per-uid cap counts). */
  leasesOf(uid: number): number {
    let n = 0;
    for (const c of this.connections.values()) if (c.caller.uid === uid) n += c.leases.size;
    return n;
  }

  attach(conn: Connection, leaseId: number): void {
    conn.leases.add(leaseId);
    this.leaseOwner.set(leaseId, conn);
  }

  private onPacket(conn: Connection, data: Buffer, fds: number[]): void {
    if (conn.closed) return closeAll(fds);
    // A peer that sends requests but does not read the replies would make the
    // broker queue them without bound, each acquire reply holding a duplicate
    // of a region fd: cut it off before taking on another request.
    // (A burst of revocation notices, e.g. a revoke of a grant this peer
    // holds hundreds of leases through, is the broker's doing: not counted.)
    if (conn.sock.queuedPackets - conn.noticesQueued >= MAX_QUEUED_REPLIES) {
      return this.protocolError(conn, 'SLOW_READER', `${conn.sock.queuedPackets} replies queued for a peer that does not read them`, fds);
    }
    if (data.length > MAX_DATA_PACKET_BYTES) {
      return this.protocolError(conn, 'PACKET_TOO_LARGE', `packet of ${data.length} bytes exceeds ${MAX_DATA_PACKET_BYTES}`, fds);
    }
    let req: DataRequest__Output;
    try {
      req = dataRequestCodec().decode(data);
    } catch (err) {
      return this.protocolError(conn, 'MALFORMED_PACKET', `not a DataRequest: ${(err as Error).message}`, fds);
    }
    if (!req.request) return this.protocolError(conn, 'UNKNOWN_REQUEST', 'DataRequest names no known request', fds);
    if (req.request !== 'offer' && fds.length > 0) {
      return this.protocolError(conn, 'UNEXPECTED_FDS', `${fds.length} file descriptor(s) attached to a ${req.request} request`, fds);
    }
    if (req.request === 'offer' && fds.length !== 1) {
      return this.protocolError(conn, 'UNEXPECTED_FDS', `an offer carries exactly one file descriptor, got ${fds.length}`, fds);
    }
    const requestId = req.requestId;
    const start = performance.now();
    let result = 'ok';
    let reason = '';
    try {
      // Releases are never rate-limited: refusing one would only keep a lease
      // (and its memory) held longer.
      if (req.request !== 'release' && !this.allowRequest(conn.caller.uid)) {
        this.audit(conn.caller, 'DataPlaneRequest', 'data.sock', 'DENIED', 'RATE_LIMITED', { request: req.request });
        throw new ResourceExhaustedError('RATE_LIMITED', `uid ${conn.caller.uid} exceeds ${this.deps.limits.maxRequestsPerSecondPerUid} data-plane requests per second`);
      }
      switch (req.request) {
        case 'acquire':
          this.requests.acquire(conn, requestId, req.acquire!.region, fromAccessMode(req.acquire!.mode), req.acquire!.wantEvents === true);
          break;
        case 'release':
          this.requests.release(conn, requestId, req.release!.leaseId, req.release!.noReply === true);
          break;
        case 'offer':
          this.requests.offer(conn, requestId, req.offer!.region, req.offer!.leaseId, fromAccessMode(req.offer!.mode), fds[0]!);
          break;
      }
    } catch (err) {
      let e: BrokerError;
      if (err instanceof BrokerError) e = err;
      else if ((err as { code?: unknown } | null)?.code === 'SQLITE_FULL') {
        // A full state disk is STATE_STORAGE_FULL, as on the control plane, not
        // INTERNAL; audited like any failure, so the trail's failing commit then
        // refuses what follows (fail closed), and logged once per interval.
        reportWriteFailure('state', err);
        e = new ResourceExhaustedError('STATE_STORAGE_FULL', `the broker's state database cannot be written (${(err as Error).message}); nothing was changed`);
        this.audit(conn.caller, req.request === 'acquire' ? 'Acquire' : req.request === 'offer' ? 'Offer' : 'Release', 'data.sock', 'ERROR', e.reason);
        this.stateFullLog((failures) => this.deps.log.error({ err: (err as Error).message, failures }, 'state database cannot be written; data-plane request refused'));
      } else {
        e = new InternalError('INTERNAL', `internal error: ${(err as Error).message}`);
        this.deps.log.error({ err }, 'data plane request failed');
      }
      result = 'error';
      reason = e.reason;
      this.send(conn, { requestId, error: { code: e.code, reason: e.reason, message: e.message } });
    } finally {
      if (req.request === 'offer') closeAll(fds);
      this.deps.observe?.(req.request, (performance.now() - start) / 1000, result, reason);
    }
  }

  /** Sends a packet; false when it was queued behind a full socket buffer (or the connection is closed). */
  send(conn: Connection, reply: DataReply, fds?: number[]): boolean {
    if (conn.closed) return false;
    return conn.sock.send(dataReplyCodec().encode(reply), fds);
  }

  /**
   * Sends a reply that acknowledges a change. In strict audit mode it waits
   * until the change's audit event is on disk (group commit); otherwise it
   * goes at once. `after` runs once it is sent (or dropped).
   */
  acknowledge(conn: Connection, reply: DataReply, fds?: number[], after?: () => void): void {
    const audit = this.deps.audit;
    if (audit.sync !== 'strict' || !audit.whenDurable) {
      try {
        this.send(conn, reply, fds);
      } finally {
        after?.();
      }
      return;
    }
    audit.whenDurable().then(
      () => {
        try {
          this.send(conn, reply, fds);
        } catch (err) {
          this.deps.log.warn({ err: (err as Error).message }, 'data plane reply failed');
        } finally {
          after?.();
        }
      },
      (err: unknown) => {
        after?.();
        this.deps.log.error({ err: (err as Error).message }, 'audit commit failed; the request is not acknowledged');
        this.drop(conn);
      },
    );
  }

  // LeaseNotifier
  notify(lease: LeaseRecord, reason: RevocationReason, graceMs: number): boolean {
    const conn = this.leaseOwner.get(lease.id);
    // Ring first: waiters wake with the region marked deleted even before
    // they read the notice below.
    if (reason === 'REGION_DELETED') this.doorbells.regionDeleted(lease.region);
    if (!conn || conn.closed) return false;
    if (!this.send(conn, { requestId: 0, revocation: { leaseId: lease.id, region: lease.region, reason, graceMs } })) conn.noticesQueued++;
    this.audit(conn.caller, 'RevocationNotice', regionName(lease.region), 'ALLOWED', reason, { lease: lease.id, graceMs });
    return true;
  }

  forget(leaseId: number): void {
    this.doorbells.leaseEnded(leaseId);
    const conn = this.leaseOwner.get(leaseId);
    conn?.leases.delete(leaseId);
    this.leaseOwner.delete(leaseId);
  }
}
