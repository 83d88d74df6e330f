// The data plane's requests, once a packet is decoded and rate-limited:
// acquire (policy, limits, backend fd, lease, doorbell), release and offer
// (re-adoption after a restart). The socket side (data-plane.ts) owns the
// connections and replies. Moved out of data-plane.ts unchanged (issue 14).
import * as fs from 'node:fs';
import type { DataReply } from '../../proto/generated/shmbroker/v1/DataReply';
import { ACCESS_MODE_RULE, toAccessMode } from '../../proto/wire';
import { auditResultOf } from '../audit/audited-operation';
import type { Caller } from '../identity/caller';
import { BrokerError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError } from '../errors';
import type { GrantMode } from '../store/grant-store';
import type { LeaseRecord } from '../leases/lease-store';
import { grantName, regionName, regionNotFound, validateRegionId } from '../regions/names';
import { inTransaction } from '../store/state-db';
import { EVENT_PAGE, type DoorbellFds, type Doorbells } from './doorbells';
import { peerFields } from '../logger';
import { closeAll, type Connection, type DataPlaneDeps } from './connection';

/** What the requests need of the socket side. */
export interface RequestHost {
  readonly doorbells: Doorbells;
  audit(caller: Caller, action: string, resource: string, result: 'ALLOWED' | 'DENIED' | 'ERROR', reason?: string, details?: Record<string, unknown>): void;
  send(conn: Connection, reply: DataReply, fds?: number[]): void;
  acknowledge(conn: Connection, reply: DataReply, fds?: number[], after?: () => void): void;
  /** Leases held through uid's live connections (what the per-uid cap counts). */
  leasesOf(uid: number): number;
  /** Ties a lease to the connection that holds it (revocation notices and holder exit go there). */
  attach(conn: Connection, leaseId: number): void;
}

export class DataRequests {
  constructor(
    private readonly deps: DataPlaneDeps,
    private readonly host: RequestHost,
  ) {}

