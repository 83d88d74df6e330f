// shmbroker status: is the broker up, which backend, what it guarantees.
import type { Command } from 'commander';
import { formatBytes, type CliContext } from './context';
import { withExamples } from './help';

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('status')
    .description('show the broker: backend, guarantees, counts (exit 0 when it answers)')
    .action(async () => {
      const s = await ctx.control().call<Record<string, any>>('BrokerService', 'GetStatus', {});
      const yes = (b: boolean): string => (b ? 'yes' : 'NO');
      ctx.printMessage('shmbroker.v1.GetStatusResponse', s, () =>
        [
          `broker:              serving (version ${s.version}, up ${s.uptimeSeconds}s)`,
          `runtime dir:         ${ctx.runtimeDir()}`,
          `backend:             ${s.backend}`,
          `read-only enforced:  ${yes(s.readOnlyEnforced)}`,
          `revocation enforced: ${yes(s.revocationEnforced)}`,
          `restart survival:    ${yes(s.restartSurvival)}`,
          ...(s.limitations as string[]).map((l, i) => `${i === 0 ? 'limitations:         ' : '                     '}- ${l}`),
          `regions:             ${s.regionCount} (${formatBytes(Number(s.regionBytes))})`,
          `region ceiling:      ${Number(s.regionCeiling) > 0 ? `${s.regionCeiling} (${s.regionCeilingSource})` : `none known (RLIMIT_NOFILE ${s.fdLimit})`}`,
          `grants:              ${s.grantCount}`,
          `data connections:    ${s.dataConnections}`,
          `state disk free:     ${formatBytes(Number(s.stateFreeBytes ?? 0))}${Number(s.stateLowWaterBytes ?? 0) > 0 ? ` (low-water mark ${formatBytes(Number(s.stateLowWaterBytes))}${s.stateLowSpace ? ': LOW, only admins are served' : ''})` : ''}`,
          `you:                 uid ${s.callerUid}${s.callerIsAdmin ? ' (admin)' : ''}`,
        ].join('\n'),
      );
    });  withExamples(cmd, [
    ['Is the broker up, and what does its backend promise?', 'shmbroker status'],
    ['In a script: exit 3 means no broker answers', 'shmbroker status -o json > /dev/null; echo $?'],
  ]);
}
