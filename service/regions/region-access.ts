// Who may see and who may manage a region or a grant: the one visibility
// rule that Get, List, Watch and every change apply (RegionManager for
// regions, GrantManager for grants, watch-rpc for streamed changes). A
// caller without access gets the same NOT_FOUND as for a missing name, byte
// for byte (issue 16 item 6, AIP-211), so a name never leaks.
import type { Caller } from '../identity/caller';
import { PermissionDeniedError } from '../errors';
import type { GrantRecord } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';
import type { BrokerCore } from '../core';
import type { StateSpace } from '../store/state-space';
import { regionName, regionNotFound } from './names';
import { callerPrincipals, granteeMatches } from './policy';

/**
 * Leases whose holders had not released them when a revocation completed:
 * on memfd they keep their mapping (revocation is advisory there); on kmod
 * the kernel tore their mappings down.
 */
export interface RevocationOutcome {
  leasesStillMapped: number;
  revocationAdvisory: boolean;
}

export class RegionAccess {
  constructor(
    private readonly deps: Pick<BrokerCore, 'regions' | 'grants' | 'policy' | 'backend'> & {
      now?: () => number;
      /** Free state space: below its low-water mark non-admin creates and grants are refused. */
      stateSpace?: StateSpace;
    },
  ) {}

  now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** Who may see a region: the same rule for Get, List and Watch. */
  mayViewRegion(caller: Caller, region: RegionRecord, grants: readonly GrantRecord[]): boolean {
    return caller.isAdmin || this.deps.policy.mayView(caller, region, grants, this.now());
  }

  /** Who may see a grant: admins, its grantees, and the owner of its region. */
  mayViewGrant(caller: Caller, g: GrantRecord, regionOwnerUid: number | undefined): boolean {
    return caller.isAdmin || granteeMatches(g, callerPrincipals(caller)) || regionOwnerUid === caller.uid;
  }

  /** The region, if this caller may see it; otherwise the NOT_FOUND a missing region gets. */
  requireVisible(caller: Caller, name: string): RegionRecord {
    const r = this.deps.regions.get(name);
    if (!r || !this.mayViewRegion(caller, r, this.deps.grants.forRegion(name))) throw regionNotFound(name, caller);
    return r;
  }

  /** A region the caller may manage; NOT_OWNER only for a caller who may see it (a grantee). */
  requireManaged(caller: Caller, name: string): RegionRecord {
    return this.requireManagement(caller, this.requireVisible(caller, name));
  }

  /** NOT_OWNER unless the caller owns `r` or is an admin (the caller may already see it). */
  requireManagement(caller: Caller, r: RegionRecord): RegionRecord {
    if (!this.deps.policy.mayManage(caller, r)) {
      throw new PermissionDeniedError('NOT_OWNER', `uid ${caller.uid} does not own ${regionName(r.name)} and is not an admin`);
    }
    return r;
  }

  /**
   * Below the state filesystem's low-water mark only admins may add state
   * (issue 16 item 2): what is left is kept so an admin can always create,
   * delete, revoke and verify. Deletes and revokes free space and stay open.
   */
  requireSpace(caller: Caller): void {
    const lowSpace = this.deps.stateSpace?.refusalFor(caller);
    if (lowSpace) throw lowSpace;
  }

  /** What a delete or revoke left mapped, for the caller to hear (issue 16 item 7). */
  outcome(unreleased: number): RevocationOutcome {
    return { leasesStillMapped: unreleased, revocationAdvisory: !this.deps.backend.guarantees.revocationEnforced };
  }
}
