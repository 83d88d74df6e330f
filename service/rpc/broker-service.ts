// shmbroker.v1.BrokerService: translates between the proto messages and the
// RegionManager (regions) and GrantManager (grants). Validation of names
// happens here (so messages name the request field); policy and state
// changes happen in the managers.
import type { Grant } from '../../proto/generated/shmbroker/v1/Grant';
import type { Region } from '../../proto/generated/shmbroker/v1/Region';
import type { CreateRegionRequest__Output } from '../../proto/generated/shmbroker/v1/CreateRegionRequest';
import type { CreateGrantRequest__Output } from '../../proto/generated/shmbroker/v1/CreateGrantRequest';
import type { ListGrantsRequest__Output } from '../../proto/generated/shmbroker/v1/ListGrantsRequest';
import type { ListRegionsRequest__Output } from '../../proto/generated/shmbroker/v1/ListRegionsRequest';
import type { GetStatusResponse } from '../../proto/generated/shmbroker/v1/GetStatusResponse';
import { toAccessMode } from '../../proto/wire';
import type { Caller } from '../identity/caller';
import type { UnaryHandler } from './control-server';
import { InvalidArgumentError } from '../errors';
import type { GrantRecord } from '../store/grant-store';
import { grantName, parseGrantName, parseRegionName, regionName, requireAccessMode, validateRegionId } from '../regions/names';
import type { RegionManager } from '../regions/region-manager';
import type { GrantManager } from '../regions/grant-manager';
import type { RegionRecord } from '../store/region-store';