  acquire(conn: Connection, requestId: number, regionId: string, mode: GrantMode | undefined, wantEvents = false): void {
    const caller = conn.caller;
    const name = this.validName(caller, 'Acquire', regionId);
    const resource = regionName(name);
    const refuse = (err: BrokerError): never => {
      this.host.audit(caller, 'Acquire', resource, auditResultOf(err).result, err.reason, { mode });
      throw err;
    };
    if (!mode) refuse(new InvalidArgumentError('INVALID_MODE', `mode must be ${ACCESS_MODE_RULE}`));
    const region = this.deps.regions.get(name);
    // Missing, not visible (no grant: the caller may not know it exists, item 6)
    // and DELETING (on its way out, item 4) are one answer, byte for byte.
    if (!region || region.state === 'DELETING') return refuse(regionNotFound(name, caller));
    const now = Date.now();
    const decision = this.deps.policy.decideAcquire(caller, region, this.deps.grants.forRegion(name), mode!, now);
    if (!decision.allowed) {
      if (decision.reason === 'NO_GRANT') return refuse(regionNotFound(name, caller));
      return refuse(new PermissionDeniedError(decision.reason, `uid ${caller.uid} has only a read-only grant on ${resource}`));
    }
    // A decision that cannot be audited is not made (issue 16 item 2): while
    // the audit trail cannot reach the disk, no lease is handed out.
    const failing = this.deps.audit.failing;
    if (failing) {
      return refuse(new ResourceExhaustedError('STATE_STORAGE_FULL', `the broker's state database cannot be written (${failing.message}); nothing was changed`));
    }
    if (region.state !== 'ACTIVE') {
      return refuse(new FailedPreconditionError('REGION_LOST', `region ${resource} lost its memory in a broker restart; delete it`));
    }
    if (!caller.isAdmin) {
      const limit = this.deps.limits.maxLeasesPerUid;
      if (this.host.leasesOf(caller.uid) >= limit) {
        refuse(new ResourceExhaustedError('TOO_MANY_LEASES', `uid ${caller.uid} holds ${limit} leases, the most allowed (dataPlane.maxLeasesPerUid); release some first`));
      }
      const lowSpace = this.deps.stateSpace?.refusalFor(caller);
      if (lowSpace) refuse(lowSpace);
    }
    // Permission by grant mode: a lease acquired read-write may notify; a
    // read-only one may only wait (its event page fd is O_RDONLY; on kmod
    // the kernel refuses NOTIFY on its fd), unless its grant was made with
    // allow_notify. On kmod this holds whether or not the lease asked for
    // events: the fd is the doorbell either way.
    const mayNotify = mode === 'rw' || decision.grant?.allowNotify === true;
    const opened = this.deps.backend.open(region, mode!, { mayNotify });
    // kmod: the region fd itself is the doorbell, nothing more to hand out
    // (one mechanism per region, so every notify reaches every waiter).
    const kernelEvents = wantEvents && this.deps.backend.kernelEvents;
    let lease: LeaseRecord | undefined;
    let bell: DoorbellFds | undefined;
    let closeFds = true;
    const closeSent = (): void => {
      fs.closeSync(opened.fd);
      if (bell) closeAll([bell.page, bell.bell]);
    };
    try {
      if (wantEvents && !kernelEvents) bell = this.host.doorbells.open(name, mayNotify);
      const grant = decision.grant;
      // In memory; written behind (a kmod lease before its fd leaves: see leases/lease-service.ts).
      lease = this.deps.leases.start(
        { region: name, grantId: grant?.id ?? null, pid: caller.pid, uid: caller.uid, mode: mode!, kernelGrantId: opened.kernelGrantId ?? null, createTime: now },
        { durable: opened.kernelGrantId !== undefined },
      );
      const leaseId = lease.id;
      const auditAllowed = (): void =>
        this.host.audit(caller, 'Acquire', resource, 'ALLOWED', undefined, { mode, lease: leaseId, grant: grant ? grantName(name, grant.id) : 'owner-or-admin' });
      // The reply goes first and the event is chained right after it, in the
      // same synchronous turn (nothing else runs in between, so the trail's
      // order is the broker's order): the client maps while the broker
      // audits, one HMAC and canonical JSON off the acquire's latency. Strict
      // mode waits for the event's commit before it replies, so it chains it
      // first. Audited either way, also when the reply cannot be sent.
      const auditFirst = this.deps.audit.sync === 'strict';
      if (auditFirst) auditAllowed();
      this.host.attach(conn, lease.id);
      if (bell) this.host.doorbells.attach(name, lease.id);
      closeFds = false;
      try {
        this.host.acknowledge(
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
              ...(kernelEvents ? { events: { mayNotify, pageVersion: 0, kernel: true } } : {}),
            },
          },
          bell ? [opened.fd, bell.page, bell.bell] : [opened.fd],
          closeSent,
        );
      } finally {
        if (!auditFirst) auditAllowed();
      }
    } catch (err) {
      if (lease) this.deps.leases.end(lease, 'NOT_DELIVERED', caller);
      else if (opened.kernelGrantId) this.deps.backend.revoke(opened.kernelGrantId);
      this.host.doorbells.closeIfIdle(name);
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
      if (err instanceof BrokerError) this.host.audit(caller, action, 'regions/-', 'DENIED', err.reason, { name: String(regionId).slice(0, 80) });
      throw err;
    }
  }

  /**
   * Ends the lease (lease-service end(): audited, revoked in the kernel on
   * kmod, forgotten here). With `noReply` (the SDK's release) nothing is sent
   * back on success, one packet less per cycle; a refusal is still answered
   * (the throw below becomes an error reply in DataPlane.onPacket).
   */
  release(conn: Connection, requestId: number, leaseId: number, noReply = false): void {
    const lease = this.deps.leases.get(leaseId);
    // Only the connection that holds a lease (or, after a reconnect, the
    // same uid and pid) may release it.
    if (!lease || !(conn.leases.has(leaseId) || (lease.uid === conn.caller.uid && lease.pid === conn.caller.pid))) {
      throw new NotFoundError('LEASE_NOT_FOUND', `lease ${leaseId} is not held by this client`);
    }
    this.deps.leases.end(lease, 'RELEASED', conn.caller);
    if (!noReply) this.host.acknowledge(conn, { requestId, release: { leaseId } });
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
  offer(conn: Connection, requestId: number, regionId: string, leaseId: number, mode: GrantMode | undefined, fd: number): void {
    const caller = conn.caller;
    const name = this.validName(caller, 'Offer', regionId);
    const resource = regionName(name);
    const region = this.deps.regions.get(name);
    const lease = leaseId > 0 ? this.deps.leases.get(leaseId) : undefined;
    const leaseMatches = lease !== undefined && lease.region === name && lease.uid === caller.uid && lease.pid === caller.pid && lease.mode === mode;
    const refuse = (why: string): void => {
      this.host.audit(caller, 'Offer', resource, 'DENIED', 'OFFER_REFUSED', { lease: leaseId, why });
      this.host.send(conn, { requestId, offer: { accepted: false, leaseId: 0 } });
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
    // A DELETING region takes back only leases it knows (they keep it charged until they end).
    if (region.state === 'DELETING' && !leaseMatches) return refuse('region is being deleted');
    const wasLost = region.state === 'LOST';
    if (memfd && !this.deps.backend.offer(region, fd)) return refuse('fd is not this region');
    if (unwritten && !this.deps.leases.adopt(unwritten)) return refuse('no such lease for this process');
    if (wasLost) inTransaction(this.deps.db, () => this.deps.regions.setState(name, 'ACTIVE'));
    this.host.audit(caller, 'Offer', resource, 'ALLOWED', undefined, { lease: leaseId, readopted: wasLost });
    if (wasLost) this.deps.log.info({ region: resource, ...peerFields(caller) }, 'region re-adopted from a client-held fd');
    this.host.attach(conn, leaseId);
    this.host.send(conn, { requestId, offer: { accepted: true, leaseId } });
  }
}
