// Leases: one per fd handed to a client. Persisted so that, after a broker
// restart, kernel grants still mapped by clients can be found and revoked.
import type { Db } from '../store/state-db';
import type { GrantMode } from '../store/grant-store';

export interface LeaseRecord {
  id: number;
  region: string;
  grantId: number | null;
  pid: number;
  uid: number;
  mode: GrantMode;
  kernelGrantId: string | null;
  createTime: number;
}

interface Row {
  id: number;
  region: string;
  grant_id: number | null;
  pid: number;
  uid: number;
  mode: GrantMode;
  kernel_grant_id: string | null;
  create_time: number;
}

function fromRow(r: Row): LeaseRecord {
  return {
    id: r.id,
    region: r.region,
    grantId: r.grant_id,
    pid: r.pid,
    uid: r.uid,
    mode: r.mode,
    kernelGrantId: r.kernel_grant_id,
    createTime: r.create_time,
  };
}

export class LeaseStore {
  private readonly stmts;

  constructor(db: Db) {
    this.stmts = {
      insert: db.prepare(
        `INSERT INTO leases (region, grant_id, pid, uid, mode, kernel_grant_id, create_time)
         VALUES (@region, @grantId, @pid, @uid, @mode, @kernelGrantId, @createTime)`,
      ),
      get: db.prepare<[number], Row>('SELECT * FROM leases WHERE id = ?'),
      byGrant: db.prepare<[number], Row>('SELECT * FROM leases WHERE grant_id = ?'),
      byRegion: db.prepare<[string], Row>('SELECT * FROM leases WHERE region = ?'),
      all: db.prepare<[], Row>('SELECT * FROM leases ORDER BY id'),
      remove: db.prepare<[number]>('DELETE FROM leases WHERE id = ?'),
    };
  }

  insert(l: Omit<LeaseRecord, 'id'>): LeaseRecord {
    const info = this.stmts.insert.run(l);
    return { ...l, id: Number(info.lastInsertRowid) };
  }

  get(id: number): LeaseRecord | undefined {
    const row = this.stmts.get.get(id);
    return row && fromRow(row);
  }

  forGrant(grantId: number): LeaseRecord[] {
    return this.stmts.byGrant.all(grantId).map(fromRow);
  }

  forRegion(region: string): LeaseRecord[] {
    return this.stmts.byRegion.all(region).map(fromRow);
  }

  all(): LeaseRecord[] {
    return this.stmts.all.all().map(fromRow);
  }

  remove(id: number): void {
    this.stmts.remove.run(id);
  }
}
