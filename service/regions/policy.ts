// The access policy (docs/ARCHITECTURE.md, "Policy"), in one place: root and the configured
// admin uids/groups are admins; any local uid may create regions (unless the
// configuration says otherwise) and owns what it creates; the owner or an
// admin grants, revokes and deletes; a grantee maps with the mode granted.
import type { Caller } from '../identity/caller';
import { callerGids } from '../identity/caller';
import { principalsOf, subjectMatches, type Subject } from '../identity/pods/principals';
import type { GrantMode, GrantRecord } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';

export interface PolicyConfig {
  adminUids: readonly number[];
  adminGids: readonly number[];
  allowNonAdminCreate: boolean;
}

/** The subject a grant names, in pod identity's vocabulary (service/identity/pods/principals.ts). */
export function grantSubject(g: GrantRecord): Subject {
  switch (g.granteeKind) {
    case 'uid':
      return { kind: 'uid', uid: g.granteeId };
    case 'gid':
      return { kind: 'gid', gid: g.granteeId };
    case 'namespace':
      return { kind: 'namespace', namespace: g.granteeName! };
    case 'serviceaccount': {
      const [namespace, name] = g.granteeName!.split('/') as [string, string];
      return { kind: 'serviceAccount', namespace, name };
    }
  }
}

/**
 * The subjects a caller answers to: its uid and gids, and its namespace and
 * service account only when its pod was resolved (a peer whose pod is
 * unknown keeps only what its uid and gids give it).
 */
export function callerPrincipals(caller: Caller): Subject[] {
  return principalsOf(caller, caller.pod);
}

export function granteeMatches(g: GrantRecord, principals: readonly Subject[]): boolean {
  return subjectMatches(grantSubject(g), principals);
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
  matchingGrants(caller: Caller, grants: readonly GrantRecord[], now: number): GrantRecord[] {
    const principals = callerPrincipals(caller);
    return grants
      .filter((g) => g.expireTime === null || g.expireTime > now)
      .filter((g) => granteeMatches(g, principals))
      .sort((a, b) => (a.mode === b.mode ? a.id - b.id : a.mode === 'rw' ? -1 : 1));
  }

  mayView(caller: Caller, region: RegionRecord, grants: readonly GrantRecord[], now: number): boolean {
    return this.mayManage(caller, region) || this.matchingGrants(caller, grants, now).length > 0;
  }

  /**
   * Decides a data-plane acquire. Owner and admins map read-write; anybody
   * else needs an unexpired grant of at least the requested mode.
   */
  decideAcquire(
    caller: Caller,
    region: RegionRecord,
    grants: readonly GrantRecord[],
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
