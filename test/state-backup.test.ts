// `shmbroker state backup DIR` taken from a running broker, restored into a
// fresh state directory as deploy/README.md says, and verified there with
// `audit verify` by a broker started on the copy.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir } from './support/broker-process';

describe('state backup and restore (memfd)', () => {
  let broker: BrokerProcess;
  let restored: BrokerProcess | undefined;
  let work: string;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
    work = makeTempDir();
    await broker.json(['region', 'create', 'kept', '--size', '8KiB']);
    await broker.json(['grant', 'create', 'kept', '--uid', '1001']);
    await broker.json(['quota', 'set', '--uid', '1001', '--regions', '7']);
  });
  afterAll(async () => {
    await restored?.cleanup();
    await broker?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('backs up online, verified, into private files; refuses a non-empty directory', async () => {
    const dest = path.join(work, 'bk');
    const r = await broker.json(['state', 'backup', dest, '--state-dir', broker.stateDir]);
    expect(r.regions).toBe(1);
    expect(r.auditEvents).toBeGreaterThanOrEqual(4);
    expect(r.files.map((f: any) => f.name)).toEqual(['audit.key', 'audit.anchor', 'shmbroker.db']);
    expect(fs.statSync(dest).mode & 0o777).toBe(0o700);
    for (const f of [...r.files.map((x: any) => x.name), 'MANIFEST.json']) expect(fs.statSync(path.join(dest, f)).mode & 0o777, f).toBe(0o600);
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, 'MANIFEST.json'), 'utf8'));
    expect(manifest.files).toEqual(r.files);
    // The broker kept serving meanwhile; this change is after the backup.
    await broker.json(['region', 'create', 'after', '--size', '4KiB']);
    const again = await broker.cli(['state', 'backup', dest, '--state-dir', broker.stateDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not empty/);
  });

  it('restored into a fresh state directory: a broker starts on it, `audit verify` passes, state is as backed up', async () => {
    await broker.stop();
    // Restore as documented: an empty 0700 state directory, the files copied in.
    const dir = makeTempDir();
    const state = path.join(dir, 'state');
    fs.mkdirSync(state, { mode: 0o700 });
    for (const f of ['audit.key', 'audit.anchor', 'shmbroker.db']) fs.copyFileSync(path.join(work, 'bk', f), path.join(state, f));
    restored = await BrokerProcess.start({ backend: 'memfd', dir });
    const v = await restored.cli(['audit', 'verify']);
    expect(v.stderr).toBe('');
    expect(v.code).toBe(0);
    expect(v.stdout.toString()).toMatch(/^audit trail intact: \d+ events verified/);
    const { regions } = await restored.json<{ regions: any[] }>(['region', 'list']);
    // memfd memory died with the old broker; nobody held it to offer it back.
    expect(regions.map((x) => [x.name, x.state])).toEqual([['regions/kept', 'REGION_STATE_LOST']]);
    expect((await restored.json(['grant', 'list'])).grants).toHaveLength(1);
    const q = await restored.json(['quota', 'show', '--uid', '1001']); // proto3 JSON: uint64 as a string
    expect(q.maxRegions).toBe('7');
  });

  it('a copy whose trail was edited does not verify', async () => {
    const Database = require('better-sqlite3');
    const src = makeTempDir();
    try {
      for (const f of ['audit.key', 'audit.anchor', 'shmbroker.db']) fs.copyFileSync(path.join(work, 'bk', f), path.join(src, f));
      const db = new Database(path.join(src, 'shmbroker.db'));
      db.prepare("UPDATE audit_events SET resource = 'regions/forged' WHERE seq = (SELECT MIN(seq) FROM audit_events WHERE action = 'CreateRegion')").run();
      db.close();
      const r = await broker.cli(['state', 'backup', path.join(src, 'out'), '--state-dir', src]); // the CLI reads files: no broker needed
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/the copy does not verify/);
    } finally {
      fs.rmSync(src, { recursive: true, force: true });
    }
  });
});
