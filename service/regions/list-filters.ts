// The fields ListRegions and ListGrants filter on (AIP-160, parsed by
// service/store/list-filter.ts), by their proto field names, read from the
// broker's records the way broker-service.ts turns them into messages.
import { grantName, regionName } from './names';
import type { FilterSchema } from '../store/list-filter';
import type { GrantRecord } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';

export const REGION_FILTER: FilterSchema<RegionRecord> = {
  name: { kind: 'string', get: (r) => regionName(r.name) },
  size_bytes: { kind: 'number', get: (r) => r.sizeBytes },
  owner_uid: { kind: 'number', get: (r) => r.ownerUid },
  owner_gid: { kind: 'number', get: (r) => r.ownerGid },
  backend: { kind: 'string', get: (r) => r.backend },
  hugepages: { kind: 'bool', get: (r) => r.hugepages },
  numa_node: { kind: 'number', get: (r) => (r.numaNode < 0 ? undefined : r.numaNode) },
  create_time: { kind: 'time', get: (r) => r.createTime },
  delete_time: { kind: 'time', get: (r) => r.deleteTime ?? undefined },
  state: { kind: 'enum', prefix: 'REGION_STATE_', values: ['ACTIVE', 'LOST', 'DELETING'], get: (r) => r.state },
};

const grantee = (kind: GrantRecord['granteeKind']) => (g: GrantRecord) => (g.granteeKind === kind ? (kind === 'uid' || kind === 'gid' ? g.granteeId : g.granteeName) : undefined);

export const GRANT_FILTER: FilterSchema<GrantRecord> = {
  name: { kind: 'string', get: (g) => grantName(g.region, g.id) },
  uid: { kind: 'number', get: grantee('uid') },
  gid: { kind: 'number', get: grantee('gid') },
  kubernetes_namespace: { kind: 'string', get: grantee('namespace') },
  kubernetes_service_account: { kind: 'string', get: grantee('serviceaccount') },
  mode: { kind: 'enum', prefix: 'ACCESS_MODE_', values: ['READ_ONLY', 'READ_WRITE'], get: (g) => (g.mode === 'ro' ? 'READ_ONLY' : 'READ_WRITE') },
  create_time: { kind: 'time', get: (g) => g.createTime },
  expire_time: { kind: 'time', get: (g) => g.expireTime },
  creator_uid: { kind: 'number', get: (g) => g.creatorUid },
  allow_notify: { kind: 'bool', get: (g) => g.allowNotify },
};
