// shmbroker grant create|list|revoke
import { describeOutcome } from './revocation-outcome';
import type { Command } from 'commander';
import { fromAccessMode, parseDuration, parseGrantMode, toAccessMode } from '../../proto/wire';
import { InvalidArgumentError } from '../sdk/errors';
import { parseNonNegativeInt } from './args';
import { formatTime, table, type CliContext } from './context';
import { withExamples } from './help';
import { formatAge, formatTimeLeft, userLabel, userNames } from './humanize';
import type { Grant__Output } from '../../proto/generated/shmbroker/v1/Grant';

// The shape the control client returns (proto-loader output types, generated at build).
type GrantJson = Grant__Output;

function grantee(g: GrantJson, names?: Map<number, string>): string {
  switch (g.grantee) {
    case 'gid':
      return `gid:${g.gid}`;
    case 'kubernetesNamespace':
      return `namespace:${g.kubernetesNamespace}`;
    case 'kubernetesServiceAccount':
      return `serviceaccount:${g.kubernetesServiceAccount}`;
    default:
      return g.uid !== undefined && names?.has(g.uid) ? `uid:${g.uid}(${userLabel(names, g.uid)})` : `uid:${g.uid}`;
  }
}

function mode(g: GrantJson): string {
  return fromAccessMode(g.mode) ?? 'ro';
}

function grantId(g: GrantJson): string {
  return g.name.split('/').pop()!;
}

export function register(program: Command, ctx: CliContext): void {
  const grant = program.command('grant').description('grant, list and revoke access to regions');
  withExamples(grant, [
    ['Let uid 1001 read frames for an hour', 'shmbroker grant create frames --uid 1001 --ttl 1h'],
    ['List and revoke', 'shmbroker grant list --region frames\n  shmbroker grant revoke 7'],
  ]);

  const create = grant
    .command('create <name>')
    .description('grant a uid or a gid access to a region')
    .option('--uid <uid>', 'grant to this user id')
    .option('--gid <gid>', 'grant to this group id')
    .option('--namespace <ns>', 'grant to every pod of this Kubernetes namespace (needs pod identity)')
    .option('--service-account <ns/name>', 'grant to pods running as this Kubernetes service account (needs pod identity)')
    .option('--mode <mode>', 'ro or rw', 'ro')
    .option('--ttl <duration>', 'expire after this long: 90s, 5m, 1h, 2d (a bare number is seconds)')
    .option('--allow-notify', 'read-only holders may also ring the region\'s doorbell (read-write ones always may)')
    .action(async (name: string, o: { uid?: string; gid?: string; namespace?: string; serviceAccount?: string; mode: string; ttl?: string; allowNotify?: boolean }) => {
      const given = [o.uid, o.gid, o.namespace, o.serviceAccount].filter((v) => v !== undefined).length;
      if (given !== 1) {
        throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_GRANTEE', 'give exactly one of --uid, --gid, --namespace and --service-account');
      }
      const grantMode = parseGrantMode(o.mode);
      if (!grantMode) {
        throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_MODE', `--mode must be ro or rw, got ${JSON.stringify(o.mode)}`);
      }
      const ttlSeconds = o.ttl === undefined ? 0 : ttlArg(o.ttl);
      const who =
        o.uid !== undefined
          ? { uid: parseNonNegativeInt('--uid', o.uid) }
          : o.gid !== undefined
            ? { gid: parseNonNegativeInt('--gid', o.gid) }
            : o.namespace !== undefined
              ? { kubernetesNamespace: o.namespace }
              : { kubernetesServiceAccount: o.serviceAccount! };
      const g = await ctx.control().call<GrantJson>('BrokerService', 'CreateGrant', {
        parent: `regions/${name}`,
        grant: { ...who, mode: toAccessMode(grantMode), ...(ttlSeconds ? { ttl: { seconds: ttlSeconds } } : {}), ...(o.allowNotify ? { allowNotify: true } : {}) },
      });
      ctx.printMessage('shmbroker.v1.Grant', g, () => `granted ${mode(g)} on regions/${name} to ${grantee(g)}: grant ${grantId(g)}${g.expireTime ? `, expires ${formatTime(g.expireTime)}` : ''}`);
    });
  withExamples(create, [
    ['Read-only for uid 1001', 'shmbroker grant create frames --uid 1001'],
    ['Read-write for group 50, for 90 seconds', 'shmbroker grant create frames --gid 50 --mode rw --ttl 90'],
    ['Every pod of a Kubernetes namespace (pod identity on)', 'shmbroker grant create frames --namespace team-a'],
  ]);

  const list = grant
    .command('list')
    .description('list grants you can see')
    .option('--region <name>', 'only the grants of this region')
    .option('--filter <expr>', 'only grants matching this AIP-160 filter, e.g. \'uid = 1002 AND mode = READ_WRITE\'')
    .action(async (o: { region?: string; filter?: string }) => {
      const all: GrantJson[] = [];
      let pageToken = '';
      do {
        const res = await ctx.control().call<{ grants: GrantJson[]; nextPageToken: string }>('BrokerService', 'ListGrants', {
          parent: o.region ? `regions/${o.region}` : 'regions/-',
          pageSize: 1000,
          pageToken,
          filter: o.filter ?? '',
        });
        all.push(...res.grants);
        pageToken = res.nextPageToken;
      } while (pageToken);
      ctx.printMessage('shmbroker.v1.ListGrantsResponse', { grants: all, nextPageToken: '' }, () =>
        all.length
          ? grantRows(all, ctx.wide())
          : 'no grants',
      );
    });
  withExamples(list, [
    ['Every grant you can see', 'shmbroker grant list'],
    ['The grants of one region, with exact times', 'shmbroker grant list --region frames -o wide'],
    ['Read-write grants that expire before a date', 'shmbroker grant list --filter \'mode = READ_WRITE AND expire_time < "2027-01-01T00:00:00Z"\''],
  ]);

  const revoke = grant
    .command('revoke <grant-id>')
    .description('revoke a grant (an id, or regions/NAME/grants/ID)')
    .action(async (id: string) => {
      const name = /^[0-9]+$/.test(id) ? `grants/${id}` : id;
      const g = await ctx.control().call<GrantJson>('BrokerService', 'RevokeGrant', { name });
      ctx.printMessage('shmbroker.v1.Grant', g, () => `revoked ${g.name}${describeOutcome(g)}`);
    });
  withExamples(revoke, [
    ['By id, as grant list shows it', 'shmbroker grant revoke 7'],
    ['By resource name', 'shmbroker grant revoke regions/frames/grants/7'],
  ]);
}

