// The policy snapshot (issue 19): region records and each region's grants,
// kept in memory in step with the database, so a data-plane acquire decides
// without a SQLite read. One home for the rule, shared by RegionStore and
// GrantStore through the database they work on:
//
// - an entry is filled only by a read made outside any transaction, i.e. from
//   committed rows (better-sqlite3 is one synchronous connection, and a group
//   commit runs from BEGIN to COMMIT without yielding: service/store/
//   commit-batch.ts), so a change a transaction later rolls back never lands
//   here;
// - every write to a region or its grants drops the region's entries first,
//   inside or outside a transaction (RegionStore and GrantStore are the only
//   writers of these tables); removing a region drops its grants' entry too
//   (the rows cascade). A revoke or delete therefore takes effect for the very
//   next acquire, whether or not its transaction has committed yet, and an
//   aborted one costs only a re-read;
// - misses are not cached (a peer asking for names that do not exist cannot
//   grow it); it holds at most one entry per region and per region's grants.
// Entries are frozen: a caller that wants to change a record copies it.
import type { Db } from './state-db';

export class PolicySnapshot<R, G> {
  private readonly regions = new Map<string, Readonly<R>>();
  private readonly grants = new Map<string, readonly Readonly<G>[]>();

  constructor(private readonly db: Db) {}

  region(name: string, read: () => R | undefined): Readonly<R> | undefined {
    const hit = this.regions.get(name);
    if (hit !== undefined) return hit;
    const r = read();
    if (r === undefined) return undefined;
    const frozen = Object.freeze(r);
    if (!this.db.inTransaction) this.regions.set(name, frozen);
    return frozen;
  }

  grantsOf(region: string, read: () => G[]): readonly Readonly<G>[] {
    const hit = this.grants.get(region);
    if (hit !== undefined) return hit;
    const list = Object.freeze(read().map((g) => Object.freeze(g)));
    // Only for a region on record: grants of a missing one are always [], and caching them would let any name in.
    if (!this.db.inTransaction && this.regions.has(region)) this.grants.set(region, list);
    return list;
  }

  /** A region row changed or went: drop it and its grants. */
  regionChanged(name: string): void {
    this.regions.delete(name);
    this.grants.delete(name);
  }

  /** A grant of the region was added or removed. */
  grantsChanged(region: string): void {
    this.grants.delete(region);
  }

  /** Everything (a write whose region is not known, e.g. a grant removed by id). */
  clear(): void {
    this.regions.clear();
    this.grants.clear();
  }
}

const snapshots = new WeakMap<Db, PolicySnapshot<unknown, unknown>>();

/** The one snapshot of this database (both stores of a broker share it). */
export function policySnapshot<R, G>(db: Db): PolicySnapshot<R, G> {
  let s = snapshots.get(db);
  if (!s) {
    s = new PolicySnapshot(db);
    snapshots.set(db, s);
  }
  return s as PolicySnapshot<R, G>;
}
