// The one lease service (docs/ARCHITECTURE.md, "State and durability"). A
// lease is one fd handed to one client process. Leases are authoritative
// here, in memory: acquire and release touch no database on their reply
// path. What a restarted broker needs (which leases outlived it, to revoke
// kmod kernel grants and to accept memfd fds offered back) is written behind,
// one transaction per window, in LeaseStore; a lease acquired and released
// within one window is never written at all.
//
// The exception is a kmod lease: its kernel grant outlives the broker, and a
// grant the broker forgot could not be revoked, so its row is written (no
// fsync: WAL, synchronous=NORMAL, durable across a crash of the broker)
// before the fd leaves the broker.
//
// Every ending goes through end(): release, holder exit, revocation (grant
// revoked or expired, region deleted) and holders found gone at start. It
// revokes the kernel grant, forgets the lease, writes its audit event and
// tells the listeners (the data plane's connection table, the revoker).
// When it ends a region's last lease it says so (onRegionFreed): a DELETING
// region is then destroyed, refunded and removed (issue 16 item 4), so an
// owner's quota pays for a region's bytes until nobody holds them.
import type { Backend } from '../backends/backend';
import type { Auditor } from '../audit/audited-operation';
import type { AuditActor } from '../hooks';
import { intervalLog, type Logger } from '../logger';
import { regionName } from '../regions/names';
import type { LeaseRecord, LeaseStore } from './lease-store';
import { processGone } from './process-liveness';

export type { LeaseRecord } from './lease-store';

export type LeaseEndReason = 'RELEASED' | 'HOLDER_EXITED' | 'GRANT_REVOKED' | 'GRANT_EXPIRED' | 'REGION_DELETED' | 'NOT_DELIVERED';

/** Lease ids reserved in the database ahead of use, so a restart never hands one out twice. */
const RESERVE_BLOCK = 4096;

export class LeaseService {
  private readonly leases = new Map<number, LeaseRecord>();
  private readonly byRegion = new Map<string, Set<number>>();
  private readonly byGrant = new Map<number, Set<number>>();
  /** Written behind: id → row to write, or null to delete. */
  private readonly dirty = new Map<number, LeaseRecord | null>();
  private readonly listeners: Array<(lease: LeaseRecord, reason: LeaseEndReason) => void> = [];
  private regionFreed: ((region: string) => void) | undefined;
  private nextId = 1;
  private reserved = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly failureLog: ReturnType<typeof intervalLog>;
  /** Failed writes since the last one that succeeded. */
  private failures = 0;

  constructor(
    private readonly deps: {
      store: LeaseStore;
      backend: Backend;
      /** Write-behind (audited-operation.ts): an ending is audited without a SQLite write on the release reply path. */
      auditor: Auditor;
      log: Logger;
      windowMs: number;
      /** While the store keeps failing, one error line per this many ms (default 60 s), not one per window. */
      failureLogIntervalMs?: number;
    },
  ) {
    this.failureLog = intervalLog(deps.failureLogIntervalMs ?? 60_000);
    let max = deps.store.reservedThrough();
    for (const l of deps.store.all()) {
      this.index(l);
      if (l.id > max) max = l.id;
    }
    // Ids up to the reservation may have been handed out before a crash: skip them all.
    this.nextId = max + 1;
    this.reserved = max;
  }

  /** Called with every lease that ends, whatever ended it. */
  onEnd(fn: (lease: LeaseRecord, reason: LeaseEndReason) => void): void {
    this.listeners.push(fn);
  }

  /** Called (once per ending) when the lease that ended was the last one on its region. */
  onRegionFreed(fn: (region: string) => void): void {
    this.regionFreed = fn;
  }

  get(id: number): LeaseRecord | undefined {
    return this.leases.get(id);
  }

  forRegion(region: string): LeaseRecord[] {
    return [...(this.byRegion.get(region) ?? [])].map((id) => this.leases.get(id)!);
  }

  forGrant(grantId: number): LeaseRecord[] {
    return [...(this.byGrant.get(grantId) ?? [])].map((id) => this.leases.get(id)!);
  }

  all(): LeaseRecord[] {
    return [...this.leases.values()];
  }

  get size(): number {
    return this.leases.size;
  }

  /** Records a new lease (memory first; the row follows within the window, or now when `durable`). */
  start(l: Omit<LeaseRecord, 'id'>, options: { durable?: boolean } = {}): LeaseRecord {
    if (this.nextId > this.reserved) this.reserve(true);
    const lease: LeaseRecord = { ...l, id: this.nextId++ };
    this.index(lease);
    this.dirty.set(lease.id, lease);
    if (options.durable) this.flush();
    else this.schedule();
    return lease;
  }

