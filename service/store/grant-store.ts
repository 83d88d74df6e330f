// Grant rows: access to a region by a uid or a gid, read-only or read-write,
// optionally until an expiry time.
import type { GrantMode } from '../../proto/wire';
import type { Db } from './state-db';
import type { RegionRecord } from './region-store';
import { policySnapshot, type PolicySnapshot } from './policy-snapshot';

export type { GrantMode };

export type GranteeKind = 'uid' | 'gid' | 'namespace' | 'serviceaccount';

export interface GrantRecord {
  id: number;
  region: string;
  granteeKind: GranteeKind;
  /** uid or gid; 0 for the Kubernetes kinds. */
  granteeId: number;
  /** Kubernetes namespace, or "namespace/serviceaccount"; null for uid and gid. */
  granteeName: string | null;
  mode: GrantMode;
  createTime: number;
  expireTime: number | null;
  creatorUid: number;
  /** Read-only holders through this grant may notify the region's doorbell. */
  allowNotify: boolean;
}

interface Row {
  id: number;
  region: string;
  grantee_kind: GranteeKind;
  grantee_id: number;
  grantee_name: string | null;
  mode: GrantMode;
  create_time: number;
  expire_time: number | null;
  creator_uid: number;
  allow_notify: number;
}

function fromRow(r: Row): GrantRecord {
  return {
    id: r.id,
    region: r.region,
    granteeKind: r.grantee_kind,
    granteeId: r.grantee_id,
    granteeName: r.grantee_name,
    mode: r.mode,
    createTime: r.create_time,
    expireTime: r.expire_time,
    creatorUid: r.creator_uid,
    allowNotify: r.allow_notify === 1,
  };
}

export class GrantStore {
  private readonly stmts;
  /** Each region's grants in memory, in step with this table (policy-snapshot.ts): forRegion() reads no SQLite once warm. */
  private readonly snapshot: PolicySnapshot<RegionRecord, GrantRecord>;

  constructor(db: Db) {
    this.snapshot = policySnapshot(db);
    this.stmts = {
      insert: db.prepare(
        `INSERT INTO grants (region, grantee_kind, grantee_id, grantee_name, mode, create_time, expire_time, creator_uid, allow_notify)
         VALUES (@region, @granteeKind, @granteeId, @granteeName, @mode, @createTime, @expireTime, @creatorUid, @allowNotifyInt)`,
      ),
      get: db.prepare<[number], Row>('SELECT * FROM grants WHERE id = ?'),
      regionOf: db.prepare<[number], { region: string }>('SELECT region FROM grants WHERE id = ?'),
      byRegion: db.prepare<[string], Row>('SELECT * FROM grants WHERE region = ? ORDER BY id'),
      pageByRegion: db.prepare<[string, number, number], Row>('SELECT * FROM grants WHERE region = ? AND id > ? ORDER BY id LIMIT ?'),
      pageAll: db.prepare<[number, number], Row>('SELECT * FROM grants WHERE id > ? ORDER BY id LIMIT ?'),
      countByRegion: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM grants WHERE region = ?'),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM grants'),
      remove: db.prepare<[number]>('DELETE FROM grants WHERE id = ?'),
      removeForRegion: db.prepare<[string]>('DELETE FROM grants WHERE region = ?'),
      expired: db.prepare<[number], Row>('SELECT * FROM grants WHERE expire_time IS NOT NULL AND expire_time <= ? ORDER BY expire_time'),
      nextExpiry: db.prepare<[], { t: number | null }>('SELECT MIN(expire_time) AS t FROM grants WHERE expire_time IS NOT NULL'),
    };
  }

  insert(g: Omit<GrantRecord, 'id'>): GrantRecord {
    this.snapshot.grantsChanged(g.region);
    const info = this.stmts.insert.run({ ...g, allowNotifyInt: g.allowNotify ? 1 : 0 });
    return { ...g, id: Number(info.lastInsertRowid) };
  }

  get(id: number): GrantRecord | undefined {
    const row = this.stmts.get.get(id);
    return row && fromRow(row);
  }

  /** The region's grants as committed, in id order (frozen: copy to change), from the snapshot once read. */
  forRegion(region: string): readonly GrantRecord[] {
    return this.snapshot.grantsOf(region, () => this.stmts.byRegion.all(region).map(fromRow));
  }

  page(region: string | undefined, afterId: number, limit: number): GrantRecord[] {
    const rows = region === undefined ? this.stmts.pageAll.all(afterId, limit) : this.stmts.pageByRegion.all(region, afterId, limit);
    return rows.map(fromRow);
  }

  countForRegion(region: string): number {
    return this.stmts.countByRegion.get(region)!.n;
  }

  count(): number {
    return this.stmts.count.get()!.n;
  }

  /** A region going DELETING keeps its row, so its grants do not cascade: they go here. */
  removeForRegion(region: string): void {
    this.snapshot.grantsChanged(region);
    this.stmts.removeForRegion.run(region);
  }

  remove(id: number): boolean {
    const row = this.stmts.regionOf.get(id);
    if (row) this.snapshot.grantsChanged(row.region);
    return this.stmts.remove.run(id).changes > 0;
  }

  expiredAt(now: number): GrantRecord[] {
    return this.stmts.expired.all(now).map(fromRow);
  }

  nextExpiry(): number | null {
    return this.stmts.nextExpiry.get()!.t;
  }
}
