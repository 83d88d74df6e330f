// shmbroker region create|list|show|delete|read|write
import { describeOutcome } from './revocation-outcome';
import type { Command } from 'commander';
import { parseSize } from '../../proto/wire';
import { BrokerClient } from '../sdk/broker-client';
import { InvalidArgumentError } from '../sdk/errors';
import * as fs from 'node:fs';
import { formatBytes, formatTime, table, type CliContext } from './context';
import { readStdin, writeStdout } from './stdio';
import { parseNonNegativeInt } from './args';
import { withExamples } from './help';
import { watchRegions } from './region-watch';
import { formatAge, userLabel, userNames } from './humanize';
import type { Region__Output } from '../../proto/generated/shmbroker/v1/Region';

// The shape the control client returns (proto-loader output types, generated at build).
type RegionJson = Region__Output;

/** The default table: AGE and owner names; -o wide adds the uid and the exact creation time. */
function regionRows(regions: RegionJson[], wide: boolean): string {
  const names = userNames(regions.map((r) => r.ownerUid));
  return table(
    ['NAME', 'SIZE', 'OWNER', 'BACKEND', 'STATE', 'AGE', ...(wide ? ['OWNER UID', 'CREATED'] : [])],
    regions.map((r) => [
      r.name.replace(/^regions\//, ''),
      formatBytes(r.sizeBytes),
      userLabel(names, r.ownerUid),
      r.backend + (r.hugepages ? '+hugepages' : ''),
      stateLabel(r),
      formatAge(r.createTime),
      ...(wide ? [r.ownerUid, formatTime(r.createTime)] : []),
    ]),
  );
}

function showRegion(r: RegionJson): string {
  return [
    `name:      ${r.name}`,
    `size:      ${formatBytes(r.sizeBytes)} (${r.sizeBytes} bytes)`,
    `owner:     uid ${r.ownerUid}${ownerName(r.ownerUid)}, gid ${r.ownerGid}`,
    `backend:   ${r.backend}${r.hugepages ? ' (hugepages)' : ''}`,
    `numa node: ${r.numaNode ?? 'any'}`,
    `state:     ${stateLabel(r)}`,
    `leases:    ${r.leaseCount ?? 0}`,
    `created:   ${formatTime(r.createTime)} (${formatAge(r.createTime)} ago)`,
    ...(r.deleteTime ? [`deleted:   ${formatTime(r.deleteTime)} (waiting for its holders; still charged to its owner)`] : []),
  ].join('\n');
}

/** DELETING shows the holders it waits for (issue 16 item 4). */
function stateLabel(r: RegionJson): string {
  const state = r.state.replace('REGION_STATE_', '');
  return state === 'DELETING' ? `DELETING (${r.leaseCount ?? 0} holding)` : state;
}

function ownerName(uid: number): string {
  const name = userNames([uid]).get(uid);
  return name === undefined ? '' : ` (${name})`;
}

export function register(program: Command, ctx: CliContext): void {
  const region = program.command('region').description('create, inspect, delete, read and write regions');
  withExamples(region, [
    ['Create a region, fill it from a file, and read it back', 'shmbroker region create frames --size 1MiB\n  shmbroker region write frames < frame.bin\n  shmbroker region read frames --file copy.bin'],
    ['List the regions you can see', 'shmbroker region list'],
  ]);

  const create = region
    .command('create <name>')
    .description('create a region owned by you')
    .requiredOption('--size <size>', 'size: bytes or IEC (4096, 64KiB, 1MiB, 2GiB)')
    .option('--hugepages', 'back the region with 2 MiB huge pages')
    .option('--numa <node>', 'allocate on this NUMA node')
    .action(async (name: string, o: { size: string; hugepages?: boolean; numa?: string }) => {
      const sizeBytes = parseSizeArg('--size', o.size);
      const region: Record<string, unknown> = { sizeBytes, hugepages: o.hugepages ?? false };
      if (o.numa !== undefined) region.numaNode = parseNonNegativeInt('--numa', o.numa);
      const created = await ctx.control().call<RegionJson>('BrokerService', 'CreateRegion', { regionId: name, region });
      ctx.printMessage('shmbroker.v1.Region', created, () => `created ${created.name} (${formatBytes(created.sizeBytes)}, ${created.backend})`);
    });
  withExamples(create, [
    ['A 1 MiB region named frames', 'shmbroker region create frames --size 1MiB'],
    ['64 MiB on huge pages, on NUMA node 0', 'shmbroker region create tensors --size 64MiB --hugepages --numa 0'],
  ]);

  const list = region
    .command('list')
    .description('list the regions you can see')
    .option('-w, --watch', 'then print every change to regions and grants as it happens, until interrupted')
    .option('--resource-version <v>', 'with --watch: only the changes after this version (from an earlier event)')
    .option('--filter <expr>', 'only regions matching this AIP-160 filter, e.g. \'owner_uid = 1001 AND state = ACTIVE\'')
    .action(async (o: { watch?: boolean; resourceVersion?: string; filter?: string }) => {
      if (o.watch) {
        if (o.filter !== undefined) throw new InvalidArgumentError('INVALID_ARGUMENT', 'USAGE', '--filter does not apply to --watch, which shows every change you may see (USAGE; see --help)');
        return watchRegions(ctx, o.resourceVersion);
      }
      const all: RegionJson[] = [];
      let pageToken = '';
      do {
        const res = await ctx.control().call<{ regions: RegionJson[]; nextPageToken: string }>('BrokerService', 'ListRegions', { pageSize: 1000, pageToken, filter: o.filter ?? '' });
        all.push(...res.regions);
        pageToken = res.nextPageToken;
      } while (pageToken);
      ctx.printMessage('shmbroker.v1.ListRegionsResponse', { regions: all, nextPageToken: '' }, () => (all.length ? regionRows(all, ctx.wide()) : 'no regions'));
    });
  withExamples(list, [
    ['Names, sizes, owners and ages', 'shmbroker region list'],
    ['With owner uids and exact creation times', 'shmbroker region list -o wide'],
    ['As JSON, for scripts', 'shmbroker region list -o json'],
    ['Yours, by name prefix', 'shmbroker region list --filter \'name = "regions/team-a.*" AND state = ACTIVE\''],
    ['Follow creations, deletions, grants and revocations', 'shmbroker region list --watch'],
  ]);

  const show = region
    .command('show <name>')
    .alias('get')
    .description('show one region')
    .action(async (name: string) => {
      const r = await ctx.control().call<RegionJson>('BrokerService', 'GetRegion', { name: `regions/${name}` });
      ctx.printMessage('shmbroker.v1.Region', r, () => showRegion(r));
    });
  withExamples(show, [['One region in full', 'shmbroker region show frames']]);

  const del = region
    .command('delete <name>')
    .description('delete a region: clients are notified, then cut off, then the memory is freed')
    .action(async (name: string) => {
      const r = await ctx.control().call<RegionJson>('BrokerService', 'DeleteRegion', { name: `regions/${name}` });
      ctx.printMessage('shmbroker.v1.Region', r, () => `deleted regions/${name}${describeOutcome(r, true)}`);
    });
  withExamples(del, [['Delete frames (holders are notified first)', 'shmbroker region delete frames']]);

  const write = region
    .command('write <name>')
    .description('copy stdin into the region through the data plane, as the calling uid')
    .option('--offset <n>', 'byte offset to start at', '0')
    .action(async (name: string, o: { offset: string }) => {
      const offset = parseSizeArg('--offset', o.offset, true);
      const data = await readStdin();
      const client = await BrokerClient.connect({ runtimeDir: ctx.runtimeDir(), reconnect: false });
      try {
        const r = await client.acquire(name, { mode: 'rw' });
        try {
          if (offset + data.length > r.size) {
            throw new InvalidArgumentError(
              'INVALID_ARGUMENT',
              'OUT_OF_RANGE',
              `${data.length} bytes at offset ${offset} do not fit in region ${name} of ${r.size} bytes`,
            );
          }
          new Uint8Array(r.buffer).set(data, offset);
        } finally {
          await r.release();
          await client.drain(); // the release packet on its way, before close() (see BrokerClient.drain)
        }
        ctx.print({ name: `regions/${name}`, offset, bytesWritten: data.length }, () => (process.stdout.isTTY ? `wrote ${data.length} bytes` : ''));
      } finally {
        client.close();
      }
    });
  withExamples(write, [
    ['Fill frames from a file', 'shmbroker region write frames < frame.bin'],
    ['Write a string at byte 4096', "printf 'hello' | shmbroker region write frames --offset 4KiB"],
  ]);

  const read = region
    .command('read <name>')
    .description('copy the region (or a part) to stdout (or --file) through the data plane, as the calling uid')
    .option('--offset <n>', 'byte offset to start at', '0')
    .option('--length <n>', 'bytes to read (default: to the end)')
    .option('--file <path>', "write to this file instead of stdout ('-': stdout, even a terminal)")
    .action(async (name: string, o: { offset: string; length?: string; file?: string }) => {
      const offset = parseSizeArg('--offset', o.offset, true);
      // Raw bytes on a terminal garble it (curl refuses the same way); checked before the broker is asked.
      if (o.file === undefined && ctx.format() === 'text' && process.stdout.isTTY) {
        throw new InvalidArgumentError(
          'INVALID_ARGUMENT',
          'BINARY_TO_TERMINAL',
          'refusing to write raw region bytes to a terminal: redirect or pipe stdout, or give --file PATH (--file - to insist)',
        );
      }
      const client = await BrokerClient.connect({ runtimeDir: ctx.runtimeDir(), reconnect: false });
      try {
        const r = await client.acquire(name, { mode: 'ro' });
        let bytes: Buffer;
        try {
          const length = o.length === undefined ? r.size - offset : parseSizeArg('--length', o.length, true);
          if (offset > r.size || length < 0 || offset + length > r.size) {
            throw new InvalidArgumentError('INVALID_ARGUMENT', 'OUT_OF_RANGE', `offset ${offset} + length ${length} is beyond region ${name} of ${r.size} bytes`);
          }
          // Copy out before release: the mapping goes away with it.
          bytes = Buffer.from(new Uint8Array(r.buffer, offset, length));
        } finally {
          await r.release();
          await client.drain(); // the release packet on its way, before close() (see BrokerClient.drain)
        }
        if (ctx.format() !== 'text') ctx.print({ name: `regions/${name}`, offset, length: bytes.length, base64: bytes.toString('base64') }, () => '');
        else if (o.file !== undefined && o.file !== '-') fs.writeFileSync(o.file, bytes);
        else await writeStdout(bytes);
      } finally {
        client.close();
      }
    });
  withExamples(read, [
    ['Copy frames into a file', 'shmbroker region read frames --file frame.bin'],
    ['The first 16 bytes, as hex', 'shmbroker region read frames --length 16 | xxd'],
    ['As base64 in JSON', 'shmbroker region read frames --length 64 -o json'],
  ]);
}

export function parseSizeArg(flag: string, text: string, allowZero = false): number {
  let n: number;
  try {
    n = parseSize(text);
  } catch (err) {
    throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_SIZE', `${flag}: ${(err as Error).message}`);
  }
  if (!allowZero && n === 0) throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_SIZE', `${flag} must be greater than 0`);
  return n;
}
