// WatchRegions through the real CLI (`shmbroker region list --watch`) against
// a real broker, as root and as another uid: the current state as ADDED,
// then ADDED/DELETED for regions and grants as they happen, with resource
// versions; MODIFIED when a held region is deleted (it is DELETING until its
// last holder lets go, then DELETED); resuming from a version replays only what came after it; a
// version the broker no longer keeps is a clear error; a uid sees only what
// it may see.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, BrokerProcess, makeTempDir, NodeChild } from './support/broker-process';
import { buildApiProtoset, pyjson } from './support/python-client';

/** `shmbroker region list --watch -o json` as a long-running process. */
function watcher(broker: BrokerProcess, o: { uid?: number; resourceVersion?: string } = {}) {
  let argv = [process.execPath, BIN, '--runtime-dir', broker.runtimeDir, 'region', 'list', '--watch', '-o', 'json'];
  if (o.resourceVersion) argv.push('--resource-version', o.resourceVersion);
  if (o.uid !== undefined) argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.uid}`, '--clear-groups', '--', ...argv];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: any[] = [];
  let buf = '';
  let stderr = '';
  const wake: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
    for (const w of wake.splice(0)) w();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('exit', () => {
    for (const w of wake.splice(0)) w();
  });
  return {
    events,
    child,
    get stderr() {
      return stderr;
    },
    /** Resolves once `n` events have arrived in total. */
    async upTo(n: number): Promise<any[]> {
      const deadline = Date.now() + 20_000;
      while (events.length < n) {
        if (child.exitCode !== null) throw new Error(`watch exited ${child.exitCode}: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`only ${events.length} of ${n} events: ${JSON.stringify(events)} ${stderr}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, 200);
          wake.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return events.slice(0, n);
    },
    stop(): void {
      child.kill('SIGTERM');
    },
  };
}

const brief = (e: any): string => `${e.type.replace('WATCH_EVENT_TYPE_', '')} ${e.region?.name ?? e.grant?.name}`;

describe('WatchRegions (region list --watch)', () => {
  let broker: BrokerProcess;
  let protoset: string;

  beforeAll(async () => {
    protoset = buildApiProtoset(makeTempDir('shmbroker-watch-'));
    broker = await BrokerProcess.start({ backend: 'memfd' });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('current state as ADDED, then changes with resource versions; resumable; another uid sees only its own', async () => {
    await broker.json(['region', 'create', 'before', '--size', '4KiB']);
    const before = await broker.json(['grant', 'create', 'before', '--uid', '1002', '--mode', 'ro']);
    const root = watcher(broker);
    const other = watcher(broker, { uid: 1001 });
    try {
      const initial = await root.upTo(2);
      expect(initial.map(brief)).toEqual(['ADDED regions/before', `ADDED ${before.name}`]);
      // Both carry the version of the state they describe.
      expect(initial[0].resourceVersion).toBe(initial[1].resourceVersion);
      // proto3 JSON: uint64 as a string, RFC 3339 times, defaults (owner uid 0) omitted.
      expect(initial[0].region).toEqual({ name: 'regions/before', sizeBytes: '4096', backend: 'memfd', createTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/), state: 'REGION_STATE_ACTIVE' });

      await broker.json(['region', 'create', 'later', '--size', '8KiB']);
      const g = await broker.json(['grant', 'create', 'later', '--uid', '1001', '--mode', 'rw']);
      expect((await broker.cli(['grant', 'revoke', g.name])).code).toBe(0);
      expect((await broker.cli(['region', 'delete', 'before'])).code).toBe(0);
      const all = await root.upTo(7);
      expect(all.slice(2).map(brief)).toEqual([
        'ADDED regions/later',
        `ADDED ${g.name}`,
        `DELETED ${g.name}`,
        `DELETED ${before.name}`,
        'DELETED regions/before',
      ]);
      const versions = all.slice(2).map((e) => e.resourceVersion);
      expect(new Set(versions).size).toBe(5);
      expect(all[3].grant).toMatchObject({ uid: 1001, mode: 'ACCESS_MODE_READ_WRITE' });
      // Each line is a WatchRegionsResponse to another implementation's proto3 JSON parser, unchanged by a round trip.
      const parsed = await pyjson(protoset, all.map((e): [string, string] => ['shmbroker.v1.WatchRegionsResponse', JSON.stringify(e)]));
      parsed.forEach((p, i) => expect(p.ok, JSON.stringify(p)).toEqual(all[i]));

      // uid 1001 owns nothing and saw nothing at the start; it sees the grant
      // made to it (and its revocation), nothing of "before".
      const mine = await other.upTo(2);
      expect(mine.map(brief)).toEqual([`ADDED ${g.name}`, `DELETED ${g.name}`]);
      await new Promise((r) => setTimeout(r, 500)); // nothing else arrives (checked below)
      expect(other.events.length).toBe(2);

      // Resume after the region "later" was added: only what followed, no current state.
      const resumed = watcher(broker, { resourceVersion: all[2].resourceVersion });
      try {
        expect((await resumed.upTo(4)).map(brief)).toEqual([`ADDED ${g.name}`, `DELETED ${g.name}`, `DELETED ${before.name}`, 'DELETED regions/before']);
        expect(resumed.events.map((e) => e.resourceVersion)).toEqual(versions.slice(1));
        // And it stays live.
        await broker.json(['region', 'create', 'live', '--size', '4KiB']);
        expect(brief((await resumed.upTo(5))[4])).toBe('ADDED regions/live');
      } finally {
        resumed.stop();
      }
    } finally {
      root.stop();
      other.stop();
    }
  });

  it('a held region deleted: MODIFIED (DELETING) while its holder maps it, DELETED when the holder lets go', async () => {
    await broker.json(['region', 'create', 'held', '--size', '4KiB']);
    const watch = watcher(broker);
    const holder = new NodeChild(
      `const { connect } = require(REPO + '/dist/clients/sdk/index.js');
       (async () => {
         const c = await connect({ runtimeDir: process.argv[2], reconnect: false });
         const r = await c.acquire('held', { mode: 'rw' });
         report({ held: true });
         process.stdin.on('data', async () => { await r.release(); await c.drain(); report({ released: true }); });
       })();`,
      { args: [broker.runtimeDir] },
    );
    const about = (type: string) => async (): Promise<any> => {
      for (let n = 1; ; n++) {
        const e = (await watch.upTo(n))[n - 1];
        if (brief(e) === `${type} regions/held`) return e;
      }
    };
    try {
      expect((await about('ADDED')()).region.state).toBe('REGION_STATE_ACTIVE');
      await holder.next((o) => o.held);
      expect((await broker.cli(['region', 'delete', 'held'])).code).toBe(0);
      const modified = await about('MODIFIED')();
      expect(modified.region).toMatchObject({ name: 'regions/held', state: 'REGION_STATE_DELETING' });
      expect(modified.region.deleteTime).toMatch(/^\d{4}-\d\d-\d\dT/);
      holder.proc.stdin!.write('release\n');
      await holder.next((o) => o.released);
      const gone = await about('DELETED')();
      expect(Number(gone.resourceVersion.split('.')[1])).toBeGreaterThan(Number(modified.resourceVersion.split('.')[1]));
      // In order: nothing about "held" between ADDED and MODIFIED, or after DELETED.
      expect(watch.events.filter((e) => (e.region?.name ?? e.grant?.name) === 'regions/held').map((e) => e.type)).toEqual([
        'WATCH_EVENT_TYPE_ADDED',
        'WATCH_EVENT_TYPE_MODIFIED',
        'WATCH_EVENT_TYPE_DELETED',
      ]);
    } finally {
      holder.kill();
      watch.stop();
    }
  });

  it('a version from an earlier broker run, or not a version at all, is a clear error', async () => {
    const expired = await broker.cli(['region', 'list', '--watch', '--resource-version', 'zzzz.1']);
    expect(expired.code).not.toBe(0);
    expect(expired.stderr).toMatch(/WATCH_VERSION_EXPIRED|no longer kept/);
    expect(expired.stderr).toContain('watch again without one');
    const bad = await broker.cli(['region', 'list', '--watch', '--resource-version', 'not-a-version']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/resource_version must be one from a WatchRegionsResponse/);
  });
});
