// The control-plane operations on grants (CreateGrant, Get, List, Revoke,
// and the expiry of TTL grants), beside RegionManager's on regions. Each
// change commits in one transaction with its audit event (deps.auditor);
// revoking what holders mapped through a grant happens after the commit,
// through the Revoker. Who may see or manage what is RegionAccess's rule.
import { parseListFilter } from '../store/list-filter';
import { GRANT_FILTER } from './list-filters';
import type { Caller } from '../identity/caller';
import { FailedPreconditionError, InvalidArgumentError } from '../errors';
import type { GranteeKind, GrantMode, GrantRecord } from '../store/grant-store';
import type { QuotaCharger } from '../hooks';
import { grantName, grantNotFound, regionName, regionNotFound } from './names';
import { decodePageToken, filteredPage, pageSize } from '../store/paging';
import { parseSubject } from '../identity/pods/principals';
import { brokerActor } from '../audit/audited-operation';
import type { BrokerCore } from '../core';
import type { RegionChange, RegionWatch } from './region-watch';
import type { RegionAccess, RevocationOutcome } from './region-access';

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

export class GrantManager {
  constructor(
    private readonly deps: BrokerCore & {
      quotas: QuotaCharger;
      limits: { maxGrantsPerRegion: number };
      access: RegionAccess;
      /** Where committed changes go for WatchRegions. */
      watch?: RegionWatch;
    },
  ) {}

  private publish(change: RegionChange): void {
    this.deps.watch?.publish(change);
  }

  async createGrant(caller: Caller, input: CreateGrantInput): Promise<GrantRecord> {
    const resource = regionName(input.region);
    const created = this.deps.auditor.guard({ actor: caller, action: 'CreateGrant', resource }, () => {
      const r = this.deps.access.requireManaged(caller, input.region);
      // A DELETING region takes no new grants: to its owner it is on its way out.
      if (r.state === 'DELETING') throw regionNotFound(input.region, caller);
      this.deps.access.requireSpace(caller);
      const { kind, id } = input.grantee;
      const name = kind === 'uid' || kind === 'gid' ? null : validateKubernetesGrantee(kind, input.grantee.name);
      if (name === null && (!Number.isInteger(id) || id < 0 || id > 0xfffffffe)) {
        throw new InvalidArgumentError('INVALID_GRANTEE', `grantee ${kind} must be a number 0..4294967294, got ${id}`);
      }
      if (!Number.isSafeInteger(input.ttlMs) || input.ttlMs < 0 || input.ttlMs > 10 * 365 * 86400_000) {
        throw new InvalidArgumentError('INVALID_TTL', `ttl must be between 0 and 10 years, got ${input.ttlMs} ms`);
      }
      const now = this.deps.access.now();
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
    const after = decodePageToken<number>(list, token, 'number') ?? 0;
    if (region !== undefined) {
      this.deps.auditor.guard({ actor: caller, action: 'ListGrants', resource: regionName(region) }, () => {
        this.deps.access.requireVisible(caller, region);
      });
    }
    const owners = new Map<string, number | undefined>();
    const visible = (g: GrantRecord): boolean => {
      if (!owners.has(g.region)) owners.set(g.region, this.deps.regions.get(g.region)?.ownerUid);
      return this.deps.access.mayViewGrant(caller, g, owners.get(g.region));
    };
    const page = filteredPage(
      list,
      limit,
      after,
      (from, count) => this.deps.grants.page(region, from, count),
      (g) => g.id,
      (g) => visible(g) && match.test(g),
    );
    return { grants: page.items, next: page.next };
  }

  /** One grant, for admins, the region's owner and the grantee; NOT_FOUND for anyone else, as for a missing one. */
  getGrant(caller: Caller, ref: { region?: string; id: number }): GrantRecord {
    const resource = ref.region ? grantName(ref.region, ref.id) : `grants/${ref.id}`;
    return this.deps.auditor.guard({ actor: caller, action: 'GetGrant', resource }, () => {
      const g = this.deps.grants.get(ref.id);
      const r = g && (ref.region === undefined || ref.region === g.region) ? this.deps.regions.get(g.region) : undefined;
      if (!g || !r || !this.deps.access.mayViewGrant(caller, g, r.ownerUid)) throw grantNotFound(resource, caller);
      return g;
    });
  }

  async revokeGrant(caller: Caller, ref: { region?: string; id: number }): Promise<{ grant: GrantRecord; outcome: RevocationOutcome }> {
    const resource = ref.region ? grantName(ref.region, ref.id) : `grants/${ref.id}`;
    const { grant, leases, change } = this.deps.auditor.guard({ actor: caller, action: 'RevokeGrant', resource }, () => {
      const g = this.deps.grants.get(ref.id);
      const r = g && (ref.region === undefined || ref.region === g.region) ? this.deps.regions.get(g.region) : undefined;
      // A grant of a region the caller may not see is NOT_FOUND, as a missing one (item 6).
      if (!g || !r || !(this.deps.access.mayViewGrant(caller, g, r.ownerUid) || this.deps.access.mayViewRegion(caller, r, this.deps.grants.forRegion(r.name)))) {
        throw grantNotFound(resource, caller);
      }
      this.deps.access.requireManagement(caller, r);
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
    return { grant, outcome: this.deps.access.outcome(unreleased) };
  }

  /** Removes every grant whose TTL has passed and revokes what was mapped through it. */
  async expireGrants(): Promise<void> {
    const now = this.deps.access.now();
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
