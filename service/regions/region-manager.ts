// The control-plane operations on regions (Create, Get, List, Delete, and
// the finish of a deletion once the last lease ends), shared by the gRPC
// handlers and the start-up sequence; GrantManager does the same for grants
// and RegionAccess holds the visibility rule both apply. Each change commits
// in one transaction with its quota charge and its audit event, and a
// refusal is audited too, both through the one audited-operation helper
// (deps.auditor). Revoking what clients have mapped happens after the
// commit, through the Revoker.
import { parseListFilter } from '../store/list-filter';
import { REGION_FILTER } from './list-filters';
import type { Caller } from '../identity/caller';
import { callerGids } from '../identity/caller';
import { AlreadyExistsError, InvalidArgumentError, PermissionDeniedError } from '../errors';
import type { QuotaCharger } from '../hooks';
import { regionName } from './names';
import { decodePageToken, filteredPage, pageSize } from '../store/paging';
import type { GrantRecord } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';
import { brokerActor } from '../audit/audited-operation';
import { checkAlignment } from '../backends/backend';
import type { BrokerCore } from '../core';
import type { RegionChange, RegionWatch } from './region-watch';
import { peerFields } from '../logger';
import type { RegionAccess, RevocationOutcome } from './region-access';

export interface RegionLimits {
  minBytes: number;
  maxBytes: number;
  maxGrantsPerRegion: number;
}

export interface CreateRegionInput {
  id: string;
  sizeBytes: number;
  hugepages: boolean;
  numaNode: number;
}

export class RegionManager {
  /**
   * Names of DELETING regions, so the end of a region's last lease (every
   * release) costs a set lookup, not a database read, unless it finishes one.
   * Filled from the database on first use (a restart) and by deleteRegion.
   */
  #deleting: Set<string> | undefined;

  private deletingSet(): Set<string> {
    return (this.#deleting ??= new Set(this.deps.regions.deleting().map((r) => r.name)));
  }

  constructor(
    private readonly deps: BrokerCore & {
      quotas: QuotaCharger;
      limits: RegionLimits;
      access: RegionAccess;
      /** Where committed changes go for WatchRegions. */
      watch?: RegionWatch;
    },
  ) {}

  private publish(change: RegionChange): void {
    this.deps.watch?.publish(change);
  }

  validateSize(sizeBytes: number, hugepages: boolean): void {
    const { minBytes, maxBytes } = this.deps.limits;
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
      throw new InvalidArgumentError('INVALID_SIZE', `size_bytes must be a positive number of bytes, got ${sizeBytes}`);
    }
    checkAlignment(sizeBytes, hugepages);
    if (sizeBytes < minBytes || sizeBytes > maxBytes) {
      throw new InvalidArgumentError('SIZE_OUT_OF_RANGE', `size_bytes ${sizeBytes} is outside the allowed range ${minBytes}..${maxBytes}`);
    }
  }