function timestamp(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

/** What a Region message says beyond the row: the leases held now, and whether revocation is advisory. */
export interface RegionExtras {
  leaseCount: number;
  revocationAdvisory: boolean;
}

const STATE = { ACTIVE: 'REGION_STATE_ACTIVE', LOST: 'REGION_STATE_LOST', DELETING: 'REGION_STATE_DELETING' } as const;

export function regionToProto(r: RegionRecord, extras?: RegionExtras): Region {
  return {
    name: regionName(r.name),
    sizeBytes: r.sizeBytes,
    ownerUid: r.ownerUid,
    ownerGid: r.ownerGid,
    backend: r.backend,
    hugepages: r.hugepages,
    // No preference is stored as -1; on the wire it is an unset optional field.
    numaNode: r.numaNode >= 0 ? r.numaNode : undefined,
    createTime: timestamp(r.createTime),
    state: STATE[r.state],
    ...(r.deleteTime != null ? { deleteTime: timestamp(r.deleteTime) } : {}),
    ...(extras ? { leaseCount: extras.leaseCount, revocationAdvisory: extras.revocationAdvisory } : {}),
  };
}

function granteeToProto(g: GrantRecord): Partial<Grant> {
  switch (g.granteeKind) {
    case 'uid':
      return { uid: g.granteeId };
    case 'gid':
      return { gid: g.granteeId };
    case 'namespace':
      return { kubernetesNamespace: g.granteeName! };
    case 'serviceaccount':
      return { kubernetesServiceAccount: g.granteeName! };
  }
}

export function grantToProto(g: GrantRecord): Grant {
  return {
    name: grantName(g.region, g.id),
    ...granteeToProto(g),
    mode: toAccessMode(g.mode),
    createTime: timestamp(g.createTime),
    ...(g.expireTime === null ? {} : { expireTime: timestamp(g.expireTime) }),
    creatorUid: g.creatorUid,
    allowNotify: g.allowNotify,
  };
}

export function brokerServiceHandlers(
  plane: { regions: RegionManager; grants: GrantManager },
  status: (caller: Caller) => GetStatusResponse,
): Record<string, UnaryHandler> {
  const { regions: manager, grants: grantManager } = plane;
  const toProto = (r: RegionRecord): Region => regionToProto(r, manager.regionExtras(r.name));
  return {
    async createRegion(caller, req: CreateRegionRequest__Output): Promise<Region> {
      const id = validateRegionId(req.regionId, 'region_id');
      const region = await manager.createRegion(caller, {
        id,
        sizeBytes: Number(req.region?.sizeBytes ?? 0),
        hugepages: req.region?.hugepages ?? false,
        numaNode: req.region?.numaNode ?? -1,
      });
      return toProto(region);
    },
    getRegion(caller, req: { name: string }): Region {
      return toProto(manager.getRegion(caller, parseRegionName(req.name)));
    },
    listRegions(caller, req: ListRegionsRequest__Output) {
      const { regions, next } = manager.listRegions(caller, req.pageSize, req.pageToken, req.filter);
      return { regions: regions.map(toProto), nextPageToken: next };
    },
    async deleteRegion(caller, req: { name: string }): Promise<Region> {
      // AIP-135 with a soft-delete flavour: the region as the deletion left it
      // (DELETING, the leases still held), so the report is in the response.
      const { region, outcome } = await manager.deleteRegion(caller, parseRegionName(req.name));
      return regionToProto(region, { leaseCount: outcome.leasesStillMapped, revocationAdvisory: outcome.revocationAdvisory });
    },
    async createGrant(caller, req: CreateGrantRequest__Output): Promise<Grant> {
      const region = parseRegionName(req.parent, 'parent');
      const g = req.grant;
      if (!g || !g.grantee) {
        throw new InvalidArgumentError('INVALID_GRANTEE', 'grant must name a uid, a gid, a kubernetes_namespace or a kubernetes_service_account');
      }
      const mode = requireAccessMode(g.mode, 'grant.mode');
      // AIP-214: a TTL or an expiry time, or neither (0: no expiry).
      let ttlMs = 0;
      if (g.ttl) {
        ttlMs = Number(g.ttl.seconds) * 1000 + Math.floor(g.ttl.nanos / 1e6);
        if (ttlMs <= 0) throw new InvalidArgumentError('INVALID_TTL', 'grant.ttl must be positive', { field: 'grant.ttl' });
      } else if (g.expireTime) {
        ttlMs = Number(g.expireTime.seconds) * 1000 + Math.floor(g.expireTime.nanos / 1e6) - Date.now();
        if (ttlMs <= 0) throw new InvalidArgumentError('INVALID_TTL', 'grant.expire_time is in the past', { field: 'grant.expire_time' });
      }
      const created = await grantManager.createGrant(caller, {
        region,
        grantee:
          g.grantee === 'uid'
            ? { kind: 'uid', id: g.uid! }
            : g.grantee === 'gid'
              ? { kind: 'gid', id: g.gid! }
              : g.grantee === 'kubernetesNamespace'
                ? { kind: 'namespace', id: 0, name: g.kubernetesNamespace! }
                : { kind: 'serviceaccount', id: 0, name: g.kubernetesServiceAccount! },
        mode,
        ttlMs,
        allowNotify: g.allowNotify === true,
      });
      return grantToProto(created);
    },
    getGrant(caller, req: { name: string }): Grant {
      return grantToProto(grantManager.getGrant(caller, parseGrantName(req.name)));
    },
    listGrants(caller, req: ListGrantsRequest__Output) {
      const parent = req.parent === 'regions/-' || req.parent === '' ? undefined : parseRegionName(req.parent, 'parent');
      const { grants, next } = grantManager.listGrants(caller, parent, req.pageSize, req.pageToken, req.filter);
      return { grants: grants.map(grantToProto), nextPageToken: next };
    },
    async revokeGrant(caller, req: { name: string }): Promise<Grant> {
      const { grant, outcome } = await grantManager.revokeGrant(caller, parseGrantName(req.name));
      // What the revocation could not take back travels in the grant's output-only fields (issue 16 item 7).
      return { ...grantToProto(grant), leaseCount: outcome.leasesStillMapped, revocationAdvisory: outcome.revocationAdvisory };
    },
    getStatus(caller) {
      return status(caller);
    },
  };
}