/** The default table: EXPIRES as time left, AGE; -o wide adds the exact times. */
function grantRows(all: GrantJson[], wide: boolean): string {
  const names = userNames(all.flatMap((g) => (g.grantee === 'uid' && g.uid !== undefined ? [g.uid] : [])));
  return table(
    ['ID', 'REGION', 'GRANTEE', 'MODE', 'EXPIRES', 'AGE', ...(wide ? ['EXPIRE TIME', 'CREATED'] : [])],
    all.map((g) => [
      grantId(g),
      g.name.split('/')[1]!,
      grantee(g, names),
      mode(g),
      formatTimeLeft(g.expireTime),
      formatAge(g.createTime),
      ...(wide ? [g.expireTime ? formatTime(g.expireTime) : 'never', formatTime(g.createTime)] : []),
    ]),
  );
}

/**
 * --ttl in whole seconds. A bare number is seconds (the field is
 * ttl_seconds, and `--ttl 60` meaning 60 ms surprised everyone); with a unit
 * it is a duration (90s, 5m, 1h30m, 2d).
 */
export function ttlArg(text: string): number {
  if (/^\d+$/.test(text.trim())) {
    const s = Number(text);
    if (s < 1) throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_TTL', '--ttl must be at least 1 second');
    return s;
  }
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_TTL', `--ttl: ${(err as Error).message}`);
  }
  if (ms < 1000) throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_TTL', '--ttl must be at least 1s');
  return Math.ceil(ms / 1000);
}
