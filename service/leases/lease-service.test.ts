// The lease service's write-behind when the state database refuses writes
// (a full disk, a read-only remount): lease records wait in memory and are
// retried every window, and the failure is logged once per interval with how
// many attempts failed, not once per window (it was one error line every
// 10 ms for as long as the disk stayed full).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Auditor } from '../audit/audited-operation';
import { AuditTrail } from '../audit/audit-trail';
import { MemfdBackend } from '../backends/memfd-backend';
import { openStateDb, type Db } from '../store/state-db';
import { LeaseService } from './lease-service';
import { LeaseStore } from './lease-store';

describe('lease records written behind', () => {
  let dir: string;
  let db: Db;
  let audit: AuditTrail;
  let lines: Array<{ level: number; msg: string; failures?: number }>;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lease-service-'));
    db = openStateDb(dir);
    db.prepare("INSERT INTO regions (name, size_bytes, owner_uid, owner_gid, backend, hugepages, numa_node, create_time, state, backend_ref) VALUES ('r', 4096, 0, 0, 'memfd', 0, -1, 1, 'ACTIVE', '{}')").run();
    audit = new AuditTrail(db);
    lines = [];
  });
  afterEach(() => {
    vi.useRealTimers();
    audit.close();
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a failing store is retried every window but logged once per interval, and the records land once it writes again', () => {
    vi.useFakeTimers();
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const leases = new LeaseService({ store: new LeaseStore(db), backend: new MemfdBackend(), auditor: new Auditor({ db, audit, writeBehind: true }), log, windowMs: 10, failureLogIntervalMs: 1000 });
    leases.start({ region: 'r', grantId: null, pid: 4242, uid: 1001, mode: 'ro', kernelGrantId: null, createTime: 1 });
    db.pragma('query_only = ON'); // the database refuses every write from here, like a full disk
    leases.start({ region: 'r', grantId: null, pid: 4243, uid: 1001, mode: 'ro', kernelGrantId: null, createTime: 2 });
    vi.advanceTimersByTime(2_500); // ~250 windows, each retrying
    const errors = () => lines.filter((l) => l.msg === 'could not write lease records; will retry');
    expect(errors()).toHaveLength(3); // at 0, 1,000 and 2,000 ms
    expect(errors()[1]!.failures).toBeGreaterThan(50); // the attempts in between are counted, not lost
    db.pragma('query_only = OFF');
    vi.advanceTimersByTime(50);
    expect(db.prepare('SELECT pid FROM leases ORDER BY pid').all()).toEqual([{ pid: 4242 }, { pid: 4243 }]);
    expect(lines.filter((l) => l.msg === 'lease records written again')).toHaveLength(1);
    vi.advanceTimersByTime(5_000);
    expect(errors()).toHaveLength(3);
    leases.close();
  });
});
