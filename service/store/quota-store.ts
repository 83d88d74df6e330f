// Quotas per uid and per gid: bytes, region count, and grants per region.
//
// Every region's charge is a row in quota_charges (one row per subject it
// counts against: the owner's uid and each of the owner's gids, primary and
// supplementary), and usage is the sum of those rows. The sum is kept in
// quota_usage by triggers on quota_charges, in the very statement that adds
// or removes a charge (so it commits and rolls back with it and cannot drift
// from the rows): reading it is one lookup, where summing the rows cost a
// create O(regions the owner holds) — 365 µs per sum at 10,000 regions, four
// sums per create for a uid with an explicit quota (issue 19, scale).
// Charges are added and removed, never changed (a trigger refuses an UPDATE).
// chargeRegion checks and records the charge with plain
// statements, so when the lead calls it inside the same db.transaction as
// the region insert (IMMEDIATE, i.e. holding SQLite's write lock from the
// start), concurrent creates, even from other processes, serialize and
// can never overshoot. refundRegion deletes the rows.
//
// Limits: a subject with a row in quota_limits uses that row (a NULL column
// means unlimited); a subject without one uses the configured default for
// its kind. `undefined` in QuotaLimits means unlimited.
import type { Database } from 'better-sqlite3';
import { InvalidArgumentError, ResourceExhaustedError } from '../errors';
import { transactionRunners } from './state-db';

export interface Subject {
  kind: 'uid' | 'gid';
  id: number;
}

export interface QuotaLimits {
  bytes?: number;
  regions?: number;
  grantsPerRegion?: number;
}

export interface QuotaUsage {
  bytes: number;
  regions: number;
}

export interface QuotaInfo {
  subject: Subject;
  /** Effective limits (explicit, or the default for the subject's kind). */
  limits: QuotaLimits;
  usage: QuotaUsage;
  /** True when the limits were set for this subject (UpdateQuota) rather than taken from the defaults. */
  explicit: boolean;
}

/** Who a region is charged to: its owner's uid and gids (primary and supplementary). */
export interface QuotaOwner {
  uid: number;
  gids: number[];
  /** Admins are exempt from the default quotas (not from explicit ones). */
  admin?: boolean;
}

export interface QuotaStoreOptions {
  /** Broker-wide cap on grants per region (config maxGrantsPerRegion), applied on top of any quota. */
  maxGrantsPerRegion?: number;
}

/** Creates the quota tables if missing (and the usage sums, filled from the charges the first time). Idempotent. */
export function ensureQuotaSchema(db: Database): void {
  const hadUsage = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quota_usage'").get() !== undefined;
  db.transaction(() => {
    createQuotaTables(db);
    // A database from before the sums: fill them from the charges, in the transaction that creates them.
    if (!hadUsage) db.exec('INSERT INTO quota_usage (kind, id, bytes, regions) SELECT kind, id, SUM(bytes), COUNT(*) FROM quota_charges GROUP BY kind, id');
  })();
}

