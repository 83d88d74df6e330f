// shmbroker quota set|show|list|reset
import type { Command } from 'commander';
import { parseSize } from '../../proto/wire';
import { InvalidArgumentError } from '../sdk/errors';
import { parseNonNegativeInt } from './args';
import { formatBytes, table, type CliContext } from './context';
import { withExamples } from './help';

interface QuotaJson {
  name: string;
  maxBytes?: number;
  maxRegions?: number;
  maxGrantsPerRegion?: number;
  usage: { bytes: number; regions: number } | null;
  explicitlySet: boolean;
}

function subjectOf(o: { uid?: string; gid?: string }, required: boolean): string {
  if (o.uid !== undefined && o.gid !== undefined) {
    throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_SUBJECT', 'give only one of --uid and --gid');
  }
  if (o.uid !== undefined) return `quotas/uid:${parseNonNegativeInt('--uid', o.uid)}`;
  if (o.gid !== undefined) return `quotas/gid:${parseNonNegativeInt('--gid', o.gid)}`;
  if (required) throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_SUBJECT', 'give exactly one of --uid and --gid');
  return `quotas/uid:${process.getuid?.() ?? 0}`;
}

function limitArg(flag: string, text: string, kind: 'size' | 'count'): number | undefined {
  if (text === 'unlimited') return undefined;
  if (kind === 'count') return parseNonNegativeInt(flag, text, Number.MAX_SAFE_INTEGER);
  try {
    return parseSize(text);
  } catch (err) {
    throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_SIZE', `${flag}: ${(err as Error).message}`);
  }
}

function subjectText(name: string): string {
  return name.replace(/^quotas\//, '').replace(':', ' ');
}

function showQuota(q: QuotaJson): string {
  const usage = q.usage ?? { bytes: 0, regions: 0 };
  const lim = (v: number | undefined, f: (n: number) => string = String) => (v === undefined ? 'unlimited' : f(v));
  return [
    `quota:             ${subjectText(q.name)}${q.explicitlySet ? '' : ' (broker default)'}`,
    `bytes:             ${formatBytes(usage.bytes)} of ${lim(q.maxBytes, formatBytes)}`,
    `regions:           ${usage.regions} of ${lim(q.maxRegions)}`,
    `grants per region: ${lim(q.maxGrantsPerRegion)}`,
  ].join('\n');
}

export function register(program: Command, ctx: CliContext): void {
  const quota = program.command('quota').description('set and show quotas (bytes, regions, grants per region) per uid or gid');
  withExamples(quota, [
    ['Give uid 1001 4 GiB in at most 16 regions', 'shmbroker quota set --uid 1001 --bytes 4GiB --regions 16'],
    ['Your own quota and usage', 'shmbroker quota show'],
  ]);

  const set = quota
    .command('set')
    .description('set the quota of a uid or gid (admin only); limits not given stay as they are')
    .option('--uid <uid>', 'the user id')
    .option('--gid <gid>', 'the group id (its members share it)')
    .option('--bytes <size>', 'most bytes of regions (4096, 64KiB, 1MiB, 2GiB, or unlimited)')
    .option('--regions <n>', 'most regions (or unlimited)')
    .option('--grants-per-region <n>', 'most grants on each region the uid owns (or unlimited)')
    .action(async (o: { uid?: string; gid?: string; bytes?: string; regions?: string; grantsPerRegion?: string }) => {
      const name = subjectOf(o, true);
      const q: Record<string, unknown> = { name };
      const paths: string[] = [];
      if (o.bytes !== undefined) {
        paths.push('max_bytes');
        const v = limitArg('--bytes', o.bytes, 'size');
        if (v !== undefined) q.maxBytes = v;
      }
      if (o.regions !== undefined) {
        paths.push('max_regions');
        const v = limitArg('--regions', o.regions, 'count');
        if (v !== undefined) q.maxRegions = v;
      }
      if (o.grantsPerRegion !== undefined) {
        paths.push('max_grants_per_region');
        const v = limitArg('--grants-per-region', o.grantsPerRegion, 'count');
        if (v !== undefined) q.maxGrantsPerRegion = v;
      }
      if (paths.length === 0) {
        throw new InvalidArgumentError('INVALID_ARGUMENT', 'NOTHING_TO_SET', 'give at least one of --bytes, --regions, --grants-per-region');
      }
      const res = await ctx.control().call<QuotaJson>('QuotaService', 'UpdateQuota', { quota: q, updateMask: { paths } });
      ctx.printMessage('shmbroker.v1.Quota', res, () => showQuota(res));
    });
  withExamples(set, [
    ['4 GiB and 16 regions for uid 1001', 'shmbroker quota set --uid 1001 --bytes 4GiB --regions 16'],
    ['Lift the byte limit of group 50', 'shmbroker quota set --gid 50 --bytes unlimited'],
  ]);

  const show = quota
    .command('show')
    .description('show the quota and usage of a uid or gid (default: your own uid)')
    .option('--uid <uid>', 'the user id')
    .option('--gid <gid>', 'the group id')
    .action(async (o: { uid?: string; gid?: string }) => {
      const res = await ctx.control().call<QuotaJson>('QuotaService', 'GetQuota', { name: subjectOf(o, false) });
      ctx.printMessage('shmbroker.v1.Quota', res, () => showQuota(res));
    });
  withExamples(show, [
    ['Your own', 'shmbroker quota show'],
    ['Of uid 1001 (admins, or uid 1001 itself)', 'shmbroker quota show --uid 1001'],
  ]);

  const list = quota
    .command('list')
    .description('list quotas with usage (yours only unless you are an admin)')
    .action(async () => {
      const all: QuotaJson[] = [];
      let pageToken = '';
      do {
        const res = await ctx.control().call<{ quotas: QuotaJson[]; nextPageToken: string }>('QuotaService', 'ListQuotas', { pageSize: 1000, pageToken });
        all.push(...res.quotas);
        pageToken = res.nextPageToken;
      } while (pageToken);
      const lim = (v: number | undefined, f: (n: number) => string = String) => (v === undefined ? 'unlimited' : f(v));
      ctx.printMessage('shmbroker.v1.ListQuotasResponse', { quotas: all, nextPageToken: '' }, () =>
        all.length
          ? table(
              ['SUBJECT', 'BYTES', 'BYTES LIMIT', 'REGIONS', 'REGIONS LIMIT', 'GRANTS/REGION', 'SOURCE'],
              all.map((q) => [
                subjectText(q.name),
                formatBytes(q.usage?.bytes ?? 0),
                lim(q.maxBytes, formatBytes),
                q.usage?.regions ?? 0,
                lim(q.maxRegions),
                lim(q.maxGrantsPerRegion),
                q.explicitlySet ? 'set' : 'default',
              ]),
            )
          : 'no quotas',
      );
    });
  withExamples(list, [['Every quota with its usage (admins see all)', 'shmbroker quota list']]);

  const reset = quota
    .command('reset')
    .description("drop a uid's or gid's own quota so the broker default applies (admin only)")
    .option('--uid <uid>', 'the user id')
    .option('--gid <gid>', 'the group id')
    .action(async (o: { uid?: string; gid?: string }) => {
      const res = await ctx.control().call<QuotaJson>('QuotaService', 'DeleteQuota', { name: subjectOf(o, true) });
      ctx.printMessage('shmbroker.v1.Quota', res, () => showQuota(res));
    });
  withExamples(reset, [['Back to the broker default for uid 1001', 'shmbroker quota reset --uid 1001']]);
}