  async createRegion(caller: Caller, input: CreateRegionInput): Promise<RegionRecord> {
    const resource = regionName(input.id);
    const record = this.deps.auditor.guard({ actor: caller, action: 'CreateRegion', resource }, () => {
      if (!this.deps.policy.mayCreate(caller)) {
        throw new PermissionDeniedError('CREATE_NOT_ALLOWED', `uid ${caller.uid} may not create regions on this broker`);
      }
      this.deps.access.requireSpace(caller);
      this.validateSize(input.sizeBytes, input.hugepages);
      if (!Number.isInteger(input.numaNode) || input.numaNode < -1 || input.numaNode > 1023) {
        throw new InvalidArgumentError('INVALID_NUMA_NODE', `numa_node must be -1 or a node number, got ${input.numaNode}`);
      }
      if (this.deps.regions.get(input.id)) {
        throw new AlreadyExistsError('REGION_EXISTS', `region ${resource} already exists`);
      }
      // Refuse before allocating what could never be charged; the charge in
      // the transaction below stays the authority.
      this.deps.quotas.precheckRegion({ uid: caller.uid, gids: callerGids(caller), admin: caller.isAdmin }, input.sizeBytes);
      // Memory first, row second: if the row's transaction fails, the memory
      // is released again, so nothing is left behind either way.
      const ref = this.deps.backend.create(input.id, input.sizeBytes, { hugepages: input.hugepages, numaNode: input.numaNode });
      const record: RegionRecord = {
        name: input.id,
        sizeBytes: input.sizeBytes,
        ownerUid: caller.uid,
        ownerGid: caller.gid,
        backend: this.deps.backend.kind,
        hugepages: input.hugepages,
        numaNode: input.numaNode,
        createTime: this.deps.access.now(),
        state: 'ACTIVE',
        backendRef: ref,
      };
      try {
        this.deps.auditor.record((append) => {
          if (this.deps.regions.get(input.id)) {
            throw new AlreadyExistsError('REGION_EXISTS', `region ${resource} already exists`);
          }
          this.deps.quotas.chargeRegion(input.id, { uid: caller.uid, gids: callerGids(caller), admin: caller.isAdmin }, input.sizeBytes);
          this.deps.regions.insert(record);
          append({
            actor: caller,
            action: 'CreateRegion',
            resource,
            result: 'ALLOWED',
            details: { sizeBytes: input.sizeBytes, hugepages: input.hugepages, numaNode: input.numaNode, backend: record.backend },
          });
        });
      } catch (err) {
        this.deps.backend.destroy(record);
        throw err;
      }
      return record;
    });
    try {
      await this.deps.auditor.committed(); // a group commit that failed took the row with it
    } catch (err) {
      this.deps.backend.destroy(record);
      throw err;
    }
    // Debug: the audit event's own line (audit/audit-log.ts) says this at
    // info, with the same request id, peer and more details (one line and
    // one write(2) per create, not two).
    this.deps.log.debug({ region: resource, ...peerFields(caller), sizeBytes: input.sizeBytes }, 'region created');
    this.publish({ type: 'ADDED', region: record, grants: [] });
    return record;
  }

  getRegion(caller: Caller, id: string): RegionRecord {
    const resource = regionName(id);
    return this.deps.auditor.guard({ actor: caller, action: 'GetRegion', resource }, () => {
      // Not visible and not existing look the same to a caller without access.
      return this.deps.access.requireVisible(caller, id);
    });
  }

  /** A page of the regions the caller may see that match `filter` (AIP-160, service/store/list-filter.ts). */
  listRegions(caller: Caller, size: number | undefined, token: string | undefined, filter?: string): { regions: RegionRecord[]; next: string } {
    const limit = pageSize(size);
    const match = parseListFilter(filter, REGION_FILTER, 'Region');
    // A token pages the list it came from, filter included (AIP-158).
    const list = match.key ? `regions?${match.key}` : 'regions';
    const after = decodePageToken<string>(list, token, 'string') ?? '';
    const page = filteredPage(
      list,
      limit,
      after,
      (from, count) => this.deps.regions.page(from, count),
      (r) => r.name,
      (r) => this.deps.access.mayViewRegion(caller, r, this.deps.grants.forRegion(r.name)) && match.test(r),
    );
    return { regions: page.items, next: page.next };
  }

  /** What a Region message adds to the row. */
  regionExtras(name: string): { leaseCount: number; revocationAdvisory: boolean } {
    return { leaseCount: this.leaseCount(name), revocationAdvisory: !this.deps.backend.guarantees.revocationEnforced };
  }

  /** Leases held on a region now (a DELETING region waits for them). */
  leaseCount(name: string): number {
    return this.deps.leases.forRegion(name).length;
  }

