// The policy snapshot (policy-snapshot.ts) against a real state database:
// every change to a region or its grants is seen by the very next read,
// committed or not, and a change rolled back never stays in memory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrantStore } from './grant-store';
import { RegionStore, type RegionRecord } from './region-store';
import { openStateDb, type Db } from './state-db';

let dir: string;
let db: Db;
let regions: RegionStore;
let grants: GrantStore;

const region = (name: string, ownerUid = 1000): RegionRecord => ({
  name, sizeBytes: 4096, ownerUid, ownerGid: ownerUid, backend: 'memfd', hugepages: false, numaNode: -1, createTime: 1, state: 'ACTIVE', backendRef: '{}',
});
const grant = (r: string, uid: number, mode: 'ro' | 'rw' = 'ro') => ({
  region: r, granteeKind: 'uid' as const, granteeId: uid, granteeName: null, mode, createTime: 1, expireTime: null, creatorUid: 0, allowNotify: false,
});

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-snapshot-'));
  db = openStateDb(dir);
  regions = new RegionStore(db);
  grants = new GrantStore(db);
});
afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('policy snapshot', () => {
  it('a revoked grant, a deleted region, a DELETING mark and a new owner are seen by the next read', () => {
    regions.insert(region('a'));
    const g = grants.insert(grant('a', 1001));
    grants.insert(grant('a', 1002, 'rw'));
    expect(regions.get('a')?.ownerUid).toBe(1000); // warm
    expect(grants.forRegion('a').map((x) => x.granteeId)).toEqual([1001, 1002]);
    grants.remove(g.id);
    expect(grants.forRegion('a').map((x) => x.granteeId)).toEqual([1002]);
    regions.markDeleting('a', 5);
    expect(regions.get('a')?.state).toBe('DELETING');
    grants.removeForRegion('a');
    expect(grants.forRegion('a')).toEqual([]);
    regions.remove('a');
    expect(regions.get('a')).toBeUndefined();
    // The same name again, someone else's: nothing of the old one is left.
    regions.insert(region('a', 2000));
    expect(regions.get('a')?.ownerUid).toBe(2000);
    expect(grants.forRegion('a')).toEqual([]);
  });

  it('removing a region drops its grants (they cascade in the database)', () => {
    regions.insert(region('b'));
    grants.insert(grant('b', 1001));
    expect(grants.forRegion('b')).toHaveLength(1);
    regions.remove('b');
    regions.insert(region('b'));
    expect(grants.forRegion('b')).toEqual([]);
  });

  it('what a transaction wrote and then rolled back is not remembered', () => {
    regions.insert(region('c'));
    expect(grants.forRegion('c')).toEqual([]); // warm, no grants
    const tx = db.transaction(() => {
      grants.insert(grant('c', 1001, 'rw'));
      regions.setState('c', 'LOST');
      // Read inside the transaction: sees its own change, must not keep it.
      expect(grants.forRegion('c')).toHaveLength(1);
      expect(regions.get('c')?.state).toBe('LOST');
      throw new Error('roll back');
    });
    expect(() => tx()).toThrow('roll back');
    expect(grants.forRegion('c')).toEqual([]);
    expect(regions.get('c')?.state).toBe('ACTIVE');
    // A removal rolled back: the grant is still there.
    const g = grants.insert(grant('c', 1001));
    expect(grants.forRegion('c')).toHaveLength(1);
    expect(() =>
      db.transaction(() => {
        grants.remove(g.id);
        expect(grants.forRegion('c')).toEqual([]);
        throw new Error('roll back');
      })(),
    ).toThrow('roll back');
    expect(grants.forRegion('c').map((x) => x.id)).toEqual([g.id]);
  });

  it('records handed out are frozen, and missing names are not remembered', () => {
    regions.insert(region('d'));
    const r = regions.get('d')!;
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(grants.forRegion('d'))).toBe(true);
    for (let i = 0; i < 100; i++) expect(regions.get(`missing-${i}`)).toBeUndefined();
    // A region created after a miss is found.
    regions.insert(region('missing-1'));
    expect(regions.get('missing-1')?.name).toBe('missing-1');
  });
});
