// Revocation end to end with real SDK clients of another uid: the notice
// arrives, the SDK detaches (JavaScript sees a zero-length buffer, never a
// fault), and the grant no longer works. Covers revoke, TTL expiry and
// region deletion. On memfd the broker cannot cut off a client that ignores
// the notice; the kmod suite proves that part inside the VM.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, NodeChild } from './support/broker-process';

const BACKEND = process.env.SHMBROKER_TEST_BACKEND ?? 'memfd';

const HOLDER = `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
(async () => {
  const client = await connect({ runtimeDir: process.argv[2] });
  const region = await client.acquire(process.argv[3], { mode: process.argv[4] });
  const view = new Uint8Array(region.buffer);
  report({ event: 'acquired', size: region.size, first: view[0], lease: region.leaseId, backend: region.backend });
  region.on('revoked', (ev) => {
    // Touching the old view must not fault: it is detached (length 0).
    report({ event: 'revoked', reason: ev.reason, graceMs: ev.graceMs, byteLength: region.buffer.byteLength, viewLength: view.length, touch: view[0] });
    client.acquire(process.argv[3], { mode: process.argv[4] }).then(
      () => report({ event: 'reacquired' }),
      (e) => report({ event: 'reacquire-failed', reason: e.reason, code: e.code }),
    ).finally(() => { client.close(); });
  });
})().catch((e) => { report({ event: 'error', message: e.message, reason: e.reason }); process.exit(3); });
`;

describe(`revocation (${BACKEND})`, () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: BACKEND });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('grant revoke: the client gets the notice, its buffer is detached, and it cannot acquire again', async () => {
    await broker.json(['region', 'create', 'rv', '--size', '64KiB']);
    await broker.cli(['region', 'write', 'rv'], { input: Buffer.from([42]) });
    const g = await broker.json(['grant', 'create', 'rv', '--uid', '1001', '--mode', 'ro']);
    const child = new NodeChild(HOLDER, { uid: 1001, args: [broker.runtimeDir, 'rv', 'ro'] });
    try {
      expect(await child.next((o) => o.event === 'acquired')).toMatchObject({ size: 65536, first: 42, backend: BACKEND });
      // The revoke returns once every lease was released (the SDK releases
      // at once) or the grace period ran out; its report says which.
      const revoke = await broker.json(['grant', 'revoke', g.name]);
      expect(revoke).toMatchObject({ name: g.name, revocationAdvisory: BACKEND === 'memfd' });
      expect(await child.next((o) => o.event === 'revoked')).toEqual({
        event: 'revoked',
        reason: 'GRANT_REVOKED',
        graceMs: 1000,
        byteLength: 0,
        viewLength: 0,
      });
      expect(await child.next((o) => o.event.startsWith('reacquire'))).toMatchObject({ event: 'reacquire-failed', reason: 'REGION_NOT_FOUND', code: 'NOT_FOUND' });
      expect(await child.exited()).toEqual({ code: 0, signal: null });
    } finally {
      child.kill();
    }
    const audit: any[] = (await broker.json(['audit', 'list', '--region', 'rv']).catch(() => ({ events: [] }))).events;
    expect(audit.map((e) => e.action)).toEqual(expect.arrayContaining(['CreateGrant', 'Acquire', 'RevokeGrant', 'RevocationNotice', 'Release']));
  });

  it('TTL expiry revokes by itself', async () => {
    await broker.json(['region', 'create', 'ttl', '--size', '4KiB']);
    // Long enough for a child Node process to start and acquire on a loaded
    // machine (with 2 s it sometimes found the grant already expired).
    await broker.json(['grant', 'create', 'ttl', '--uid', '1001', '--mode', 'rw', '--ttl', '8s']);
    const child = new NodeChild(HOLDER, { uid: 1001, args: [broker.runtimeDir, 'ttl', 'rw'] });
    try {
      expect(await child.next((o) => o.event === 'acquired' || o.event === 'error')).toMatchObject({ event: 'acquired' });
      expect(await child.next((o) => o.event === 'revoked', 30_000)).toMatchObject({ reason: 'GRANT_EXPIRED', byteLength: 0 });
      expect(await child.next((o) => o.event.startsWith('reacquire'))).toMatchObject({ reason: 'REGION_NOT_FOUND' });
    } finally {
      child.kill();
    }
    expect(await broker.json(['grant', 'list', '--region', 'ttl'])).toEqual({}); // ListGrantsResponse: no grants, no next page
  });

  it('region delete notifies every holder', async () => {
    await broker.json(['region', 'create', 'del', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'del', '--gid', '1001', '--mode', 'ro']);
    const children = [0, 1].map(() => new NodeChild(HOLDER, { uid: 1001, args: [broker.runtimeDir, 'del', 'ro'] }));
    try {
      for (const c of children) await c.next((o) => o.event === 'acquired');
      expect((await broker.cli(['region', 'delete', 'del'])).code).toBe(0);
      for (const c of children) {
        expect(await c.next((o) => o.event === 'revoked')).toMatchObject({ reason: 'REGION_DELETED', byteLength: 0 });
        expect(await c.next((o) => o.event.startsWith('reacquire'))).toMatchObject({ reason: 'REGION_NOT_FOUND' });
      }
    } finally {
      children.forEach((c) => c.kill());
    }
  });
});

describe(`lease lifetime (${BACKEND})`, () => {
  it('the leases of a client that exits end by themselves; a live one keeps its lease across a reconnect', async () => {
    const broker = await BrokerProcess.start({ backend: BACKEND });
    try {
      await broker.json(['region', 'create', 'life', '--size', '4KiB']);
      await broker.json(['grant', 'create', 'life', '--uid', '1001', '--mode', 'ro']);
      const child = new NodeChild(HOLDER, { uid: 1001, args: [broker.runtimeDir, 'life', 'ro'] });
      await child.next((o) => o.event === 'acquired');
      child.kill();
      let events: any[] = [];
      for (let i = 0; i < 50; i++) {
        events = (await broker.json(['audit', 'list', '--region', 'life'])).events;
        if (events.some((e) => e.action === 'LeaseEnded')) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(events.find((e) => e.action === 'LeaseEnded')).toMatchObject({ result: 'AUDIT_RESULT_ALLOWED', reason: 'HOLDER_EXITED' });
    } finally {
      await broker.cleanup();
    }
  });
});
