// Issue 16 item 4: a region's bytes stay charged to its owner until the last
// lease on it ends. On memfd a holder keeps the memory after DeleteRegion, so
// the region is DELETING (listed, with its holders) and still charged until
// that holder releases or exits; then the one lease-ending function refunds
// it and removes the row. As a real other uid (1001, the owner), with a
// holder that ignores the revocation notice (a raw data-plane client), and
// across a broker restart.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir, NodeChild } from '../support/broker-process';

const OWNER = 1001;
const MiB = 1024 * 1024;

/** Acquires a region over a raw data-plane connection, keeps its fd, ignores notices; releases on "release". */
const HOLDER = `
const native = require(REPO + '/dist/native');
const { dataRequestCodec, dataReplyCodec } = require(REPO + '/dist/proto/load.js');
const [runtimeDir, region] = process.argv.slice(2);
const s = native.SeqpacketSocket.connect(runtimeDir + '/data.sock');
let lease = 0;
s.on('message', (data, fds) => {
  const r = dataReplyCodec().decode(data);
  if (r.acquire) { lease = r.acquire.leaseId; report({ event: 'held', lease: String(lease), fds: fds.length }); }
  else if (r.revocation) report({ event: 'notice', reason: r.revocation.reason });
  else if (r.release) report({ event: 'released' });
  else if (r.error) report({ event: 'error', reason: r.error.reason });
});
s.send(dataRequestCodec().encode({ requestId: 1, acquire: { region, mode: 'ACCESS_MODE_READ_WRITE' } }));
process.stdin.on('data', (d) => {
  if (String(d).includes('release')) s.send(dataRequestCodec().encode({ requestId: 2, release: { leaseId: lease } }));
});
setInterval(() => undefined, 1000);
`;

let broker: BrokerProcess;
const children: NodeChild[] = [];

beforeAll(async () => {
  const dir = makeTempDir('shmbroker-deleting-');
  const config = path.join(dir, 'broker.yaml');
  fs.writeFileSync(config, 'revocationGraceMs: 200\n');
  broker = await BrokerProcess.start({ dir, config });
  await broker.json(['quota', 'set', '--uid', String(OWNER), '--bytes', '64MiB']);
}, 60_000);
afterAll(async () => {
  for (const c of children) c.kill();
  await broker?.cleanup();
});

function hold(region: string): NodeChild {
  const c = new NodeChild(HOLDER, { uid: OWNER, args: [broker.runtimeDir, region] });
  children.push(c);
  return c;
}

const asOwner = { uid: OWNER };

async function createAs(name: string): Promise<{ code: number | null; stderr: string }> {
  const r = await broker.cli(['region', 'create', name, '--size', '48MiB'], asOwner);
  return { code: r.code, stderr: r.stderr.toString() };
}

async function usedBytes(): Promise<number> {
  const q = await broker.json(['quota', 'show', '--uid', String(OWNER)]);
  return Number(q.usage?.bytes ?? 0);
}

describe('a deleted region stays charged while it is held (memfd)', () => {
  it('owner with a 64 MiB quota: 48 MiB held after delete blocks another 48 MiB; after release it fits', async () => {
    expect((await createAs('first')).code).toBe(0);
    const holder = hold('first');
    expect(await holder.next((o) => o.event === 'held')).toMatchObject({ event: 'held' });

    const deleted = await broker.json(['region', 'delete', 'first'], asOwner);
    expect(deleted).toMatchObject({ name: 'regions/first', state: 'REGION_STATE_DELETING', leaseCount: 1, revocationAdvisory: true });
    expect(deleted.deleteTime).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(await holder.next((o) => o.event === 'notice')).toMatchObject({ reason: 'REGION_DELETED' });

    // Listed as DELETING with its holder, still charged, the name still taken.
    const list = await broker.json(['region', 'list'], asOwner);
    expect(list.regions).toEqual([expect.objectContaining({ name: 'regions/first', state: 'REGION_STATE_DELETING', leaseCount: 1 })]);
    expect((await broker.cli(['region', 'list'], asOwner)).stdout.toString()).toMatch(/first .*DELETING \(1 holding\)/);
    expect(await usedBytes()).toBe(48 * MiB);
    const refused = await createAs('second');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('QUOTA_BYTES');
    const reuse = await createAs('first');
    expect(reuse.stderr).toContain('REGION_EXISTS');
    // No new acquire or grant on it: it is on its way out.
    const late = hold('first');
    expect(await late.next((o) => o.event === 'error')).toMatchObject({ reason: 'REGION_NOT_FOUND' });
    const grant = await broker.cli(['grant', 'create', 'first', '--uid', '1002'], asOwner);
    expect(grant.stderr.toString()).toContain('REGION_NOT_FOUND');

    holder.send('release');
    expect(await holder.next((o) => o.event === 'released')).toMatchObject({ event: 'released' });
    // The release ended the last lease: refunded, row removed, in the same step.
    expect(await usedBytes()).toBe(0);
    expect(await broker.json(['region', 'list'], asOwner)).toEqual({});
    expect((await createAs('second')).code).toBe(0);
    const events = await broker.json(['audit', 'list', '--resource', 'regions/first']);
    const actions = events.events.map((e: { action: string }) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['DeleteRegion', 'Release', 'RegionRemoved']));
    const gone = await broker.json(['region', 'delete', 'second'], asOwner);
    expect(gone).toMatchObject({ name: 'regions/second', state: 'REGION_STATE_DELETING' });
    expect(gone.leaseCount).toBeUndefined(); // proto3 JSON omits 0: nobody held it, it is gone
    expect(await usedBytes()).toBe(0);
  }, 90_000);

  it('across a restart: still DELETING and charged while the holder lives; finished at start once it is gone', async () => {
    expect((await createAs('third')).code).toBe(0);
    const holder = hold('third');
    await holder.next((o) => o.event === 'held');
    expect(await broker.json(['region', 'delete', 'third'], asOwner)).toMatchObject({ state: 'REGION_STATE_DELETING', leaseCount: 1 });

    // Restart with the holder alive: re-adopted as DELETING, still charged.
    await broker.stop();
    await broker.start();
    expect(await broker.json(['region', 'get', 'third'], asOwner)).toMatchObject({ state: 'REGION_STATE_DELETING', leaseCount: 1 });
    expect(await usedBytes()).toBe(48 * MiB);
    expect((await createAs('fourth')).stderr).toContain('QUOTA_BYTES');

    // The holder exits while the broker is down: the next start finishes the deletion.
    await broker.kill9();
    holder.kill();
    await holder.exited();
    await broker.start();
    expect(broker.log).toContain('region deleted: its last lease ended');
    expect(await usedBytes()).toBe(0);
    expect(await broker.json(['region', 'list'], asOwner)).toEqual({});
    expect((await createAs('fourth')).code).toBe(0);
  }, 120_000);
});
