// shmbroker grant create|list|revoke
import type { Command } from 'commander';
import { parseDuration } from '../../service/config';
import { InvalidArgumentError } from '../sdk/errors';
import { parseNonNegativeInt } from './args';
import { formatTime, table, type CliContext } from './context';
import type { Grant__Output } from '../../proto/generated/shmbroker/v1/Grant';

// The shape the control client returns (proto-loader output types, generated at build).
type GrantJson = Grant__Output;

function grantee(g: GrantJson): string {
  switch (g.grantee) {
    case 'gid':
      return `gid:${g.gid}`;
    case 'kubernetesNamespace':
      return `namespace:${g.kubernetesNamespace}`;
    case 'kubernetesServiceAccount':
      return `serviceaccount:${g.kubernetesServiceAccount}`;
    default:
      return `uid:${g.uid}`;
  }
}

function mode(g: GrantJson): string {
  return g.mode === 'ACCESS_MODE_READ_WRITE' ? 'rw' : 'ro';
}

function grantId(g: GrantJson): string {
  return g.name.split('/').pop()!;
}

export function register(program: Command, ctx: CliContext): void {
  const grant = program.command('grant').description('grant, list and revoke access to regions');

  grant
    .command('create <name>')
    .description('grant a uid or a gid access to a region')
    .option('--uid <uid>', 'grant to this user id')
    .option('--gid <gid>', 'grant to this group id')
    .option('--namespace <ns>', 'grant to every pod of this Kubernetes namespace (needs pod identity)')
    .option('--service-account <ns/name>', 'grant to pods running as this Kubernetes service account (needs pod identity)')
    .option('--mode <mode>', 'ro or rw', 'ro')
    .option('--ttl <duration>', 'expire after this long (90s, 5m, 1h, 2d)')
    .action(async (name: string, o: { uid?: string; gid?: string; namespace?: string; serviceAccount?: string; mode: string; ttl?: string }) => {
      const given = [o.uid, o.gid, o.namespace, o.serviceAccount].filter((v) => v !== undefined).length;
      if (given !== 1) {
        throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_GRANTEE', 'give exactly one of --uid, --gid, --namespace and --service-account');
      }
      if (o.mode !== 'ro' && o.mode !== 'rw') {
        throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_MODE', `--mode must be ro or rw, got ${JSON.stringify(o.mode)}`);
      }
      let ttlSeconds = 0;
      if (o.ttl !== undefined) {
        let ms: number;
        try {
          ms = parseDuration(o.ttl);
        } catch (err) {
          throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_TTL', `--ttl: ${(err as Error).message}`);
        }
        if (ms < 1000) throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_TTL', '--ttl must be at least 1s');
        ttlSeconds = Math.ceil(ms / 1000);
      }
      const who =
        o.uid !== undefined
          ? { uid: parseNonNegativeInt('--uid', o.uid) }
          : o.gid !== undefined
            ? { gid: parseNonNegativeInt('--gid', o.gid) }
            : o.namespace !== undefined
              ? { kubernetesNamespace: o.namespace }
              : { kubernetesServiceAccount: o.serviceAccount! };
      const res = await ctx.control().call<{ grant: GrantJson }>('BrokerService', 'CreateGrant', {
        parent: `regions/${name}`,
        grant: { ...who, mode: o.mode === 'rw' ? 'ACCESS_MODE_READ_WRITE' : 'ACCESS_MODE_READ_ONLY' },
        ttlSeconds,
      });
      const g = res.grant;
      ctx.print(g, () => `granted ${mode(g)} on regions/${name} to ${grantee(g)}: grant ${grantId(g)}${g.expireTime ? `, expires ${formatTime(g.expireTime)}` : ''}`);
    });

  grant
    .command('list')
    .description('list grants you can see')
    .option('--region <name>', 'only the grants of this region')
    .action(async (o: { region?: string }) => {
      const all: GrantJson[] = [];
      let pageToken = '';
      do {
        const res = await ctx.control().call<{ grants: GrantJson[]; nextPageToken: string }>('BrokerService', 'ListGrants', {
          parent: o.region ? `regions/${o.region}` : 'regions/-',
          pageSize: 1000,
          pageToken,
        });
        all.push(...res.grants);
        pageToken = res.nextPageToken;
      } while (pageToken);
      ctx.print(all, () =>
        all.length
          ? table(
              ['ID', 'REGION', 'GRANTEE', 'MODE', 'EXPIRES', 'CREATED'],
              all.map((g) => [grantId(g), g.name.split('/')[1]!, grantee(g), mode(g), g.expireTime ? formatTime(g.expireTime) : 'never', formatTime(g.createTime)]),
            )
          : 'no grants',
      );
    });

  grant
    .command('revoke <grant-id>')
    .description('revoke a grant (an id, or regions/NAME/grants/ID)')
    .action(async (id: string) => {
      const name = /^[0-9]+$/.test(id) ? `grants/${id}` : id;
      await ctx.control().call('BrokerService', 'RevokeGrant', { name });
      ctx.print({ name, revoked: true }, () => `revoked ${name}`);
    });
}
