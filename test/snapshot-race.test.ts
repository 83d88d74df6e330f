// The data plane decides from a policy snapshot in memory (service/store/
// policy-snapshot.ts), not from SQLite. A stale snapshot must never hand out
// an fd: uid 1001 acquires in a tight loop while root revokes its grant,
// downgrades it to read-only, deletes the region (held or not) and creates it
// again for itself. Every acquire sent after the control call returned must
// be decided on the new state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, NodeChild } from './support/broker-process';

/** uid 1001 acquiring `name` in `mode` without pause; after stdin says "now", it counts what it still got. */
function hammer(b: BrokerProcess, name: string, mode: 'ro' | 'rw'): NodeChild {
  return new NodeChild(
    `const { connect } = require(REPO + '/dist/clients/sdk/index.js');
     (async () => {
       const c = await connect({ runtimeDir: process.argv[2], reconnect: false });
       let after = false;
       const seen = { before: 0, after: 0, grantedAfter: 0, reasonsAfter: {} };
       process.stdin.on('data', () => { after = true; });
       report({ ready: true });
       const t0 = Date.now();
       // Ends after 200 acquires past "now"; the cap only bounds a run whose
       // "now" never comes (change() spawns CLIs, slow on a loaded machine).
       while (Date.now() - t0 < 120000) {
         const late = after; // decided before the request is sent
         try {
           const r = await c.acquire(process.argv[3], { mode: process.argv[4] });
           if (late) seen.grantedAfter++;
           await r.release();
         } catch (e) {
           if (late) seen.reasonsAfter[e.reason] = (seen.reasonsAfter[e.reason] ?? 0) + 1;
           if (e.reason === 'RATE_LIMITED') await new Promise((res) => setTimeout(res, 5));
         }
         if (late) seen.after++; else seen.before++;
         if (seen.after >= 200) break;
         await new Promise((res) => setImmediate(res)); // let the "now" line in
       }
       report({ done: true, ...seen });
       c.close();
     })().catch((e) => report({ error: String(e && e.stack || e) }));`,
    { args: [b.runtimeDir, name, mode], uid: 1001, gid: 1001 },
  );
}

describe('acquire against a changing policy (snapshot in memory)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  /** Starts the hammer, lets it succeed for a while, runs `change`, then says "now". */
  async function race(name: string, mode: 'ro' | 'rw', change: () => Promise<void>): Promise<any> {
    const h = hammer(broker, name, mode);
    try {
      await h.next((o) => o.ready);
      await new Promise((r) => setTimeout(r, 300));
      await change();
      h.send('now');
      const r = await h.next((o) => o.done || o.error);
      expect(r.error).toBeUndefined();
      expect(r.before).toBeGreaterThan(0);
      expect(r.after).toBeGreaterThan(0);
      return r;
    } finally {
      h.kill();
    }
  }

  it('a revoked grant: no acquire sent after RevokeGrant returned is granted', async () => {
    await broker.json(['region', 'create', 'race-revoke', '--size', '4KiB']);
    const g = await broker.json(['grant', 'create', 'race-revoke', '--uid', '1001', '--mode', 'rw']);
    const r = await race('race-revoke', 'rw', async () => {
      expect((await broker.cli(['grant', 'revoke', g.name.split('/').pop()])).code).toBe(0);
    });
    expect(r.grantedAfter).toBe(0);
    expect(Object.keys(r.reasonsAfter).filter((k) => k !== 'RATE_LIMITED')).toEqual(['REGION_NOT_FOUND']);
  });

  it('rw downgraded to ro: no read-write acquire after the change', async () => {
    await broker.json(['region', 'create', 'race-mode', '--size', '4KiB']);
    const g = await broker.json(['grant', 'create', 'race-mode', '--uid', '1001', '--mode', 'rw']);
    const r = await race('race-mode', 'rw', async () => {
      await broker.json(['grant', 'create', 'race-mode', '--uid', '1001', '--mode', 'ro']);
      expect((await broker.cli(['grant', 'revoke', g.name.split('/').pop()])).code).toBe(0);
    });
    expect(r.grantedAfter).toBe(0);
    expect(Object.keys(r.reasonsAfter).filter((k) => k !== 'RATE_LIMITED')).toEqual(['GRANT_READ_ONLY']);
  });

  it('a deleted region, created again by root without a grant: nothing for uid 1001', async () => {
    await broker.json(['region', 'create', 'race-delete', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'race-delete', '--uid', '1001', '--mode', 'ro']);
    const r = await race('race-delete', 'ro', async () => {
      expect((await broker.cli(['region', 'delete', 'race-delete'])).code).toBe(0);
      // Held at that moment or not: DELETING until the lease ends, then gone; either way not visible.
      for (let i = 0; i < 100; i++) {
        if ((await broker.cli(['region', 'create', 'race-delete', '--size', '8KiB'])).code === 0) break;
        await new Promise((res) => setTimeout(res, 20));
      }
    });
    expect(r.grantedAfter).toBe(0);
    expect(Object.keys(r.reasonsAfter).filter((k) => k !== 'RATE_LIMITED')).toEqual(['REGION_NOT_FOUND']);
  });
});
