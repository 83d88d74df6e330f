// The data plane: RUNTIME_DIR/data.sock, SOCK_SEQPACKET. One DataRequest per
// packet in, one DataReply per packet out, the region fd attached by
// SCM_RIGHTS. The peer is who SO_PEERCRED says it is, checked against the
// grants on every request. Anything malformed closes that connection only,
// is audited, and leaves nothing behind (received fds are closed).
import * as fs from 'node:fs';
import * as native from '../../native';
import { dataReplyCodec, dataRequestCodec, MAX_DATA_PACKET_BYTES } from '../../proto/load';
import type { DataReply } from '../../proto/generated/shmbroker/v1/DataReply';
import type { DataRequest__Output } from '../../proto/generated/shmbroker/v1/DataRequest';
import { ACCESS_MODE_RULE, fromAccessMode, toAccessMode } from '../../proto/wire';
import { Auditor, auditResultOf } from '../audit/audited-operation';
import type { Caller } from '../identity/caller';
import { BrokerError, FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError } from '../errors';
import type { GrantMode } from '../store/grant-store';
import type { LeaseRecord } from '../leases/lease-store';
import { grantName, regionName, validateRegionId } from '../regions/names';
import type { LeaseNotifier, RevocationReason } from '../leases/revoker';
import type { BrokerCore } from '../core';
import { inTransaction } from '../store/state-db';
import { processGone, processIdentity, type ProcessIdentity } from '../leases/process-liveness';
import { Doorbells, EVENT_PAGE, type DoorbellFds } from './doorbells';
import { reportWriteFailure } from '../write-failures';
import { RefusalAggregator } from '../audit/refusal-aggregator';
import type { StateSpace } from '../store/state-space';
import { peerFields } from '../logger';
import { withRequest } from '../request-context';

export interface DataPlaneLimits {
  maxConnectionsPerUid: number;
  maxRequestsPerSecondPerUid: number;
  maxLeasesPerUid: number;
  maxConnectsPerSecondPerUid: number;
  refusalAuditIntervalSeconds: number;
}

interface Connection {
  id: number;
  sock: native.SeqpacketSocket;
  caller: Caller;
  process: ProcessIdentity;
  leases: Set<number>;
  closed: boolean;
}

interface RateBucket {
  tokens: number;
  last: number;
}

/** Replies the broker queues for one connection (beyond the kernel's socket buffer) before it drops the peer. */
const MAX_QUEUED_REPLIES = 64;

export class DataPlane implements LeaseNotifier {
  private server: native.SeqpacketServer | undefined;
  private readonly connections = new Map<number, Connection>();
  private readonly leaseOwner = new Map<number, Connection>();
  private readonly perUid = new Map<number, number>();
  private readonly buckets = new Map<number, RateBucket>();
  private readonly connectBuckets = new Map<number, RateBucket>();
  /** Refusals are audited through this: repeats become counts (service/audit/refusal-aggregator.ts). */
  private readonly refusals: RefusalAggregator;
  private auditFailureLoggedAt = 0;
  private auditFailuresUnlogged = 0;
  private nextConnId = 1;
  /** Region doorbells handed out with leases that ask for events. */
  readonly doorbells = new Doorbells();

  constructor(
    private readonly deps: BrokerCore & {
      limits: DataPlaneLimits;
      identify: (cred: native.PeerCred) => Caller;
      observe?: (type: string, seconds: number, result: string, reason: string) => void;
      /** Free space on the state filesystem; below its low-water mark non-admins are refused. */
      stateSpace?: StateSpace;
    },
  ) {
    // A lease that ends (here or anywhere else) leaves its connection's table and its doorbell.
    deps.leases.onEnd((lease) => this.forget(lease.id));
    this.refusals = new RefusalAggregator(
      (r, count) => this.writeAudit(r.actor as Caller, r.action, r.resource, 'DENIED', r.reason, count ? { ...r.details, aggregated: true, ...count } : r.details),
      deps.limits.refusalAuditIntervalSeconds * 1000,
    );
    // The one audited-operation helper, without a transaction of its own:
    // audit events are chained in memory and group-committed behind, so
    // recording one puts no SQLite write on the reply path.
    this.auditor = new Auditor({ db: deps.db, audit: deps.audit, transaction: (fn) => fn() });
  }

