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
  // proto3 JSON leaves out fields at their default (0, false): absent reads as 0.
  const counts = (s: Record<string, unknown>) => [Number(s.regionCount ?? 0), Number(s.regionBytes ?? 0), Number(s.grantCount ?? 0)];
  const stranger = await broker.json(['status'], U2);
  expect(stranger.callerUid).toBe(1002);
  expect(stranger.callerIsAdmin ?? false).toBe(false);
  expect(counts(stranger)).toEqual([0, 0, 0]);
  const owner = await broker.json(['status'], U1);
  expect(counts(owner)).toEqual([1, 8192, 1]);
  const admin = await broker.json(['status']);
  expect(admin.callerIsAdmin).toBe(true);
  expect(counts(admin)).toEqual([2, 65536 + 8192, 2]);
}, 60_000);
