// The control-plane operations on regions and grants, shared by the gRPC
// handlers and the expiry timer. Each change commits in one transaction with
// its quota charge and its audit event, and a refusal is audited too, both
// through the one audited-operation helper (deps.auditor). Revoking
// what clients have mapped happens after the commit, through the Revoker.
//
// Over ~400 lines on purpose: the visibility rule (requireVisible /
// requireManaged), deletion (DELETING and its finish after the last lease)
// and grants share the same private helpers and the same one audited
// transaction per change; split them and each file re-derives them.
import { parseListFilter } from '../store/list-filter';
import { GRANT_FILTER, REGION_FILTER } from './list-filters';
import type { Caller } from '../identity/caller';
import { callerGids } from '../identity/caller';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  PermissionDeniedError,
} from '../errors';
import type { GranteeKind, GrantMode, GrantRecord } from '../store/grant-store';
import type { QuotaCharger } from '../hooks';
import { grantName, grantNotFound, regionName, regionNotFound } from './names';
import { decodePageToken, encodePageToken, pageSize } from '../store/paging';
import { callerPrincipals, granteeMatches } from './policy';
import { parseSubject } from '../identity/pods/principals';
import type { RegionRecord } from '../store/region-store';
import { brokerActor } from '../audit/audited-operation';
import { checkAlignment } from '../backends/backend';
import type { BrokerCore } from '../core';
import type { RegionChange, RegionWatch } from './region-watch';
import { peerFields } from '../logger';
import type { StateSpace } from '../store/state-space';


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

export interface CreateGrantInput {
  region: string;
  /** uid/gid by number; namespace ("team-a") and serviceaccount ("team-a/reader") by name. */
  grantee: { kind: GranteeKind; id: number; name?: string };
  mode: GrantMode;
  ttlMs: number;
  /** Read-only holders may notify the doorbell too (default false). */
  allowNotify?: boolean;
}