function createQuotaTables(db: Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS quota_limits (
      kind TEXT NOT NULL CHECK (kind IN ('uid', 'gid')),
      id INTEGER NOT NULL,
      bytes INTEGER,
      regions INTEGER,
      grants_per_region INTEGER,
      update_time TEXT NOT NULL,
      PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS quota_charges (
      region TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('uid', 'gid')),
      id INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      PRIMARY KEY (region, kind, id)
    ) WITHOUT ROWID;
    DROP INDEX IF EXISTS quota_charges_subject;
    DROP INDEX IF EXISTS quota_charges_usage; -- served the sums quota_usage now keeps
    CREATE TABLE IF NOT EXISTS quota_usage (
      kind TEXT NOT NULL CHECK (kind IN ('uid', 'gid')),
      id INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      regions INTEGER NOT NULL,
      PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    CREATE TRIGGER IF NOT EXISTS quota_usage_charge AFTER INSERT ON quota_charges BEGIN
      INSERT INTO quota_usage (kind, id, bytes, regions) VALUES (NEW.kind, NEW.id, NEW.bytes, 1)
        ON CONFLICT (kind, id) DO UPDATE SET bytes = bytes + excluded.bytes, regions = regions + 1;
    END;
    CREATE TRIGGER IF NOT EXISTS quota_usage_refund AFTER DELETE ON quota_charges BEGIN
      UPDATE quota_usage SET bytes = bytes - OLD.bytes, regions = regions - 1 WHERE kind = OLD.kind AND id = OLD.id;
    END;
    CREATE TRIGGER IF NOT EXISTS quota_charges_fixed BEFORE UPDATE ON quota_charges BEGIN
      SELECT RAISE(ABORT, 'quota charges are added and removed, never changed');
    END;
  `);
}

export function subjectName(s: Subject): string {
  return `quotas/${s.kind}:${s.id}`;
}

/** Parses "quotas/uid:1001" (or "uid:1001"). */
export function parseSubjectName(name: string): Subject {
  const m = /^(?:quotas\/)?(uid|gid):(\d{1,10})$/.exec(name);
  if (!m || Number(m[2]) > 0xffffffff) {
    throw new InvalidArgumentError('INVALID_QUOTA_NAME', `invalid quota name ${JSON.stringify(name)}: expected quotas/uid:N or quotas/gid:N`);
  }
  return { kind: m[1] as 'uid' | 'gid', id: Number(m[2]) };
}

const NO_USAGE: QuotaUsage = Object.freeze({ bytes: 0, regions: 0 });

interface LimitRow {
  bytes: number | null;
  regions: number | null;
  grants_per_region: number | null;
}

export class QuotaStore {
  private defaults: { uid?: QuotaLimits; gid?: QuotaLimits };
  private maxGrantsPerRegion: number | undefined;
  private readonly stmt;

  constructor(
    private readonly db: Database,
    defaults: { uid?: QuotaLimits; gid?: QuotaLimits },
    options: QuotaStoreOptions = {},
  ) {
    ensureQuotaSchema(db);
    this.defaults = { uid: clean(defaults.uid), gid: clean(defaults.gid) };
    this.maxGrantsPerRegion = options.maxGrantsPerRegion;
    this.stmt = {
      limits: db.prepare<[string, number], LimitRow>('SELECT bytes, regions, grants_per_region FROM quota_limits WHERE kind = ? AND id = ?'),
      usage: db.prepare<[string, number], { bytes: number; regions: number }>('SELECT bytes, regions FROM quota_usage WHERE kind = ? AND id = ?'),
      charged: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM quota_charges WHERE region = ?'),
      charge: db.prepare<[string, string, number, number]>('INSERT INTO quota_charges (region, kind, id, bytes) VALUES (?, ?, ?, ?)'),
      refund: db.prepare<[string]>('DELETE FROM quota_charges WHERE region = ?'),
      set: db.prepare<[string, number, number | null, number | null, number | null, string]>(
        `INSERT INTO quota_limits (kind, id, bytes, regions, grants_per_region, update_time) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (kind, id) DO UPDATE SET bytes = excluded.bytes, regions = excluded.regions,
           grants_per_region = excluded.grants_per_region, update_time = excluded.update_time`,
      ),
      clear: db.prepare<[string, number]>('DELETE FROM quota_limits WHERE kind = ? AND id = ?'),
      subjects: db.prepare<[], { kind: 'uid' | 'gid'; id: number }>(
        `SELECT kind, id FROM quota_limits UNION SELECT kind, id FROM quota_usage WHERE regions > 0 ORDER BY kind DESC, id`,
      ),
    };
  }
  /** New broker-wide defaults (a config reload); quotas set per uid/gid are untouched. */
  setDefaults(defaults: { uid?: QuotaLimits; gid?: QuotaLimits }, options: QuotaStoreOptions = {}): void {
    this.defaults = { uid: clean(defaults.uid), gid: clean(defaults.gid) };
    this.maxGrantsPerRegion = options.maxGrantsPerRegion;
  }


  /**
   * Checks every subject the owner counts against (its uid, each of its gids)
   * and records the charge. Throws ResourceExhaustedError ('QUOTA_BYTES' is
   * checked before 'QUOTA_REGIONS') without writing anything. Call inside the
   * transaction that inserts the region.
   */
  chargeRegion(region: string, owner: QuotaOwner, bytes: number): void {
    // A savepoint inside the caller's transaction; on its own, check and
    // charge still happen in one transaction (SQLite refuses a write on a
    // stale snapshot, so even then nothing can overshoot).
    transactionRunners(this.db).nested(() => this.chargeInTx(region, owner, bytes));
  }

  /**
   * The same checks as chargeRegion, charging nothing: lets the broker
   * refuse before it allocates memory for a region that could never be
   * charged. Advisory only (usage may change before the real charge), so
   * chargeRegion in the creating transaction stays the authority.
   */
  precheckRegion(owner: QuotaOwner, bytes: number): void {
    this.check(ownerSubjects(owner), bytes, owner.admin === true);
  }

  private chargeInTx(region: string, owner: QuotaOwner, bytes: number): void {
    if (this.stmt.charged.get(region)!.n > 0) {
      throw new InvalidArgumentError('QUOTA_ALREADY_CHARGED', `region ${region} is already charged against a quota`);
    }
    const subjects = ownerSubjects(owner);
    this.check(subjects, bytes, owner.admin === true);
    for (const s of subjects) this.stmt.charge.run(region, s.kind, s.id, bytes);
  }

  private check(subjects: Subject[], bytes: number, admin: boolean): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new InvalidArgumentError('INVALID_SIZE', `invalid region size ${bytes}`);
    for (const s of subjects) {
      const { limits, explicit } = this.effective(s);
      // Default quotas keep ordinary users in bounds; an admin is bound only
      // by a quota set for it explicitly (its usage is still charged).
      if (admin && !explicit) continue;
      if (limits.bytes === undefined && limits.regions === undefined) continue;
      const usage = this.stmt.usage.get(s.kind, s.id) ?? NO_USAGE;
      if (limits.bytes !== undefined && usage.bytes + bytes > limits.bytes) {
        throw new ResourceExhaustedError(
          'QUOTA_BYTES',
          `quota exceeded for ${s.kind} ${s.id}: bytes limit ${limits.bytes}, in use ${usage.bytes}, requested ${bytes}`,
          { quotaSubject: `${s.kind}:${s.id}`, metadata: { limit: String(limits.bytes), usage: String(usage.bytes), requested: String(bytes) } },
        );
      }
      if (limits.regions !== undefined && usage.regions + 1 > limits.regions) {
        throw new ResourceExhaustedError(
          'QUOTA_REGIONS',
          `quota exceeded for ${s.kind} ${s.id}: regions limit ${limits.regions}, in use ${usage.regions}`,
          { quotaSubject: `${s.kind}:${s.id}`, metadata: { limit: String(limits.regions), usage: String(usage.regions) } },
        );
      }
    }
  }

  /** Removes every charge of the region (no-op if none). Call inside the transaction that deletes it. */
  refundRegion(region: string): void {
    this.stmt.refund.run(region);
  }

  /**
   * Throws ResourceExhaustedError 'QUOTA_GRANTS' if the region (which has
   * currentGrantCount grants now) may not get another one. The limit is the
   * smaller of the owner's grantsPerRegion quota and maxGrantsPerRegion.
   */
  checkGrant(region: string, currentGrantCount: number, owner: { uid: number }): void {
    const own = this.effective({ kind: 'uid', id: owner.uid }).limits.grantsPerRegion;
    const caps = [own, this.maxGrantsPerRegion].filter((v): v is number => v !== undefined);
    if (caps.length === 0) return;
    const limit = Math.min(...caps);
    if (currentGrantCount + 1 > limit) {
      const source = own !== undefined && own === limit ? `the quota of uid ${owner.uid}` : 'the broker configuration';
      throw new ResourceExhaustedError(
        'QUOTA_GRANTS',
        `region ${region} has ${currentGrantCount} grants; ${source} allows at most ${limit} per region`,
        { quotaSubject: `uid:${owner.uid}`, metadata: { limit: String(limit), usage: String(currentGrantCount) } },
      );
    }
  }

  /** Sets the subject's limits; undefined fields are unlimited (not "default"; use clear() for that). */
  set(subject: Subject, limits: QuotaLimits): void {
    checkSubject(subject);
    for (const [k, v] of Object.entries(limits)) {
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
        throw new InvalidArgumentError('INVALID_QUOTA', `quota ${k} must be a whole number >= 0, got ${v}`);
      }
    }
    this.stmt.set.run(
      subject.kind,
      subject.id,
      limits.bytes ?? null,
      limits.regions ?? null,
      limits.grantsPerRegion ?? null,
      new Date().toISOString(),
    );
  }

  /** Drops the subject's own limits so the defaults apply again. Returns whether it had any. */
  clear(subject: Subject): boolean {
    checkSubject(subject);
    return this.stmt.clear.run(subject.kind, subject.id).changes > 0;
  }

  get(subject: Subject): QuotaInfo {
    checkSubject(subject);
    const { limits, explicit } = this.effective(subject);
    const usage = this.stmt.usage.get(subject.kind, subject.id) ?? NO_USAGE;
    return { subject: { kind: subject.kind, id: subject.id }, limits, usage: { bytes: usage.bytes, regions: usage.regions }, explicit };
  }

  /** Every subject with explicit limits or any usage: uids first, then gids, by id. */
  list(): QuotaInfo[] {
    return this.stmt.subjects.all().map((s) => this.get(s));
  }

  /** The limits in force for a subject. */
  effective(subject: Subject): { limits: QuotaLimits; explicit: boolean } {
    const row = this.stmt.limits.get(subject.kind, subject.id);
    if (!row) return { limits: { ...(this.defaults[subject.kind] ?? {}) }, explicit: false };
    const limits: QuotaLimits = {};
    if (row.bytes !== null) limits.bytes = row.bytes;
    if (row.regions !== null) limits.regions = row.regions;
    if (row.grants_per_region !== null) limits.grantsPerRegion = row.grants_per_region;
    return { limits, explicit: true };
  }

  /** The database this store writes to (for callers that wrap set() in a transaction with an audit event). */
  get database(): Database {
    return this.db;
  }
}

function ownerSubjects(owner: { uid: number; gids: number[] }): Subject[] {
  const out: Subject[] = [{ kind: 'uid', id: owner.uid }];
  for (const gid of new Set(owner.gids)) out.push({ kind: 'gid', id: gid });
  for (const s of out) checkSubject(s);
  return out;
}

function checkSubject(s: Subject): void {
  if ((s.kind !== 'uid' && s.kind !== 'gid') || !Number.isInteger(s.id) || s.id < 0 || s.id > 0xffffffff) {
    throw new InvalidArgumentError('INVALID_QUOTA_SUBJECT', `invalid quota subject ${JSON.stringify(s)}`);
  }
}

function clean(l: QuotaLimits | undefined): QuotaLimits | undefined {
  if (!l) return undefined;
  const out: QuotaLimits = {};
  if (l.bytes !== undefined) out.bytes = l.bytes;
  if (l.regions !== undefined) out.regions = l.regions;
  if (l.grantsPerRegion !== undefined) out.grantsPerRegion = l.grantsPerRegion;
  return out;
}
