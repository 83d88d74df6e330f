// The CLI's error contract: one line on stderr ending with a reason, a
// non-zero exit (2 for usage, 3 when no broker answers, 1 for everything
// else: the table in README.md), nothing on stdout.
import { describe, expect, it } from 'vitest';
import { BIN, run } from './support/broker-process';

const cli = (args: string[]) => run(process.execPath, [BIN, '--runtime-dir', '/nonexistent/shmbroker', ...args]);

describe('CLI errors', () => {
  const rows: Array<[string[], number, RegExp]> = [
    [['status'], 3, /^shmbroker: cannot reach the broker at \/nonexistent\/shmbroker\/broker\.sock \(is it running\?\) \(BROKER_UNREACHABLE\)\n$/],
    [['region', 'create', 'x'], 2, /^shmbroker: required option '--size <size>' not specified \(USAGE; see --help\)\n$/],
    [['region', 'create', 'x', '--size', '12XB'], 1, /^shmbroker: --size: invalid size unit "XB".* \(INVALID_SIZE\)\n$/],
    [['region', 'create', 'x', '--size', '0'], 1, /^shmbroker: --size must be greater than 0 \(INVALID_SIZE\)\n$/],
    [['region', 'create', 'x', '--size', '4KiB', '--numa', '-1'], 1, /--numa must be an integer .* \(INVALID_NUMBER\)\n$/],
    [['grant', 'create', 'x'], 1, /^shmbroker: give exactly one of --uid, --gid, --namespace and --service-account \(INVALID_GRANTEE\)\n$/],
    [['grant', 'create', 'x', '--uid', '5', '--gid', '5'], 1, /exactly one of --uid, --gid/],
    [['grant', 'create', 'x', '--uid', '5', '--namespace', 'a'], 1, /exactly one of --uid, --gid/],
    [['grant', 'create', 'x', '--uid', '5', '--mode', 'wx'], 1, /--mode must be ro or rw.*\(INVALID_MODE\)\n$/],
    [['grant', 'create', 'x', '--uid', 'root'], 1, /--uid must be an integer.*\(INVALID_NUMBER\)\n$/],
    [['grant', 'create', 'x', '--uid', '5', '--ttl', 'soon'], 1, /--ttl: invalid duration.*\(INVALID_TTL\)\n$/],
    [['-o', 'xml', 'status'], 2, /^shmbroker: option '-o, --output <format>' argument 'xml' is invalid.*\(USAGE; see --help\)\n$/],
    [['bogus'], 2, /^shmbroker: unknown command 'bogus' \(USAGE; see --help\)\n$/],
  ];
  for (const [args, code, stderr] of rows) {
    it(`shmbroker ${args.join(' ')} -> exit ${code}`, async () => {
      const r = await cli(args);
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(stderr);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(r.stdout.length).toBe(0);
    });
  }
});
