// The leases table: what a restarted broker needs to find the leases that
// outlived it (kmod kernel grants still mapped by clients, to revoke them;
// memfd fds a client will offer back). Written behind the lease service
// (lease-service.ts), in batches; it is never read on the hot path.
import { noteCommit, type Db } from '../store/state-db';
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
  /** Applies a batch of inserts (record) and deletes (null) in one transaction. */
  readonly apply: (changes: Map<number, LeaseRecord | null>, reserveThrough: number) => void;

  constructor(db: Db) {
    this.stmts = {
      // A lease whose region was deleted before the batch was written is
      // not written at all (the row would only be cascaded away).
      insert: db.prepare(
        `INSERT OR REPLACE INTO leases (id, region, grant_id, pid, uid, mode, kernel_grant_id, create_time)
         SELECT @id, @region, @grantId, @pid, @uid, @mode, @kernelGrantId, @createTime
         WHERE EXISTS (SELECT 1 FROM regions WHERE name = @region)`,
      ),
      all: db.prepare<[], Row>('SELECT * FROM leases ORDER BY id'),
      remove: db.prepare<[number]>('DELETE FROM leases WHERE id = ?'),
      reserved: db.prepare<[], { seq: number }>(`SELECT seq FROM sqlite_sequence WHERE name = 'leases'`),
      reserveNew: db.prepare<[number]>(`INSERT INTO sqlite_sequence (name, seq) SELECT 'leases', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'leases')`),
      reserve: db.prepare<[number]>(`UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'leases'`),
    };
    const apply = db.transaction((changes: Map<number, LeaseRecord | null>, reserveThrough: number) => {
      for (const [id, rec] of changes) {
        if (rec) this.stmts.insert.run(rec);
        else this.stmts.remove.run(id);
      }
      if (reserveThrough > 0) this.reserveThrough(reserveThrough);
    });
    this.apply = (changes, reserveThrough) => {
      const outer = !db.inTransaction;
      apply(changes, reserveThrough);
      if (outer) noteCommit(db);
    };
  }

  all(): LeaseRecord[] {
    return this.stmts.all.all().map(fromRow);
  }

  /** Highest lease id ever handed out or reserved (AUTOINCREMENT's own counter). */
  reservedThrough(): number {
    return this.stmts.reserved.get()?.seq ?? 0;
  }

  /** Records that ids up to `id` may have been handed out, so a restart never reuses them. */
  reserveThrough(id: number): void {
    this.stmts.reserveNew.run(id);
    this.stmts.reserve.run(id);
  }
}
