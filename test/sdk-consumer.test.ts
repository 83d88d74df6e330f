// The SDK as a consumer sees it: test/fixtures/sdk-consumer.ts must compile
// under strict TypeScript (typed events, reasons and codes as literal
// unions: its @ts-expect-error lines prove typos do not compile), and then,
// run against a real broker as uid 1001, `await using` releases the region
// at the end of the block, an aborted signal and a zero timeout reject
// before anything is sent, and `using` unmaps synchronously.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, REPO, makeTempDir } from './support/broker-process';
import { expectConsumerRuns } from './support/sdk-consumer-run';

describe('SDK for consumers', () => {
  let broker: BrokerProcess;
  let out: string;
  beforeAll(async () => {
    broker = await BrokerProcess.start();
    out = makeTempDir('shmbroker-consumer-');
  });
  afterAll(async () => {
    await broker?.cleanup();
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('compiles strictly, then acquires with await using, signal and timeout as uid 1001', async () => {
    const tsc = spawnSync(
      process.execPath,
      [
        path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'),
        '--strict', '--target', 'es2022', '--lib', 'es2022,esnext.disposable', '--module', 'node16', '--moduleResolution', 'node16',
        '--types', 'node', '--skipLibCheck', '--esModuleInterop', '--rootDir', REPO, '--outDir', out,
        path.join(REPO, 'test', 'fixtures', 'sdk-consumer.ts'),
      ],
      { encoding: 'utf8' },
    );
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    // Run the compiled consumer against the built SDK (dist/), where the addon and the protos are found.
    const program = path.join(out, 'test', 'fixtures', 'sdk-consumer.js');
    fs.writeFileSync(program, fs.readFileSync(program, 'utf8').replace('require("../../clients/sdk")', `require(${JSON.stringify(path.join(REPO, 'dist', 'clients', 'sdk'))})`));
    fs.chmodSync(out, 0o755);

    await expectConsumerRuns(broker, program);
    // Nothing is left held: every lease the program was granted was released.
    const ends = async () => {
      const events: Array<{ action: string; result: string }> = (await broker.json(['audit', 'list', '--region', 'consumer'])).events ?? [];
      const ok = (action: string) => events.filter((e) => e.action === action && e.result === 'AUDIT_RESULT_ALLOWED').length;
      return { acquired: ok('Acquire'), released: ok('Release') + ok('LeaseEnded') };
    };
    let seen = await ends();
    for (let i = 0; i < 50 && seen.released < seen.acquired; i++) {
      await new Promise((res) => setTimeout(res, 100));
      seen = await ends();
    }
    expect(seen.acquired).toBeGreaterThanOrEqual(2);
    expect(seen.released).toBe(seen.acquired);
  });
});