  /**
   * Takes back a lease a client offers after a restart whose row was not
   * written yet (it was acquired within the last window before a crash).
   * The caller has checked that policy still allows it. False if the id
   * was never handed out or is taken.
   */
  adopt(lease: LeaseRecord): boolean {
    if (lease.id <= 0 || lease.id >= this.nextId || this.leases.has(lease.id)) return false;
    this.index(lease);
    this.dirty.set(lease.id, lease);
    this.schedule();
    return true;
  }

  /**
   * Ends a lease: the kernel grant is revoked (kmod), the lease forgotten,
   * its row deleted behind, its ending audited. False if it had already ended.
   */
  end(lease: LeaseRecord, reason: LeaseEndReason, actor: AuditActor): boolean {
    if (this.leases.get(lease.id) !== lease) return false;
    this.unindex(lease);
    // A row never written needs no delete.
    if (this.dirty.get(lease.id)) this.dirty.delete(lease.id);
    else this.dirty.set(lease.id, null);
    this.schedule();
    if (lease.kernelGrantId !== null) {
      try {
        this.deps.backend.revoke(lease.kernelGrantId);
      } catch (err) {
        this.deps.log.warn({ lease: lease.id, err: (err as Error).message }, 'kernel revoke failed');
      }
    }
    if (reason !== 'NOT_DELIVERED') {
      this.deps.auditor.record((append) =>
        append({
          actor,
          action: reason === 'RELEASED' ? 'Release' : 'LeaseEnded',
          resource: regionName(lease.region),
          result: 'ALLOWED',
          ...(reason === 'RELEASED' ? {} : { reason }),
          details: { lease: lease.id },
        }),
      );
    }
    for (const fn of this.listeners) fn(lease, reason);
    if (!this.byRegion.has(lease.region)) {
      try {
        this.regionFreed?.(lease.region);
      } catch (err) {
        // The region stays DELETING and charged; the next start finishes it.
        this.deps.log.error({ region: regionName(lease.region), err: (err as Error).message }, 'could not finish deleting a region after its last lease');
      }
    }
    return true;
  }

  /** Ends the leases whose holders are gone; `attached` leases are watched through their connection instead. */
  endLeasesOfExitedHolders(actor: AuditActor, attached: (id: number) => boolean = () => false): number {
    let ended = 0;
    for (const lease of this.all()) {
      if (attached(lease.id) || !processGone({ pid: lease.pid, startTime: undefined })) continue;
      if (this.end(lease, 'HOLDER_EXITED', actor)) ended++;
    }
    return ended;
  }

  /** Writes what waits, in one transaction (no fsync). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const reserveThrough = this.nextId + RESERVE_BLOCK / 4 > this.reserved ? this.reserved + RESERVE_BLOCK : 0;
    if (this.dirty.size === 0 && reserveThrough === 0) return;
    const changes = new Map(this.dirty);
    this.dirty.clear();
    try {
      this.deps.store.apply(changes, reserveThrough);
      if (reserveThrough > 0) this.reserved = reserveThrough;
      if (this.failures > 0) {
        this.deps.log.info({ failures: this.failures, leases: changes.size }, 'lease records written again');
        this.failures = 0;
        this.failureLog.reset();
      }
    } catch (err) {
      // Kept for the next attempt; a newer change of the same lease wins.
      for (const [id, rec] of changes) if (!this.dirty.has(id)) this.dirty.set(id, rec);
      this.failures++;
      // Retried every window, logged once per interval (a full disk would write a line every 10 ms).
      this.failureLog((failures) => this.deps.log.error({ err: (err as Error).message, leases: changes.size, failures }, 'could not write lease records; will retry'));
      this.schedule();
    }
  }

  close(): void {
    this.flush();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private reserve(now: boolean): void {
    const through = this.reserved + RESERVE_BLOCK;
    if (now) this.deps.store.reserveThrough(through);
    this.reserved = through;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => this.flush(), this.deps.windowMs);
    this.timer.unref();
  }

  private index(l: LeaseRecord): void {
    this.leases.set(l.id, l);
    addTo(this.byRegion, l.region, l.id);
    if (l.grantId !== null) addTo(this.byGrant, l.grantId, l.id);
  }

  private unindex(l: LeaseRecord): void {
    this.leases.delete(l.id);
    removeFrom(this.byRegion, l.region, l.id);
    if (l.grantId !== null) removeFrom(this.byGrant, l.grantId, l.id);
  }
}

function addTo<K>(m: Map<K, Set<number>>, k: K, id: number): void {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  s.add(id);
}

function removeFrom<K>(m: Map<K, Set<number>>, k: K, id: number): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(id);
  if (s.size === 0) m.delete(k);
}