/** Checks a Kubernetes grantee name with pod identity's own grammar (DNS-1123 names). */
function validateKubernetesGrantee(kind: 'namespace' | 'serviceaccount', name: string | undefined): string {
  const text = name ?? '';
  try {
    parseSubject(`${kind === 'namespace' ? 'ns' : 'sa'}:${text}`);
  } catch {
    throw new InvalidArgumentError(
      'INVALID_GRANTEE',
      kind === 'namespace'
        ? `kubernetes_namespace must be a DNS-1123 label, got ${JSON.stringify(text.slice(0, 80))}`
        : `kubernetes_service_account must look like "namespace/name" (DNS-1123 names), got ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
  return text;
}

/**
 * Leases whose holders had not released them when a revocation completed:
 * on memfd they keep their mapping (revocation is advisory there); on kmod
 * the kernel tore their mappings down.
 */
export interface RevocationOutcome {
  leasesStillMapped: number;
  revocationAdvisory: boolean;
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
      now?: () => number;
      /** Where committed changes go for WatchRegions. */
      watch?: RegionWatch;
      /** Free state space: below its low-water mark non-admin creates and grants are refused. */
      stateSpace?: StateSpace;
    },
  ) {}

  private publish(change: RegionChange): void {
    this.deps.watch?.publish(change);
  }

  /** Who may see a region: the same rule for Get, List and Watch. */
  mayViewRegion(caller: Caller, region: RegionRecord, grants: readonly GrantRecord[]): boolean {
    return caller.isAdmin || this.deps.policy.mayView(caller, region, grants, this.now());
  }

  /** Who may see a grant: admins, its grantees, and the owner of its region. */
  mayViewGrant(caller: Caller, g: GrantRecord, regionOwnerUid: number | undefined): boolean {
    return caller.isAdmin || granteeMatches(g, callerPrincipals(caller)) || regionOwnerUid === caller.uid;
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /**
   * The region, if this caller may see it; otherwise the one NOT_FOUND a
   * missing region gets, byte for byte (issue 16 item 6, AIP-211): a caller
   * without access never learns that a name is a region.
   */
  private requireVisible(caller: Caller, name: string): RegionRecord {
    const r = this.deps.regions.get(name);
    if (!r || !this.mayViewRegion(caller, r, this.deps.grants.forRegion(name))) throw regionNotFound(name, caller);
    return r;
  }

  /** A region the caller may manage; NOT_OWNER only for a caller who may see it (a grantee). */
  private requireManaged(caller: Caller, name: string): RegionRecord {
    const r = this.requireVisible(caller, name);
    if (!this.deps.policy.mayManage(caller, r)) {
      throw new PermissionDeniedError('NOT_OWNER', `uid ${caller.uid} does not own ${regionName(name)} and is not an admin`);
    }
    return r;
  }

  /**
   * Below the state filesystem's low-water mark only admins may add state
   * (issue 16 item 2): what is left is kept so an admin can always create,
   * delete, revoke and verify. Deletes and revokes free space and stay open.
   */
  private requireSpace(caller: Caller): void {
    const lowSpace = this.deps.stateSpace?.refusalFor(caller);
    if (lowSpace) throw lowSpace;
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
      this.requireSpace(caller);
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
        createTime: this.now(),
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
      return this.requireVisible(caller, id);
    });
  }

  /** A page of the regions the caller may see that match `filter` (AIP-160, service/store/list-filter.ts). */
  listRegions(caller: Caller, size: number | undefined, token: string | undefined, filter?: string): { regions: RegionRecord[]; next: string } {
    const limit = pageSize(size);
    const match = parseListFilter(filter, REGION_FILTER, 'Region');
    // A token pages the list it came from, filter included (AIP-158).
    const list = match.key ? `regions?${match.key}` : 'regions';
    let after = decodePageToken<string>(list, token, 'string') ?? '';
    const out: RegionRecord[] = [];
    for (;;) {
      const batch = this.deps.regions.page(after, limit + 1);
      for (const r of batch) {
        if (this.mayViewRegion(caller, r, this.deps.grants.forRegion(r.name)) && match.test(r)) out.push(r);
        if (out.length > limit) break;
      }
      if (out.length > limit || batch.length <= limit) break;
      after = batch[batch.length - 1]!.name;
    }
    if (out.length > limit) {
      out.length = limit;
      return { regions: out, next: encodePageToken(list, out[limit - 1]!.name) };
    }
    return { regions: out, next: '' };
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
      const r = this.requireManaged(caller, id);
      // Deleting again while it waits for its holders changes nothing.
      if (r.state === 'DELETING') return { region: r, leases: [] as ReturnType<typeof this.deps.leases.forRegion>, grants: [] as readonly GrantRecord[], again: true };
      const now = this.now();
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
      return { region: { ...region, state: 'DELETING', deleteTime: this.now() }, outcome: this.outcome(0) };
    }
    // The memory and the charge go with the last lease (finishDeletion), after the clients had their notice.
    const { unreleased } = await this.deps.revoker.revoke(leases, 'REGION_DELETED');
    const now = this.deps.regions.get(id);
    return { region: now ?? { ...region, state: 'DELETING' }, outcome: this.outcome(done.again ? this.leaseCount(id) : unreleased) };
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

  async createGrant(caller: Caller, input: CreateGrantInput): Promise<GrantRecord> {
    const resource = regionName(input.region);
    const created = this.deps.auditor.guard({ actor: caller, action: 'CreateGrant', resource }, () => {
      const r = this.requireManaged(caller, input.region);
      // A DELETING region takes no new grants: to its owner it is on its way out.
      if (r.state === 'DELETING') throw regionNotFound(input.region, caller);
      this.requireSpace(caller);
      const { kind, id } = input.grantee;
      const name = kind === 'uid' || kind === 'gid' ? null : validateKubernetesGrantee(kind, input.grantee.name);
      if (name === null && (!Number.isInteger(id) || id < 0 || id > 0xfffffffe)) {
        throw new InvalidArgumentError('INVALID_GRANTEE', `grantee ${kind} must be a number 0..4294967294, got ${id}`);
      }
      if (!Number.isSafeInteger(input.ttlMs) || input.ttlMs < 0 || input.ttlMs > 10 * 365 * 86400_000) {
        throw new InvalidArgumentError('INVALID_TTL', `ttl must be between 0 and 10 years, got ${input.ttlMs} ms`);
      }
      const now = this.now();
      return this.deps.auditor.record((append) => {
        const count = this.deps.grants.countForRegion(input.region);
        if (count >= this.deps.limits.maxGrantsPerRegion) {
          throw new FailedPreconditionError('TOO_MANY_GRANTS', `${resource} already has ${count} grants (the most allowed is ${this.deps.limits.maxGrantsPerRegion})`);
        }
        this.deps.quotas.checkGrant(input.region, count, { uid: r.ownerUid });
        const g = this.deps.grants.insert({
          region: input.region,
          granteeKind: kind,
          granteeId: name === null ? id : 0,
          granteeName: name,
          mode: input.mode,
          createTime: now,
          expireTime: input.ttlMs > 0 ? now + input.ttlMs : null,
          creatorUid: caller.uid,
          allowNotify: input.allowNotify === true,
        });
        append({
          actor: caller,
          action: 'CreateGrant',
          resource: grantName(input.region, g.id),
          result: 'ALLOWED',
          details: { grantee: `${kind}:${name ?? id}`, mode: input.mode, ttlMs: input.ttlMs, ...(input.allowNotify ? { allowNotify: true } : {}) },
        });
        this.deps.revoker.scheduleExpiry(g.expireTime);
        return g;
      });
    });
    await this.deps.auditor.committed();
    this.publish({ type: 'ADDED', region: this.deps.regions.get(created.region)!, grant: created, grants: this.deps.grants.forRegion(created.region) });
    return created;
  }

  /** A page of the grants (of one region, or all) the caller may see that match `filter` (AIP-160). */
  listGrants(caller: Caller, region: string | undefined, size: number | undefined, token: string | undefined, filter?: string): { grants: GrantRecord[]; next: string } {
    const limit = pageSize(size);
    const match = parseListFilter(filter, GRANT_FILTER, 'Grant');
    const list = `grants:${region ?? '-'}${match.key ? `?${match.key}` : ''}`;
    let after = decodePageToken<number>(list, token, 'number') ?? 0;
    if (region !== undefined) {
      this.deps.auditor.guard({ actor: caller, action: 'ListGrants', resource: regionName(region) }, () => {
        this.requireVisible(caller, region);
      });
    }
    const out: GrantRecord[] = [];
    const owners = new Map<string, number | undefined>();
    const visible = (g: GrantRecord): boolean => {
      if (!owners.has(g.region)) owners.set(g.region, this.deps.regions.get(g.region)?.ownerUid);
      return this.mayViewGrant(caller, g, owners.get(g.region));
    };
    for (;;) {
      const batch = this.deps.grants.page(region, after, limit + 1);
      for (const g of batch) {
        if (visible(g) && match.test(g)) out.push(g);
        if (out.length > limit) break;
      }
      if (out.length > limit || batch.length <= limit) break;
      after = batch[batch.length - 1]!.id;
    }
    if (out.length > limit) {
      out.length = limit;
      return { grants: out, next: encodePageToken(list, out[limit - 1]!.id) };
    }
    return { grants: out, next: '' };
  }

  /** One grant, for admins, the region's owner and the grantee; NOT_FOUND for anyone else, as for a missing one. */
  getGrant(caller: Caller, ref: { region?: string; id: number }): GrantRecord {
    const resource = ref.region ? grantName(ref.region, ref.id) : `grants/${ref.id}`;
    return this.deps.auditor.guard({ actor: caller, action: 'GetGrant', resource }, () => {
      const g = this.deps.grants.get(ref.id);
      const r = g && (ref.region === undefined || ref.region === g.region) ? this.deps.regions.get(g.region) : undefined;
      if (!g || !r || !this.mayViewGrant(caller, g, r.ownerUid)) throw grantNotFound(resource, caller);
      return g;
    });
  }

  async revokeGrant(caller: Caller, ref: { region?: string; id: number }): Promise<{ grant: GrantRecord; outcome: RevocationOutcome }> {
    const resource = ref.region ? grantName(ref.region, ref.id) : `grants/${ref.id}`;
    const { grant, leases, change } = this.deps.auditor.guard({ actor: caller, action: 'RevokeGrant', resource }, () => {
      const g = this.deps.grants.get(ref.id);
      const r = g && (ref.region === undefined || ref.region === g.region) ? this.deps.regions.get(g.region) : undefined;
      // A grant of a region the caller may not see is NOT_FOUND, as a missing one (item 6).
      if (!g || !r || !(this.mayViewGrant(caller, g, r.ownerUid) || this.mayViewRegion(caller, r, this.deps.grants.forRegion(r.name)))) {
        throw grantNotFound(resource, caller);
      }
      if (!this.deps.policy.mayManage(caller, r)) {
        throw new PermissionDeniedError('NOT_OWNER', `uid ${caller.uid} does not own ${regionName(g.region)} and is not an admin`);
      }
      return this.deps.auditor.record((append) => {
        const leases = this.deps.leases.forGrant(g.id);
        const grants = this.deps.grants.forRegion(g.region);
        this.deps.grants.remove(g.id);
        append({ actor: caller, action: 'RevokeGrant', resource: grantName(g.region, g.id), result: 'ALLOWED', details: { leases: leases.length } });
        return { grant: g, leases, change: { type: 'DELETED', region: r, grant: g, grants } as RegionChange };
      });
    });
    await this.deps.auditor.committed();
    this.publish(change);
    this.deps.log.info({ grant: grantName(grant.region, grant.id), leases: leases.length }, 'grant revoked');
    const { unreleased } = await this.deps.revoker.revoke(leases, 'GRANT_REVOKED');
    return { grant, outcome: this.outcome(unreleased) };
  }

  /** What a delete or revoke left mapped, for the caller to hear (issue 16 item 7). */
  private outcome(unreleased: number): RevocationOutcome {
    return { leasesStillMapped: unreleased, revocationAdvisory: !this.deps.backend.guarantees.revocationEnforced };
  }

  /** Removes every grant whose TTL has passed and revokes what was mapped through it. */
  async expireGrants(): Promise<void> {
    const now = this.now();
    const changes: RegionChange[] = [];
    const expired = this.deps.auditor.record((append) => {
      const gone = this.deps.grants.expiredAt(now).map((g) => ({ grant: g, leases: this.deps.leases.forGrant(g.id) }));
      for (const { grant, leases } of gone) {
        const region = this.deps.regions.get(grant.region);
        if (region) changes.push({ type: 'DELETED', region, grant, grants: this.deps.grants.forRegion(grant.region) });
        this.deps.grants.remove(grant.id);
        append({
          actor: brokerActor(),
          action: 'ExpireGrant',
          resource: grantName(grant.region, grant.id),
          result: 'ALLOWED',
          reason: 'GRANT_EXPIRED',
          details: { leases: leases.length },
        });
      }
      return gone;
    });
    for (const c of changes) this.publish(c);
    await Promise.all(expired.map(({ leases }) => this.deps.revoker.revoke(leases, 'GRANT_EXPIRED')));
  }
}
