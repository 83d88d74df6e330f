// The typed control client: one method per RPC with the request and response
// types generated from the protos (scripts/gen-control-client.js). The
// fixture must type-check under strict TypeScript (and its @ts-expect-error
// lines prove wrong calls do not), then run against a real broker.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, REPO } from './support/broker-process';
import { scenario } from './fixtures/typed-control-client';

describe('typed control client', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await BrokerProcess.start();
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('type-checks with tsc --strict (wrong fields, types and method names are errors)', () => {
    const r = spawnSync(
      process.execPath,
      [
        path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'),
        '--noEmit', '--strict', '--target', 'es2022', '--module', 'node16', '--moduleResolution', 'node16',
        '--types', 'node', '--skipLibCheck', '--esModuleInterop',
        path.join(REPO, 'test', 'fixtures', 'typed-control-client.ts'),
      ],
      { encoding: 'utf8' },
    );
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('each call resolves with its typed response', async () => {
    const [name, size, grant, count, again, revoked, state, leases, advisory] = await scenario(broker.runtimeDir);
    expect(name).toBe('regions/typed');
    expect(size).toBe('8192');
    expect(grant).toMatch(/^regions\/typed\/grants\/\d+$/);
    expect(count).toBe('1');
    expect(again).toBe(grant);
    expect(revoked).toBe(grant);
    expect([state, leases, advisory]).toEqual(['REGION_STATE_DELETING', '0', 'true']); // memfd: advisory; nobody held it
  });
});
