// The broker's log lines as an operator greps them (issue 18): unique field
// names (the broker's pid vs the peer's peer.pid, msg only), grants, quota
// changes, revocations and denials logged with their caller, a requestId on
// every line of a request that also appears in its audit event, the version
// in the start line, and the level from the flag.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, REPO } from './support/broker-process';

const PKG = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };

/** Every JSON log line, with its raw text (to see duplicate keys JSON.parse would hide). */
function lines(log: string): Array<{ raw: string; o: Record<string, any> }> {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((raw) => ({ raw, o: JSON.parse(raw) as Record<string, any> }));
}

function keysOf(raw: string): string[] {
  // Top-level keys in order, duplicates kept (JSON.parse would keep only the last).
  const out: string[] = [];
  let depth = 0;
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i];
    if (ch === '"') {
      let j = i + 1;
      while (raw[j] !== '"') j += raw[j] === '\\' ? 2 : 1;
      if (depth === 1 && raw[j + 1] === ':') out.push(raw.slice(i + 1, j));
      i = j;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
  }
  return out;
}

async function waitFor(broker: BrokerProcess, re: RegExp, from = 0): Promise<void> {
  for (let i = 0; i < 200 && !re.test(broker.log.slice(from)); i++) await new Promise((r) => setTimeout(r, 25));
}

describe('broker logs (memfd, --log-level debug)', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd', extraArgs: ['--log-level', 'debug'] });
    await broker.json(['region', 'create', 'logs', '--size', '4KiB']);
    await broker.json(['quota', 'set', '--uid', '1001', '--regions', '5']);
    const g = await broker.json(['grant', 'create', 'logs', '--uid', '1001']);
    expect((await broker.cli(['region', 'read', 'logs', '--length', '1'], U1)).code).toBe(0);
    expect((await broker.cli(['region', 'read', 'logs', '--length', '1'], U2)).code).not.toBe(0); // a denial
    expect((await broker.cli(['grant', 'revoke', g.name])).code).toBe(0);
    await waitFor(broker, /"msg":"RevokeGrant /);
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('the start line carries the version', () => {
    const start = lines(broker.log).find((l) => l.o.msg === 'broker serving')!;
    expect(start.o.version).toBe(PKG.version);
  });

  it('no line has a key twice, and none has `message` beside `msg` or a bare peer uid', () => {
    const all = lines(broker.log);
    expect(all.length).toBeGreaterThan(5);
    for (const { raw, o } of all) {
      const keys = keysOf(raw);
      expect(new Set(keys).size, raw).toBe(keys.length);
      expect(o.message, raw).toBeUndefined();
      expect(o.uid, raw).toBeUndefined(); // a peer's uid is peer.uid
      expect(o.pid, raw).toBe(broker.pid); // pid is always the broker's own
    }
  });

  it('grant create, quota set, revoke and a denial are logged with the caller', () => {
    const all = lines(broker.log).map((l) => l.o);
    const find = (re: RegExp) => all.find((o) => re.test(o.msg));
    const grant = find(/^CreateGrant regions\/logs\/grants\/\d+: ALLOWED$/);
    expect(grant).toMatchObject({ level: 30, 'peer.uid': 0 });
    expect(grant!['peer.pid']).toBeGreaterThan(0);
    expect(find(/^UpdateQuota quotas\/uid:1001: ALLOWED$/)).toMatchObject({ level: 30, 'peer.uid': 0 });
    expect(find(/^RevokeGrant regions\/logs\/grants\/\d+: ALLOWED$/)).toMatchObject({ level: 30, 'peer.uid': 0 });
    const denied = find(/^Acquire regions\/logs: DENIED \(/);
    expect(denied).toMatchObject({ level: 30, 'peer.uid': 1002 });
    expect(find(/^Acquire regions\/logs: ALLOWED$/)).toMatchObject({ level: 20, 'peer.uid': 1001 });
  });

  it('every line of a request carries one requestId, and its audit event has the same id', async () => {
    const all = lines(broker.log).map((l) => l.o);
    // One info line per create: the audit event's (the handler's own "region created" is debug).
    const created = all.find((o) => o.msg === 'CreateRegion regions/logs: ALLOWED')!;
    expect(created.requestId).toMatch(/^[0-9a-f]{16}$/);
    expect(created.audit.details).toMatchObject({ sizeBytes: expect.any(Number), backend: expect.any(String) });
    expect(created.level).toBe(30);
    const sameRequest = all.filter((o) => o.requestId === created.requestId);
    expect(sameRequest.filter((o) => o.level >= 30).map((o) => o.msg)).toEqual(['CreateRegion regions/logs: ALLOWED']);
    expect(sameRequest.find((o) => o.msg === 'region created')).toMatchObject({ level: 20 });
    const { events } = await broker.json<{ events: any[] }>(['audit', 'list', '--action', 'CreateRegion']); // proto3 JSON: ListAuditEventsResponse
    expect(JSON.parse(events.at(-1).detailsJson).requestId).toBe(created.requestId);
    // Distinct requests, distinct ids.
    const ids = all.filter((o) => /^(CreateRegion|UpdateQuota|CreateGrant|RevokeGrant) /.test(o.msg)).map((o) => o.requestId);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
