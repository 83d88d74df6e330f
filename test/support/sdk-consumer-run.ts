// Runs the compiled test/fixtures/sdk-consumer.ts as uid 1001 against a
// broker, with a 4 KiB region granted rw, and checks what it reports. One
// home for the fixture's expected output: test/sdk-consumer.test.ts runs it
// against the repository's build, test/sdk-package.test.ts against the
// packed SDK installed into an empty project.
import { expect } from 'vitest';
import { type BrokerProcess, run } from './broker-process';

export async function expectConsumerRuns(broker: BrokerProcess, program: string, region = 'consumer'): Promise<void> {
  expect((await broker.cli(['region', 'create', region, '--size', '4KiB'])).code).toBe(0);
  expect((await broker.cli(['grant', 'create', region, '--uid', '1001', '--mode', 'rw'])).code).toBe(0);
  const r = await run(process.execPath, [program, broker.runtimeDir, region], { uid: 1001, gid: 1001 });
  expect(r.stderr).toBe('');
  expect(JSON.parse(r.stdout.toString())).toEqual({
    insideByteLength: 4096,
    releasedAfterBlock: true,
    bufferAfterBlock: 0,
    abortedBefore: 'changed my mind',
    timeout0: 'TimeoutError',
    missing: 'REGION_NOT_FOUND',
    readBack: 7,
  });
}
