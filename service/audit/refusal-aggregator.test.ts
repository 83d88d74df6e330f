// The aggregator alone: the first refusals of a kind are written one by one,
// the rest counted into one event per interval, and the counts add up.
import { afterEach, expect, it } from 'vitest';
import { INDIVIDUAL_PER_INTERVAL, KINDS_PER_UID, RefusalAggregator, type Refusal } from './refusal-aggregator';

const actor = (uid: number) => ({ pid: 1, uid, gid: uid });
let agg: RefusalAggregator | undefined;
afterEach(() => agg?.close());

it('writes the first refusals, counts the rest, and flushes one event per kind with the count', () => {
  const written: Array<{ r: Refusal; count?: number }> = [];
  agg = new RefusalAggregator((r, c) => written.push({ r, ...(c ? { count: c.count } : {}) }), 60_000);
  for (let i = 0; i < 1000; i++) agg.refuse({ actor: actor(1002), action: 'DataPlaneProtocolError', resource: 'data.sock', reason: 'MALFORMED_PACKET' });
  for (let i = 0; i < 3; i++) agg.refuse({ actor: actor(1001), action: 'Acquire', resource: 'regions/x', reason: 'NO_GRANT' });
  expect(written).toHaveLength(INDIVIDUAL_PER_INTERVAL + 3);
  agg.flush();
  expect(written).toHaveLength(INDIVIDUAL_PER_INTERVAL + 4);
  expect(written.at(-1)).toMatchObject({ count: 1000 - INDIVIDUAL_PER_INTERVAL, r: { reason: 'MALFORMED_PACKET' } });
  const total = written.filter((w) => w.r.actor.uid === 1002).reduce((a, w) => a + (w.count ?? 1), 0);
  expect(total).toBe(1000);
  // A new interval starts writing one by one again.
  agg.refuse({ actor: actor(1002), action: 'DataPlaneProtocolError', resource: 'data.sock', reason: 'MALFORMED_PACKET' });
  expect(written).toHaveLength(INDIVIDUAL_PER_INTERVAL + 5);
});

it('keys by resource, and pools a uid\'s refusals over made-up names once it has too many kinds', () => {
  const written: Array<{ r: Refusal; count?: number }> = [];
  agg = new RefusalAggregator((r, c) => written.push({ r, ...(c ? { count: c.count } : {}) }), 60_000);
  for (let i = 0; i < 5000; i++) agg.refuse({ actor: actor(1002), action: 'Acquire', resource: `regions/made-up-${i}`, reason: 'REGION_NOT_FOUND' });
  agg.flush();
  expect(written.length).toBeLessThanOrEqual(KINDS_PER_UID + INDIVIDUAL_PER_INTERVAL + 1);
  expect(written.reduce((a, w) => a + (w.count ?? 1), 0)).toBe(5000);
  expect(written.at(-1)!.r.resource).toBe('*');
});