  private readonly auditor: Auditor;

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
    this.refusals.close();
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
    if (!caller.isAdmin && !this.take(this.connectBuckets, caller.uid, this.deps.limits.maxConnectsPerSecondPerUid)) {
      this.audit(caller, 'DataPlaneConnect', 'data.sock', 'DENIED', 'CONNECTION_RATE_LIMITED', { rate: this.deps.limits.maxConnectsPerSecondPerUid });
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
    const conn: Connection = { id: this.nextConnId++, sock, caller, process: processIdentity(caller.pid), leases: new Set(), closed: false };
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
    this.deps.log.warn({ ...peerFields(conn.caller), reason, detail: message }, 'data plane protocol error; closing connection');
    this.audit(conn.caller, 'DataPlaneProtocolError', 'data.sock', 'DENIED', reason, { message });
    this.drop(conn);
  }

  /** Audits a decision; refusals go through the aggregator (repeats become counts). */
  private audit(caller: Caller, action: string, resource: string, result: 'ALLOWED' | 'DENIED' | 'ERROR', reason?: string, details?: Record<string, unknown>): void {
    if (result === 'DENIED' && reason) {
      this.refusals.refuse({ actor: caller, action, resource, reason, ...(details ? { details } : {}) });
      return;
    }
    this.writeAudit(caller, action, resource, result, reason, details);
  }

  private writeAudit(caller: Caller, action: string, resource: string, result: 'ALLOWED' | 'DENIED' | 'ERROR', reason?: string, details?: Record<string, unknown>): void {
    try {
      // Chained in memory now, written in the next group commit: nothing on the reply path.
      this.auditor.record((append) => append({ actor: caller, action, resource, result, ...(reason ? { reason } : {}), ...(details ? { details } : {}) }));
    } catch (err) {
      reportWriteFailure('audit', err);
      // One log line per interval, not per refusal: a full disk must not also flood the log.
      this.auditFailuresUnlogged++;
      const now = Date.now();
      if (now - this.auditFailureLoggedAt >= this.deps.limits.refusalAuditIntervalSeconds * 1000) {
        this.deps.log.error({ err: (err as Error).message, action, resource, failures: this.auditFailuresUnlogged }, 'audit write failed');
        this.auditFailureLoggedAt = now;
        this.auditFailuresUnlogged = 0;
      }
    }
  }

  private allowRequest(uid: number): boolean {
    return this.take(this.buckets, uid, this.deps.limits.maxRequestsPerSecondPerUid);
  }

