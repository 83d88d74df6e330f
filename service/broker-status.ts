// What GetStatus reports (`shmbroker status`): the backend and what it
// guarantees, counts, limits and the state disk's free space. Admins see the
// broker's counts; anyone else only their own (regions they own, grants on
// them, their data connections): a caller learns nothing about regions it
// may not see (issue 16 item 6).
import * as native from '../native';
import type { GetStatusResponse } from '../proto/generated/shmbroker/v1/GetStatusResponse';
import type { Backend, RegionCeiling } from './backends/backend';
import type { DataPlane } from './dataplane/data-plane';
import type { Caller } from './identity/caller';
import type { GrantStore } from './store/grant-store';
import type { RegionStore } from './store/region-store';
import type { StateSpace } from './store/state-space';

export interface StatusSources {
  version: string;
  regions: RegionStore;
  grants: GrantStore;
  backend: Backend;
  dataPlane: DataPlane;
  stateSpace: StateSpace | undefined;
  /** Date.now() at start. */
  startedAt: number;
}

export function brokerStatus(src: StatusSources, caller: Caller): GetStatusResponse {
  const own = caller.isAdmin ? undefined : src.regions.all().filter((r) => r.ownerUid === caller.uid);
  const totals = own ? { count: own.length, bytes: own.reduce((a, r) => a + r.sizeBytes, 0) } : src.regions.totals();
  const grantCount = own ? own.reduce((a, r) => a + src.grants.forRegion(r.name).length, 0) : src.grants.count();
  const g = src.backend.guarantees;
  const space = src.stateSpace;
  return {
    version: src.version,
    backend: src.backend.kind,
    revocationEnforced: g.revocationEnforced,
    restartSurvival: g.restartSurvival,
    readOnlyEnforced: g.readOnlyEnforced,
    limitations: g.limitations,
    regionCount: totals.count,
    regionBytes: totals.bytes,
    grantCount,
    dataConnections: src.dataPlane.connectionCount(caller.isAdmin ? undefined : caller.uid),
    uptimeSeconds: Math.floor((Date.now() - src.startedAt) / 1000),
    callerUid: caller.uid,
    callerIsAdmin: caller.isAdmin,
    fdLimit: native.nofileLimit().soft,
    ...ceilingFields(src.backend.regionCeiling()),
    ...(space ? { stateFreeBytes: space.free(), stateLowWaterBytes: space.lowWaterBytes, stateLowSpace: space.low() } : {}),
  };
}

function ceilingFields(c: RegionCeiling | undefined): { regionCeiling: number; regionCeilingSource: string } {
  return c ? { regionCeiling: c.regions, regionCeilingSource: c.source } : { regionCeiling: 0, regionCeilingSource: '' };
}
