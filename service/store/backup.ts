// `shmbroker state backup DIR`: an online copy of the broker's state that a
// broker can start from, verified before the command says it worked.
//
//   audit.key     copied first: without it the trail's MACs cannot be checked
//   audit.anchor  copied before the database, so the copy of the database is
//                 at or ahead of the copy of the anchor, which is what a start
//                 accepts (the anchor never runs ahead of what is committed)
//   shmbroker.db  SQLite's online backup API (better-sqlite3 db.backup): a
//                 consistent snapshot taken while the broker keeps writing
//   MANIFEST.json what was copied, when, from which version, with sha256s
//
// The copy is then opened as a broker would open it (integrity check,
// migrations, the audit trail against its key and anchor) and the whole hash
// chain verified. Restoring is stopping the broker and putting these files
// in an empty state directory (docs: deploy/README.md, "Backup and restore").
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { AuditTrail } from '../audit/audit-trail';
import { DB_FILE, openStateDb } from './state-db';

export const KEY_FILE = 'audit.key';
export const ANCHOR_FILE = 'audit.anchor';
export const MANIFEST_FILE = 'MANIFEST.json';

export interface BackupResult {
  dir: string;
  files: Array<{ name: string; bytes: number; sha256: string }>;
  /** Events whose chain was verified in the copy. */
  auditEvents: number;
  regions: number;
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function copyPrivate(from: string, to: string): void {
  fs.copyFileSync(from, to, fs.constants.COPYFILE_EXCL);
  fs.chmodSync(to, 0o600);
}

export async function backupState(stateDir: string, destDir: string, version: string): Promise<BackupResult> {
  const dbFile = path.join(stateDir, DB_FILE);
  if (!fs.existsSync(dbFile)) throw new Error(`no state database at ${dbFile} (is --state-dir right?)`);
  if (fs.existsSync(destDir) && fs.readdirSync(destDir).length > 0) throw new Error(`${destDir} is not empty; back up into a new directory`);
  fs.mkdirSync(destDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(destDir, 0o700); // the key and the trail are as private as the state directory

  copyPrivate(path.join(stateDir, KEY_FILE), path.join(destDir, KEY_FILE));
  const hasAnchor = fs.existsSync(path.join(stateDir, ANCHOR_FILE));
  if (hasAnchor) copyPrivate(path.join(stateDir, ANCHOR_FILE), path.join(destDir, ANCHOR_FILE));
  const src = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    src.pragma('busy_timeout = 5000');
    await src.backup(path.join(destDir, DB_FILE));
  } finally {
    src.close();
  }
  fs.chmodSync(path.join(destDir, DB_FILE), 0o600);

  // Open the copy as a broker would, and check the whole trail.
  const db = openStateDb(destDir);
  let auditEvents: number;
  let regions: number;
  try {
    const trail = new AuditTrail(db, {
      key: fs.readFileSync(path.join(destDir, KEY_FILE)),
      ...(hasAnchor ? { anchorFile: path.join(destDir, ANCHOR_FILE) } : {}),
    });
    const v = trail.verify();
    trail.close();
    if (!v.ok) throw new Error(`the copy does not verify: ${v.problems.map((p) => `seq ${p.seq}: ${p.problem}`).join('; ')}`);
    auditEvents = v.checked;
    regions = (db.prepare('SELECT COUNT(*) AS n FROM regions').get() as { n: number }).n;
  } finally {
    db.close();
  }
  for (const extra of ['-wal', '-shm']) fs.rmSync(path.join(destDir, DB_FILE + extra), { force: true });

  const files = [KEY_FILE, ...(hasAnchor ? [ANCHOR_FILE] : []), DB_FILE].map((name) => {
    const p = path.join(destDir, name);
    return { name, bytes: fs.statSync(p).size, sha256: sha256(p) };
  });
  const manifest = { createTime: new Date().toISOString(), brokerVersion: version, from: path.resolve(stateDir), auditEvents, regions, files };
  fs.writeFileSync(path.join(destDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  return { dir: path.resolve(destDir), files, auditEvents, regions };
}
