// shmbroker audit list|verify|export|watch
import type { Command } from 'commander';
import { parseDuration } from '../../proto/wire';
import { FailedPreconditionError, InvalidArgumentError } from '../sdk/errors';
import { parseNonNegativeInt } from './args';
import { table, type CliContext } from './context';
import { followStream, printStreamed } from './follow-stream';
import { withExamples } from './help';
import type { AuditEvent__Output } from '../../proto/generated/shmbroker/v1/AuditEvent';

interface TimestampJson {
  seconds: number;
  nanos: number;
}

// The shape the control client returns (proto-loader output types, generated at build).
type AuditEventJson = AuditEvent__Output;

/** The event as `audit export` writes it (the shape of the broker's audit records) and text output shows it. */
function eventOut(e: AuditEventJson) {
  const actor: Record<string, unknown> = { pid: e.actor?.pid ?? 0, uid: e.actor?.uid ?? 0, gid: e.actor?.gid ?? 0 };
  if (e.actor?.pod) actor.pod = e.actor.pod;
  const out: Record<string, unknown> = {
    seq: e.seq,
    time: e.time ? new Date(Number(e.time.seconds) * 1000 + Math.floor(e.time.nanos / 1e6)).toISOString() : null,
    actor,
    action: e.action,
    resource: e.resource,
    result: e.result.replace(/^AUDIT_RESULT_/, ''),
  };
  if (e.reason) out.reason = e.reason;
  if (e.detailsJson) out.details = JSON.parse(e.detailsJson) as unknown;
  out.prevHash = e.prevHash;
  out.hash = e.hash;
  return out;
}

function timestampArg(flag: string, text: string): TimestampJson {
  let ms = Date.parse(text);
  if (Number.isNaN(ms) || !/\d{4}-\d\d-\d\d/.test(text)) {
    // Not an RFC 3339 time: a duration back from now ("1h", "7d").
    try {
      ms = Date.now() - parseDuration(text);
    } catch {
      throw new InvalidArgumentError(
        'INVALID_ARGUMENT',
        'INVALID_TIME',
        `${flag} must be an RFC 3339 time (2026-01-31T12:00:00Z) or a duration back from now (90s, 5m, 1h, 2d), got ${JSON.stringify(text)}`,
      );
    }
  }
  return { seconds: Math.floor(ms / 1000), nanos: (((ms % 1000) + 1000) % 1000) * 1e6 };
}

const RESULTS = ['allowed', 'denied', 'error'];

interface FilterOpts {
  region?: string;
  resource?: string;
  since?: string;
  until?: string;
  uid?: string;
  result?: string;
  action?: string;
}

function filterOf(o: FilterOpts): Record<string, unknown> {
  const f: Record<string, unknown> = {};
  if (o.region !== undefined && o.resource !== undefined) {
    throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_FILTER', 'give only one of --region and --resource');
  }
  if (o.region !== undefined) f.resource = `regions/${o.region.replace(/^regions\//, '')}`;
  if (o.resource !== undefined) f.resource = o.resource;
  if (o.since !== undefined) f.startTime = timestampArg('--since', o.since);
  if (o.until !== undefined) f.endTime = timestampArg('--until', o.until);
  if (o.uid !== undefined) f.actorUid = parseNonNegativeInt('--uid', o.uid);
  if (o.result !== undefined) {
    if (!RESULTS.includes(o.result.toLowerCase())) {
      throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_RESULT', `--result must be one of ${RESULTS.join(', ')}`);
    }
    f.result = `AUDIT_RESULT_${o.result.toUpperCase()}`;
  }
  if (o.action !== undefined) f.action = o.action;
  return f;
}

function withFilterOptions(cmd: Command): Command {
  return cmd
    .option('--region <name>', 'events about this region (and its grants)')
    .option('--resource <prefix>', 'events about this resource or below it, by whole path segments (regions/x matches regions/x/grants/1, not regions/xy)')
    .option('--since <time>', 'events at or after this RFC 3339 time, or this long ago (1h, 7d)')
    .option('--until <time>', 'events before this time')
    .option('--uid <uid>', 'events by this uid')
    .option('--result <result>', 'allowed, denied or error')
    .option('--action <action>', 'events of this action (CreateRegion, Acquire, ...)');
}

function oneLine(e: ReturnType<typeof eventOut>): string[] {
  const actor = e.actor as { pid: number; uid: number };
  return [
    String(e.seq),
    String(e.time),
    `uid ${actor.uid} pid ${actor.pid}`,
    String(e.action),
    String(e.resource),
    String(e.result),
    String(e.reason ?? ''),
  ];
}