  /** One token from uid's bucket (rate per second, burst = rate). */
  private take(buckets: Map<number, RateBucket>, uid: number, rate: number): boolean {
    const now = performance.now();
    const b = buckets.get(uid) ?? { tokens: rate, last: now };
    b.tokens = Math.min(rate, b.tokens + ((now - b.last) / 1000) * rate);
    b.last = now;
    buckets.set(uid, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private onPacket(conn: Connection, data: Buffer, fds: number[]): void {
    if (conn.closed) return closeAll(fds);
    // A peer that sends requests but does not read the replies would make the
    // broker queue them without bound, each acquire reply holding a duplicate
    // of a region fd: cut it off before taking on another request.
    if (conn.sock.queuedPackets >= MAX_QUEUED_REPLIES) {
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
          this.acquire(conn, requestId, req.acquire!.region, fromAccessMode(req.acquire!.mode), req.acquire!.wantEvents === true);
          break;
        case 'release':
          this.release(conn, requestId, req.release!.leaseId);
          break;
        case 'offer':
          this.offer(conn, requestId, req.offer!.region, req.offer!.leaseId, fromAccessMode(req.offer!.mode), fds[0]!);
          break;
      }
    } catch (err) {
      const e = err instanceof BrokerError ? err : new InternalError('INTERNAL', `internal error: ${(err as Error).message}`);
      if (!(err instanceof BrokerError)) this.deps.log.error({ err }, 'data plane request failed');
      result = 'error';
      reason = e.reason;
      this.send(conn, { requestId, error: { code: e.code, reason: e.reason, message: e.message } });
    } finally {
      if (req.request === 'offer') closeAll(fds);
      this.deps.observe?.(req.request, (performance.now() - start) / 1000, result, reason);
    }
  }

  private send(conn: Connection, reply: DataReply, fds?: number[]): void {
    if (conn.closed) return;
    conn.sock.send(dataReplyCodec().encode(reply), fds);
  }

  /**
   * Sends a reply that acknowledges a change. In strict audit mode it waits
   * until the change's audit event is on disk (group commit); otherwise it
   * goes at once. `after` runs once it is sent (or dropped).
   */
  private acknowledge(conn: Connection, reply: DataReply, fds?: number[], after?: () => void): void {
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

  private acquire(conn: Connection, requestId: number, regionId: string, mode: GrantMode | undefined, wantEvents = false): void {
    const caller = conn.caller;
    const name = this.validName(caller, 'Acquire', regionId);
    const resource = regionName(name);
    const refuse = (err: BrokerError): never => {
      this.audit(caller, 'Acquire', resource, auditResultOf(err).result, err.reason, { mode });
      throw err;
    };
    if (!mode) refuse(new InvalidArgumentError('INVALID_MODE', `mode must be ${ACCESS_MODE_RULE}`));
    const region = this.deps.regions.get(name);
    if (!region) return refuse(new NotFoundError('REGION_NOT_FOUND', `region ${resource} does not exist`));
    const now = Date.now();
    const decision = this.deps.policy.decideAcquire(caller, region, this.deps.grants.forRegion(name), mode!, now);
    if (!decision.allowed) {
      return refuse(
        new PermissionDeniedError(
          decision.reason,
          decision.reason === 'NO_GRANT'
            ? `uid ${caller.uid} has no grant on ${resource}`
            : `uid ${caller.uid} has only a read-only grant on ${resource}`,
        ),
      );
    }
    if (region.state !== 'ACTIVE') {
      return refuse(new FailedPreconditionError('REGION_LOST', `region ${resource} lost its memory in a broker restart; delete it`));
    }
    if (!caller.isAdmin) {
      const limit = this.deps.limits.maxLeasesPerUid;
      if (this.leasesOf(caller.uid) >= limit) {
        refuse(new ResourceExhaustedError('TOO_MANY_LEASES', `uid ${caller.uid} holds ${limit} leases, the most allowed (dataPlane.maxLeasesPerUid); release some first`));
      }
      const space = this.deps.stateSpace;
      if (space?.low()) {
        refuse(new ResourceExhaustedError('STATE_LOW_SPACE', `the state filesystem has ${space.free()} bytes free, below the low-water mark ${space.lowWaterBytes}: only admins are served`));
      }
    }
    const opened = this.deps.backend.open(region, mode!);
    let lease: LeaseRecord | undefined;
    let bell: DoorbellFds | undefined;
    // Permission by grant mode: a lease acquired read-write may notify; a
    // read-only one may only wait (its event page fd is O_RDONLY), unless
    // its grant was made with allow_notify.
    const mayNotify = mode === 'rw' || decision.grant?.allowNotify === true;
    let closeFds = true;
    const closeSent = (): void => {
      fs.closeSync(opened.fd);
      if (bell) closeAll([bell.page, bell.bell]);
    };
    try {
      if (wantEvents) bell = this.doorbells.open(name, mayNotify);
      const grant = decision.grant;
      // In memory; written behind (a kmod lease before its fd leaves: see leases/lease-service.ts).
      lease = this.deps.leases.start(
        { region: name, grantId: grant?.id ?? null, pid: caller.pid, uid: caller.uid, mode: mode!, kernelGrantId: opened.kernelGrantId ?? null, createTime: now },
        { durable: opened.kernelGrantId !== undefined },
      );
      this.audit(caller, 'Acquire', resource, 'ALLOWED', undefined, { mode, lease: lease.id, grant: grant ? grantName(name, grant.id) : 'owner-or-admin' });
      conn.leases.add(lease.id);
      this.leaseOwner.set(lease.id, conn);
      if (bell) this.doorbells.attach(name, lease.id);
      closeFds = false;
      this.acknowledge(
        conn,
        {
          requestId,
          acquire: {
            leaseId: lease.id,
            region: name,
            sizeBytes: region.sizeBytes,
            mode: toAccessMode(mode!),
            grant: grant ? grantName(name, grant.id) : '',
            backend: this.deps.backend.kind,
            ...(bell ? { events: { mayNotify, pageVersion: EVENT_PAGE.version } } : {}),
          },
        },
        bell ? [opened.fd, bell.page, bell.bell] : [opened.fd],
        closeSent,
      );
    } catch (err) {
      if (lease) this.deps.leases.end(lease, 'NOT_DELIVERED', caller);
      else if (opened.kernelGrantId) this.deps.backend.revoke(opened.kernelGrantId);
      this.doorbells.closeIfIdle(name);
      throw err;
    } finally {
      if (closeFds) closeSent();
    }
  }

  /** The region id, or an audited refusal (INVALID_REGION_NAME is a decision too). */
  private validName(caller: Caller, action: string, regionId: string): string {
    try {
      return validateRegionId(regionId, 'region');
    } catch (err) {
      if (err instanceof BrokerError) this.audit(caller, action, 'regions/-', 'DENIED', err.reason, { name: String(regionId).slice(0, 80) });
      throw err;
    }
  }

  /** Leases held through uid's live connections (what the per-uid cap counts). */
  private leasesOf(uid: number): number {
    let n = 0;
    for (const c of this.connections.values()) if (c.caller.uid === uid) n += c.leases.size;
    return n;
  }

  private release(conn: Connection, requestId: number, leaseId: number): void {
    const lease = this.deps.leases.get(leaseId);
    // Only the connection that holds a lease (or, after a reconnect, the
    // same uid and pid) may release it.
    if (!lease || !(conn.leases.has(leaseId) || (lease.uid === conn.caller.uid && lease.pid === conn.caller.pid))) {
      throw new NotFoundError('LEASE_NOT_FOUND', `lease ${leaseId} is not held by this client`);
    }
    this.deps.leases.end(lease, 'RELEASED', conn.caller);
    this.acknowledge(conn, { requestId, release: { leaseId } });
  }

  /**
   * A client that held a lease across a broker restart (or a reconnect)
   * offers its fd back. If the lease is still on record for this very
   * process, it is re-attached to this connection (so revocation notices
   * reach it again); on memfd the fd also brings back region memory that
   * would otherwise be lost. A memfd lease acquired within the last
   * write-behind window before a crash has no row: it is taken back if the
   * fd is this region's and policy still allows this process the mode (it
   * could acquire it anew). Anything else is refused and audited.
   */
  private offer(conn: Connection, requestId: number, regionId: string, leaseId: number, mode: GrantMode | undefined, fd: number): void {
    const caller = conn.caller;
    const name = this.validName(caller, 'Offer', regionId);
    const resource = regionName(name);
    const region = this.deps.regions.get(name);
    const lease = leaseId > 0 ? this.deps.leases.get(leaseId) : undefined;
    const leaseMatches = lease !== undefined && lease.region === name && lease.uid === caller.uid && lease.pid === caller.pid && lease.mode === mode;
    const refuse = (why: string): void => {
      this.audit(caller, 'Offer', resource, 'DENIED', 'OFFER_REFUSED', { lease: leaseId, why });
      this.send(conn, { requestId, offer: { accepted: false, leaseId: 0 } });
    };
    if (!region || !mode) return refuse('unknown region or mode');
    const memfd = this.deps.backend.kind === 'memfd';
    let unwritten: LeaseRecord | undefined;
    if (!lease && memfd && leaseId > 0) {
      const decision = this.deps.policy.decideAcquire(caller, region, this.deps.grants.forRegion(name), mode, Date.now());
      if (decision.allowed) {
        unwritten = { id: leaseId, region: name, grantId: decision.grant?.id ?? null, pid: caller.pid, uid: caller.uid, mode, kernelGrantId: null, createTime: Date.now() };
      }
    }
    if (!leaseMatches && !unwritten) return refuse('no such lease for this process');
    const wasLost = region.state !== 'ACTIVE';
    if (memfd && !this.deps.backend.offer(region, fd)) return refuse('fd is not this region');
    if (unwritten && !this.deps.leases.adopt(unwritten)) return refuse('no such lease for this process');
    if (wasLost) inTransaction(this.deps.db, () => this.deps.regions.setState(name, 'ACTIVE'));
    this.audit(caller, 'Offer', resource, 'ALLOWED', undefined, { lease: leaseId, readopted: wasLost });
    if (wasLost) this.deps.log.info({ region: resource, ...peerFields(caller) }, 'region re-adopted from a client-held fd');
    conn.leases.add(leaseId);
    this.leaseOwner.set(leaseId, conn);
    this.send(conn, { requestId, offer: { accepted: true, leaseId } });
  }

  // LeaseNotifier
  notify(lease: LeaseRecord, reason: RevocationReason, graceMs: number): boolean {
    const conn = this.leaseOwner.get(lease.id);
    // Ring first: waiters wake with the region marked deleted even before
    // they read the notice below.
    if (reason === 'REGION_DELETED') this.doorbells.regionDeleted(lease.region);
    if (!conn || conn.closed) return false;
    this.send(conn, { requestId: 0, revocation: { leaseId: lease.id, region: lease.region, reason, graceMs } });
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

function closeAll(fds: number[]): void {
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }
}
