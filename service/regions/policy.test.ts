import { describe, expect, it } from 'vitest';
import type { Caller } from '../identity/caller';
import type { GrantRecord } from '../store/grant-store';
import { Policy } from './policy';
import type { RegionRecord } from '../store/region-store';

const policy = new Policy({ adminUids: [0, 50], adminGids: [990], allowNonAdminCreate: true });
const who = (uid: number, gid = uid, groups: number[] = []): Caller => ({ pid: 1, uid, gid, groups, isAdmin: policy.isAdmin({ uid, gid, groups }) });
const region: RegionRecord = {
  name: 'r',
  sizeBytes: 4096,
  ownerUid: 1000,
  ownerGid: 1000,
  backend: 'memfd',
  hugepages: false,
  numaNode: -1,
  createTime: 0,
  state: 'ACTIVE',
  backendRef: '',
};
let nextId = 1;
const grant = (kind: 'uid' | 'gid', id: number, mode: 'ro' | 'rw', expireTime: number | null = null): GrantRecord => ({
  id: nextId++,
  region: 'r',
  granteeKind: kind,
  granteeId: id,
  granteeName: null,
  mode,
  createTime: 0,
  expireTime,
  creatorUid: 1000,
});

describe('Policy', () => {
  it('admins: root, configured uids, members of admin groups (primary or supplementary)', () => {
    expect(who(0).isAdmin).toBe(true);
    expect(who(50).isAdmin).toBe(true);
    expect(who(7, 990).isAdmin).toBe(true);
    expect(who(7, 7, [990]).isAdmin).toBe(true);
    expect(who(7, 7, [991]).isAdmin).toBe(false);
  });

  const rows: Array<[string, Caller, GrantRecord[], 'ro' | 'rw', unknown]> = [
    ['owner maps rw without a grant', who(1000), [], 'rw', { allowed: true, grant: null }],
    ['admin maps rw without a grant', who(7, 990), [], 'rw', { allowed: true, grant: null }],
    ['stranger without a grant', who(1001), [], 'ro', { allowed: false, reason: 'NO_GRANT' }],
    ['uid grant ro, asks ro', who(1001), [grant('uid', 1001, 'ro')], 'ro', { allowed: true }],
    ['uid grant ro, asks rw', who(1001), [grant('uid', 1001, 'ro')], 'rw', { allowed: false, reason: 'GRANT_READ_ONLY' }],
    ['grant for another uid', who(1001), [grant('uid', 1002, 'rw')], 'ro', { allowed: false, reason: 'NO_GRANT' }],
    ['gid grant via primary group', who(1001, 500), [grant('gid', 500, 'rw')], 'rw', { allowed: true }],
    ['gid grant via supplementary group', who(1001, 1001, [500]), [grant('gid', 500, 'rw')], 'rw', { allowed: true }],
    ['expired grant', who(1001), [grant('uid', 1001, 'rw', 100)], 'ro', { allowed: false, reason: 'NO_GRANT' }],
    ['unexpired grant', who(1001), [grant('uid', 1001, 'rw', 10_000)], 'ro', { allowed: true }],
    ['ro uid grant and rw gid grant: rw wins', who(1001, 500), [grant('uid', 1001, 'ro'), grant('gid', 500, 'rw')], 'rw', { allowed: true }],
  ];
  const podGrant = (kind: 'namespace' | 'serviceaccount', name: string): GrantRecord => ({ ...grant('uid', 0, 'ro'), granteeKind: kind, granteeId: 0, granteeName: name });
  const inPod = (ns: string, sa: string): Caller => ({ ...who(1001), pod: { namespace: ns, name: 'p-1', serviceAccount: sa } });
  rows.push(
    ['namespace grant, peer in that namespace', inPod('team-a', 'reader'), [podGrant('namespace', 'team-a')], 'ro', { allowed: true }],
    ['namespace grant, peer in another namespace', inPod('team-b', 'reader'), [podGrant('namespace', 'team-a')], 'ro', { allowed: false, reason: 'NO_GRANT' }],
    ['namespace grant, peer whose pod is unknown', who(1001), [podGrant('namespace', 'team-a')], 'ro', { allowed: false, reason: 'NO_GRANT' }],
    ['service-account grant, matching', inPod('team-a', 'reader'), [podGrant('serviceaccount', 'team-a/reader')], 'ro', { allowed: true }],
    ['service-account grant, same name in another namespace', inPod('team-b', 'reader'), [podGrant('serviceaccount', 'team-a/reader')], 'ro', { allowed: false, reason: 'NO_GRANT' }],
    ['service-account grant, other account', inPod('team-a', 'writer'), [podGrant('serviceaccount', 'team-a/reader')], 'ro', { allowed: false, reason: 'NO_GRANT' }],
  );
  for (const [name, caller, grants, mode, want] of rows) {
    it(`acquire: ${name}`, () => expect(policy.decideAcquire(caller, region, grants, mode, 1000)).toMatchObject(want as object));
  }

  it('only the owner or an admin manages a region', () => {
    expect(policy.mayManage(who(1000), region)).toBe(true);
    expect(policy.mayManage(who(0), region)).toBe(true);
    expect(policy.mayManage(who(1001, 1001, [1000]), region)).toBe(false);
  });

  it('non-admin creation can be switched off', () => {
    const strict = new Policy({ adminUids: [0], adminGids: [], allowNonAdminCreate: false });
    expect(strict.mayCreate(who(1001))).toBe(false);
    expect(strict.mayCreate({ ...who(0), isAdmin: true })).toBe(true);
  });
});
