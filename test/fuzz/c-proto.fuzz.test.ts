// libFuzzer (clang -fsanitize=fuzzer,address,undefined) over the native
// protobuf codec of the C client library (test/fuzz/c-proto-fuzz.c), seeded
// with real data-plane packets from the JS codec. No crash, no sanitizer
// report, no leak, the round-trip property holds.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dataReplyCodec, dataRequestCodec } from '../../proto/load';
import { makeTempDir, REPO } from '../support/broker-process';
import { figure, scale } from '../reliability/support';

const RUNS = Number(process.env.SHMBROKER_LIBFUZZER_RUNS ?? scale(300_000, 10_000_000));

describe('C data-plane codec under libFuzzer', () => {
  const dir = makeTempDir('shmbroker-libfuzzer-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`${RUNS} runs: no crash, no sanitizer report, round trips hold`, () => {
    const bin = path.join(dir, 'c-proto-fuzz');
    const build = spawnSync(
      'clang-14',
      ['-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=all', `-I${REPO}/clients/c/src`, `-I${REPO}/clients/c/include`, '-o', bin, path.join(__dirname, 'c-proto-fuzz.c'), path.join(REPO, 'clients/c/src/proto.c')],
      { encoding: 'utf8' },
    );
    expect(build.stderr + build.stdout).toBe('');
    expect(build.status).toBe(0);
    const corpus = path.join(dir, 'corpus');
    fs.mkdirSync(corpus);
    const seeds = [
      dataRequestCodec().encode({ requestId: 1, acquire: { region: 'frames', mode: 'ACCESS_MODE_READ_ONLY' } }),
      dataRequestCodec().encode({ requestId: 2, release: { leaseId: 77 } }),
      dataRequestCodec().encode({ requestId: 3, offer: { region: 'frames', leaseId: 5, mode: 'ACCESS_MODE_READ_WRITE' } }),
      dataReplyCodec().encode({ requestId: 1, acquire: { leaseId: 9, region: 'frames', sizeBytes: 1048576, mode: 'ACCESS_MODE_READ_ONLY', grant: 'regions/frames/grants/1', backend: 'memfd' } }),
      dataReplyCodec().encode({ requestId: 2, error: { code: 7, reason: 'NO_GRANT', message: 'uid 1002 has no grant' } }),
      dataReplyCodec().encode({ requestId: 0, revocation: { leaseId: 9, region: 'frames', reason: 'GRANT_REVOKED', graceMs: 1000 } }),
      dataReplyCodec().encode({ requestId: 4, offer: { accepted: true, leaseId: 9 } }),
      dataReplyCodec().encode({ requestId: 5, release: { leaseId: 9 } }),
    ];
    seeds.forEach((s, i) => fs.writeFileSync(path.join(corpus, `seed-${i}`), s));
    const r = spawnSync(bin, [`-runs=${RUNS}`, '-max_len=4200', `-seed=${Date.now() % 100000}`, '-timeout=10', '-rss_limit_mb=1024', corpus], {
      encoding: 'utf8',
      cwd: dir,
      timeout: 30 * 60_000,
    });
    const tail = r.stderr.trim().split('\n').slice(-3).join(' | ');
    figure('libFuzzer C codec', tail);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`Done ${RUNS} runs`));
    expect(r.stderr).not.toMatch(/ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:/);
  }, 40 * 60_000);
});
