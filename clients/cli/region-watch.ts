// `shmbroker region list --watch`: the current regions and grants, then
// every change as it happens (BrokerService.WatchRegions), one line per
// event, until interrupted. `--resource-version V` resumes after an event.
// `-o json` prints each event as a WatchRegionsResponse in the proto3 JSON
// mapping (one per line), `-o yaml` the same data as one document per event.
import { formatBytes, type CliContext } from './context';
import { followStream, printStreamed } from './follow-stream';

interface WatchEventJson {
  type: string;
  resourceVersion: string;
  region?: { name: string; sizeBytes: string | number; ownerUid: number; state: string };
  grant?: { name: string; mode: string; uid?: number; gid?: number; kubernetesNamespace?: string; kubernetesServiceAccount?: string };
}

function line(e: WatchEventJson): string {
  const type = e.type.replace('WATCH_EVENT_TYPE_', '').padEnd(8);
  if (e.region) {
    const r = e.region;
    return `${type} ${r.name}  ${formatBytes(Number(r.sizeBytes))}  owner ${r.ownerUid}  ${r.state.replace('REGION_STATE_', '')}  rv=${e.resourceVersion}`;
  }
  const g = e.grant!;
  const who = g.uid !== undefined ? `uid ${g.uid}` : g.gid !== undefined ? `gid ${g.gid}` : (g.kubernetesNamespace ?? g.kubernetesServiceAccount ?? '?');
  return `${type} ${g.name}  ${who}  ${g.mode.replace('ACCESS_MODE_', '').toLowerCase()}  rv=${e.resourceVersion}`;
}

export async function watchRegions(ctx: CliContext, resourceVersion: string | undefined): Promise<void> {
  await followStream<WatchEventJson>(ctx, 'BrokerService', 'WatchRegions', { resourceVersion: resourceVersion ?? '' }, (e) => {
    printStreamed(ctx, 'shmbroker.v1.WatchRegionsResponse', e, () => line(e));
  });
}