  /**
   * Deletes a region (issue 16 item 4). Without leases it goes at once:
   * charge refunded, row removed, memory released. With leases it becomes
   * DELETING: its grants go, holders get their notice, new acquires are
   * NOT_FOUND, and it stays charged to its owner until the last lease ends
   * (LeaseService.end -> finishDeletion). The name stays taken meanwhile.
   */
  async deleteRegion(caller: Caller, id: string): Promise<{ region: RegionRecord; outcome: RevocationOutcome }> {
    const resource = regionName(id);
    const done = this.deps.auditor.guard({ actor: caller, action: 'DeleteRegion', resource }, () => {
      const r = this.deps.access.requireManaged(caller, id);
      // Deleting again while it waits for its holders changes nothing.
      if (r.state === 'DELETING') return { region: r, leases: [] as ReturnType<typeof this.deps.leases.forRegion>, grants: [] as readonly GrantRecord[], again: true };
      const now = this.deps.access.now();
      return this.deps.auditor.record((append) => {
        const leases = this.deps.leases.forRegion(id);
        const grants = this.deps.grants.forRegion(id);
        if (leases.length === 0) {
          this.deps.quotas.refundRegion(id);
          this.deps.regions.remove(id);
        } else {
          this.deps.grants.removeForRegion(id);
          this.deps.regions.markDeleting(id, now);
          this.deletingSet().add(id);
        }
        append({ actor: caller, action: 'DeleteRegion', resource, result: 'ALLOWED', details: { leases: leases.length, ...(leases.length > 0 ? { deleting: true } : {}) } });
        // kmod: the kernel region goes inside the transaction, last, so the
        // charge is refunded only if the kernel destroyed it (a refusal rolls
        // the delete back). memfd closes the broker's fd after the commit.
        if (leases.length === 0 && this.deps.backend.kind === 'kmod') this.deps.backend.destroy(r);
        return { region: this.deps.regions.get(id) ?? r, leases, grants, again: false };
      });
    });
    await this.deps.auditor.committed();
    const { region, leases, grants } = done;
    if (!done.again) {
      // Its grants went with it: a watcher sees each go, then the region (or its DELETING state).
      for (const g of grants) this.publish({ type: 'DELETED', region, grant: g, grants });
      this.publish({ type: leases.length === 0 ? 'DELETED' : 'MODIFIED', region, grants: [] });
      // A plain delete is the audit event's line at info (details.leases 0);
      // a region left DELETING for its holders gets its own info line too.
      if (leases.length === 0) this.deps.log.debug({ region: resource, ...peerFields(caller), leases: 0 }, 'region deleted');
      else this.deps.log.info({ region: resource, ...peerFields(caller), leases: leases.length }, 'region deleting: waiting for its holders');
    }
    if (leases.length === 0 && !done.again) {
      if (this.deps.backend.kind !== 'kmod') this.deps.backend.destroy(region);
      return { region: { ...region, state: 'DELETING', deleteTime: this.deps.access.now() }, outcome: this.deps.access.outcome(0) };
    }
    // The memory and the charge go with the last lease (finishDeletion), after the clients had their notice.
    const { unreleased } = await this.deps.revoker.revoke(leases, 'REGION_DELETED');
    const now = this.deps.regions.get(id);
    return { region: now ?? { ...region, state: 'DELETING' }, outcome: this.deps.access.outcome(done.again ? this.leaseCount(id) : unreleased) };
  }

  /**
   * The last lease of a region ended: a DELETING region's memory is released
   * (on kmod the kernel region destroyed; the charge stays if that fails),
   * then its charge refunded and its row removed, in one audited transaction.
   */
  finishDeletion(name: string): void {
    if (!this.deletingSet().has(name)) return;
    const r = this.deps.regions.get(name);
    if (!r || r.state !== 'DELETING' || this.deps.leases.forRegion(name).length > 0) return;
    this.deps.backend.destroy(r);
    this.deps.auditor.record((append) => {
      this.deps.quotas.refundRegion(name);
      this.deps.regions.remove(name);
      append({ actor: brokerActor(), action: 'RegionRemoved', resource: regionName(name), result: 'ALLOWED', details: { sizeBytes: r.sizeBytes } });
    });
    this.deletingSet().delete(name);
    this.deps.log.info({ region: regionName(name) }, 'region deleted: its last lease ended');
    this.publish({ type: 'DELETED', region: r, grants: [] });
  }

  /** At start, after the leases of exited holders ended: finishes every DELETING region nobody holds. */
  finishPendingDeletions(): number {
    let n = 0;
    for (const r of this.deps.regions.deleting()) {
      if (this.deps.leases.forRegion(r.name).length > 0) continue;
      try {
        this.finishDeletion(r.name);
        n++;
      } catch (err) {
        this.deps.log.error({ region: regionName(r.name), err: (err as Error).message }, 'could not finish deleting a region; it stays charged');
      }
    }
    return n;
  }
}
