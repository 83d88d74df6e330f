// Issue 16 item 6 (part): GetStatus shows a non-admin only its own counts, so
// `shmbroker status` tells uid 1002 nothing about the regions and grants of
// root or uid 1001; an admin sees the whole broker.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrokerProcess } from '../support/broker-process';

const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
let broker: BrokerProcess;

beforeAll(async () => {
  broker = await BrokerProcess.start();
  await broker.json(['region', 'create', 'root-secret', '--size', '64KiB']);
  await broker.json(['grant', 'create', 'root-secret', '--uid', '1001']);
  await broker.json(['region', 'create', 'u1-own', '--size', '8KiB'], U1);
  await broker.json(['grant', 'create', 'u1-own', '--uid', '1003'], U1);
}, 60_000);
afterAll(() => broker?.cleanup());

it('uid 1002 sees zero regions, bytes and grants; uid 1001 sees its own; root sees all', async () => {
  const stranger = await broker.json(['status'], U2);
  expect(stranger).toMatchObject({ callerUid: 1002, callerIsAdmin: false });
  expect(Number(stranger.regionCount)).toBe(0);
  expect(Number(stranger.regionBytes)).toBe(0);
  expect(Number(stranger.grantCount)).toBe(0);
  const owner = await broker.json(['status'], U1);
  expect([Number(owner.regionCount), Number(owner.regionBytes), Number(owner.grantCount)]).toEqual([1, 8192, 1]);
  const admin = await broker.json(['status']);
  expect([Number(admin.regionCount), Number(admin.regionBytes), Number(admin.grantCount)]).toEqual([2, 65536 + 8192, 2]);
}, 60_000);
