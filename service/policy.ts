// The access policy of DESIGN.md, in one place: root and the configured
// admin uids/groups are admins; any local uid may create regions (unless the
// configuration says otherwise) and owns what it creates; the owner or an
// admin grants, revokes and deletes; a grantee maps with the mode granted.
import type { Caller } from './caller';
import { callerGids } from './caller';
import type { GrantMode, GrantRecord } from './grant-store';
import type { RegionRecord } from './region-store';

export interface PolicyConfig {
  adminUids: readonly number[];
  adminGids: readonly number[];
  allowNonAdminCreate: boolean;
}

/**
 * Whether a grant names this caller. Kubernetes grants match only a peer
 * whose pod was resolved (from its cgroup and the API server); anybody else
 * keeps only what its uid and gids give it.
 */
export function granteeMatches(g: GrantRecord, caller: Caller, gids: number[] = callerGids(caller)): boolean {
  switch (g.granteeKind) {
    case 'uid':
      return g.granteeId === caller.uid;
    case 'gid':
      return gids.includes(g.granteeId);
    case 'namespace':
      return caller.pod !== undefined && caller.pod.namespace === g.granteeName;
    case 'serviceaccount':
      return caller.pod !== undefined && `${caller.pod.namespace}/${caller.pod.serviceAccount}` === g.granteeName;
  }
}

export class Policy {
  constructor(private readonly config: PolicyConfig) {}

  isAdmin(id: { uid: number; gid: number; groups: number[] }): boolean {
    if (id.uid === 0 || this.config.adminUids.includes(id.uid)) return true;
    return callerGids(id).some((g) => this.config.adminGids.includes(g));
  }

  mayCreate(caller: Caller): boolean {
    return caller.isAdmin || this.config.allowNonAdminCreate;
  }

  /** Grant, revoke, delete: the owner or an admin. */
  mayManage(caller: Caller, region: RegionRecord): boolean {
    return caller.isAdmin || caller.uid === region.ownerUid;
  }

  /** The grants that give this caller access now, best (rw) first. */
  matchingGrants(caller: Caller, grants: GrantRecord[], now: number): GrantRecord[] {
    const gids = callerGids(caller);
    return grants
      .filter((g) => g.expireTime === null || g.expireTime > now)
      .filter((g) => granteeMatches(g, caller, gids))
      .sort((a, b) => (a.mode === b.mode ? a.id - b.id : a.mode === 'rw' ? -1 : 1));
  }

  mayView(caller: Caller, region: RegionRecord, grants: GrantRecord[], now: number): boolean {
    return this.mayManage(caller, region) || this.matchingGrants(caller, grants, now).length > 0;
  }

  /**
   * Decides a data-plane acquire. Owner and admins map read-write; anybody
   * else needs an unexpired grant of at least the requested mode.
   */
  decideAcquire(
    caller: Caller,
    region: RegionRecord,
    grants: GrantRecord[],
    mode: GrantMode,
    now: number,
  ): { allowed: true; grant: GrantRecord | null } | { allowed: false; reason: 'NO_GRANT' | 'GRANT_READ_ONLY' } {
    if (this.mayManage(caller, region)) return { allowed: true, grant: null };
    const matching = this.matchingGrants(caller, grants, now);
    if (matching.length === 0) return { allowed: false, reason: 'NO_GRANT' };
    const fit = matching.find((g) => mode === 'ro' || g.mode === 'rw');
    if (!fit) return { allowed: false, reason: 'GRANT_READ_ONLY' };
    return { allowed: true, grant: fit };
  }
}