export function register(program: Command, ctx: CliContext): void {
  const audit = program.command('audit').description('read and verify the tamper-evident audit trail');
  withExamples(audit, [
    ['Denials of the last hour', 'shmbroker audit list --since 1h --result denied'],
    ['Check the hash chain', 'shmbroker audit verify'],
  ]);

  const list = withFilterOptions(audit.command('list'))
    .description('list audit events, oldest first (non-admins see only their own)')
    .option('--limit <n>', 'at most this many events (default 1000)')
    .option('--newest-first', 'newest events first (with --limit: the latest N)')
    .action(async (o: FilterOpts & { limit?: string; newestFirst?: boolean }) => {
      const limit = o.limit === undefined ? 1000 : parseNonNegativeInt('--limit', o.limit, Number.MAX_SAFE_INTEGER);
      const filter = filterOf(o);
      const events: AuditEventJson[] = [];
      let pageToken = '';
      while (events.length < limit) {
        const res = await ctx.control().call<{ events: AuditEventJson[]; nextPageToken: string }>('AuditService', 'ListAuditEvents', {
          filter,
          pageSize: Math.min(1000, limit - events.length),
          pageToken,
          newestFirst: o.newestFirst ?? false,
        });
        events.push(...res.events);
        pageToken = res.nextPageToken;
        if (!pageToken) break;
      }
      // A list cut short by --limit says so: nextPageToken is where it would go on.
      ctx.printMessage('shmbroker.v1.ListAuditEventsResponse', { events, nextPageToken: pageToken }, () => {
        const out = events.map(eventOut);
        return out.length ? table(['SEQ', 'TIME', 'ACTOR', 'ACTION', 'RESOURCE', 'RESULT', 'REASON'], out.map(oneLine)) : 'no events';
      });
    });
  withExamples(list, [
    ['The 20 latest events', 'shmbroker audit list --newest-first --limit 20'],
    ['Who touched frames today', 'shmbroker audit list --region frames --since 1d'],
    ["Uid 1001's denials", 'shmbroker audit list --uid 1001 --result denied'],
  ]);

  const verify = audit
    .command('verify')
    .description('check the hash chain: exit 0 if intact, 1 if any event was edited, deleted, inserted or reordered (admin only)')
    .action(async () => {
      const v = await ctx.control().call<{ ok: boolean; checked: number; problems: Array<{ seq: number; problem: string }> }>(
        'AuditService',
        'VerifyAuditTrail',
        {},
      );
      ctx.printMessage('shmbroker.v1.VerifyAuditTrailResponse', v, () =>
        v.ok
          ? `audit trail intact: ${v.checked} events verified`
          : [`audit trail BROKEN: ${v.problems.length} problem(s) in ${v.checked} events`, ...v.problems.map((p) => `  seq ${p.seq}: ${p.problem}`)].join('\n'),
      );
      if (!v.ok) {
        throw new FailedPreconditionError('FAILED_PRECONDITION', 'AUDIT_TRAIL_TAMPERED', `audit trail verification failed: ${v.problems[0]?.problem ?? 'unknown problem'}`);
      }
    });
  withExamples(verify, [['Exit 0 if the chain is intact', 'shmbroker audit verify']]);

  const exp = withFilterOptions(audit.command('export'))
    .description('write matching events to stdout as JSON lines, oldest first (for archiving before retention prunes them)')
    .action(async (o: FilterOpts) => {
      const filter = filterOf(o);
      let pageToken = '';
      do {
        const res = await ctx.control().call<{ events: AuditEventJson[]; nextPageToken: string }>('AuditService', 'ListAuditEvents', {
          filter,
          pageSize: 1000,
          pageToken,
        });
        const text = res.events.map((e) => `${JSON.stringify(eventOut(e))}\n`).join('');
        if (text && !process.stdout.write(text)) await new Promise((r) => process.stdout.once('drain', r));
        pageToken = res.nextPageToken;
      } while (pageToken);
    });
  withExamples(exp, [['Archive last month before retention prunes it', 'shmbroker audit export --since 30d > audit-$(date +%F).jsonl']]);

  const watch = withFilterOptions(audit.command('watch'))
    .description('print matching events as they happen, until interrupted')
    .option('--after <seq>', 'first print the stored events after this seq (0 for all)')
    .action(async (o: FilterOpts & { after?: string }) => {
      const req: Record<string, unknown> = { filter: filterOf(o) };
      if (o.after !== undefined) req.startAfterSeq = parseNonNegativeInt('--after', o.after, Number.MAX_SAFE_INTEGER);
      await followStream<{ event: AuditEventJson }>(ctx, 'AuditService', 'WatchAuditEvents', req, (r) => {
        printStreamed(ctx, 'shmbroker.v1.AuditEvent', r.event, () => oneLine(eventOut(r.event)).join('  '));
      });
    });
  withExamples(watch, [
    ['Follow denials as they happen', 'shmbroker audit watch --result denied'],
    ['Everything, replaying the stored trail first', 'shmbroker audit watch --after 0 -o json'],
  ]);
}
