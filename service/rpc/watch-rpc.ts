// BrokerService.WatchRegions: a Kubernetes-style watch of the regions and
// grants the caller can see (docs/ARCHITECTURE.md, "Region events", Watch).
// Without a resource_version: the current state as ADDED events, then every
// change. With one: the changes after it (OUT_OF_RANGE when it is no longer
// kept). Visibility is decided per event by the same rules as Get and List,
// with the region's grants as they were when the change happened.
import type { WatchRegionsRequest__Output } from '../../proto/generated/shmbroker/v1/WatchRegionsRequest';
import type { WatchRegionsResponse } from '../../proto/generated/shmbroker/v1/WatchRegionsResponse';
import type { Caller } from '../identity/caller';
import type { RegionManager } from '../regions/region-manager';
import type { GrantManager } from '../regions/grant-manager';
import type { RegionAccess } from '../regions/region-access';
import type { LoggedChange, RegionWatch } from '../regions/region-watch';
import type { StreamHandler } from './control-server';
import { grantToProto, regionToProto } from './broker-service';

const TYPE = { ADDED: 'WATCH_EVENT_TYPE_ADDED', MODIFIED: 'WATCH_EVENT_TYPE_MODIFIED', DELETED: 'WATCH_EVENT_TYPE_DELETED' } as const;

function visible(access: RegionAccess, caller: Caller, c: LoggedChange): boolean {
  if (!access.mayViewRegion(caller, c.region, c.grants)) return false;
  return !c.grant || access.mayViewGrant(caller, c.grant, c.region.ownerUid);
}

function toResponse(watch: RegionWatch, c: LoggedChange): WatchRegionsResponse {
  return {
    type: TYPE[c.type],
    resourceVersion: watch.token(c.version),
    ...(c.grant ? { grant: grantToProto(c.grant) } : { region: regionToProto(c.region) }),
  };
}

export function watchRegionsHandler(plane: { regions: RegionManager; grants: GrantManager; access: RegionAccess }, watch: RegionWatch): StreamHandler {
  return async (caller, req: WatchRegionsRequest__Output, emit, signal) => {
    // All of this runs synchronously up to the subscription, so no change
    // can fall between the snapshot (or the replay) and the live events.
    if (req.resourceVersion) {
      for (const c of watch.since(req.resourceVersion)) if (visible(plane.access, caller, c)) emit(toResponse(watch, c));
    } else {
      const now = watch.token();
      let token = '';
      do {
        const page = plane.regions.listRegions(caller, 1000, token);
        for (const r of page.regions) emit({ type: TYPE.ADDED, resourceVersion: now, region: regionToProto(r) });
        token = page.next;
      } while (token);
      do {
        const page = plane.grants.listGrants(caller, undefined, 1000, token);
        for (const g of page.grants) emit({ type: TYPE.ADDED, resourceVersion: now, grant: grantToProto(g) });
        token = page.next;
      } while (token);
    }
    const unsubscribe = watch.subscribe((c) => {
      if (visible(plane.access, caller, c)) emit(toResponse(watch, c));
    });
    try {
      if (!signal.aborted) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    } finally {
      unsubscribe();
    }
  };
}
