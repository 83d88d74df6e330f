// Region rows. Callers wrap writes in a transaction together with the quota
// charge and the audit event they belong with.
import type { Db } from './state-db';

export type RegionState = 'ACTIVE' | 'LOST';

export interface RegionRecord {
  name: string;
  sizeBytes: number;
  ownerUid: number;
  ownerGid: number;
  backend: string;
  hugepages: boolean;
  numaNode: number;
  createTime: number;
  state: RegionState;
  /** Backend-specific identity: the kernel region id, or the memfd's recorded identity (JSON). */
  backendRef: string;
}

interface Row {
  name: string;
  size_bytes: number;
  owner_uid: number;
  owner_gid: number;
  backend: string;
  hugepages: number;
  numa_node: number;
  create_time: number;
  state: RegionState;
  backend_ref: string;
}

function fromRow(r: Row): RegionRecord {
  return {
    name: r.name,
    sizeBytes: r.size_bytes,
    ownerUid: r.owner_uid,
    ownerGid: r.owner_gid,
    backend: r.backend,
    hugepages: r.hugepages !== 0,
    numaNode: r.numa_node,
    createTime: r.create_time,
    state: r.state,
    backendRef: r.backend_ref,
  };
}

export class RegionStore {
  private readonly stmts;

  constructor(db: Db) {
    this.stmts = {
      insert: db.prepare(
        `INSERT INTO regions (name, size_bytes, owner_uid, owner_gid, backend, hugepages, numa_node, create_time, state, backend_ref)
         VALUES (@name, @sizeBytes, @ownerUid, @ownerGid, @backend, @hugepages, @numaNode, @createTime, @state, @backendRef)`,
      ),
      get: db.prepare<[string], Row>('SELECT * FROM regions WHERE name = ?'),
      all: db.prepare<[], Row>('SELECT * FROM regions ORDER BY name'),
      pageAfter: db.prepare<[string, number], Row>('SELECT * FROM regions WHERE name > ? ORDER BY name LIMIT ?'),
      remove: db.prepare<[string]>('DELETE FROM regions WHERE name = ?'),
      setState: db.prepare<[RegionState, string]>('UPDATE regions SET state = ? WHERE name = ?'),
      totals: db.prepare<[], { n: number; bytes: number | null }>('SELECT COUNT(*) AS n, SUM(size_bytes) AS bytes FROM regions'),
    };
  }

  insert(r: RegionRecord): void {
    this.stmts.insert.run({ ...r, hugepages: r.hugepages ? 1 : 0 });
  }

  get(name: string): RegionRecord | undefined {
    const row = this.stmts.get.get(name);
    return row && fromRow(row);
  }

  all(): RegionRecord[] {
    return this.stmts.all.all().map(fromRow);
  }

  /** Regions with name > after, in name order. */
  page(after: string, limit: number): RegionRecord[] {
    return this.stmts.pageAfter.all(after, limit).map(fromRow);
  }

  remove(name: string): boolean {
    return this.stmts.remove.run(name).changes > 0;
  }

  setState(name: string, state: RegionState): void {
    this.stmts.setState.run(state, name);
  }

  totals(): { count: number; bytes: number } {
    const t = this.stmts.totals.get()!;
    return { count: t.n, bytes: t.bytes ?? 0 };
  }
}
