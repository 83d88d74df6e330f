// shmbroker state backup DIR: an online, verified copy of the broker's state
// (service/store/backup.ts). Run as the broker's uid on its host: it reads
// the state directory directly, so it works whether or not the broker runs.
import type { Command } from 'commander';
import type { CliContext } from './context';
import { withExamples } from './help';
import { BROKER_ENTRY_POINT } from './serve-command';

interface BrokerState {
  defaultStateDir(): string;
  VERSION: string;
  backupState(stateDir: string, dest: string, version: string): Promise<{
    dir: string;
    files: Array<{ name: string; bytes: number; sha256: string }>;
    auditEvents: number;
    regions: number;
  }>;
}

export function register(program: Command, ctx: CliContext): void {
  const state = program.command('state').description("back up the broker's state (restore: deploy/README.md)");
  withExamples(state, [['A dated backup', 'shmbroker state backup /var/backups/shmbroker/$(date +%F)']]);
  const backup = state
    .command('backup <dir>')
    .description('copy the state database (online), the audit key and anchor into an empty DIR, and verify the copy')
    .option('--state-dir <dir>', 'the state directory (default /var/lib/shmbroker, as `serve`)')
    .action(async (dir: string, o: { stateDir?: string }) => {
      const broker = require(BROKER_ENTRY_POINT) as BrokerState;
      const r = await broker.backupState(o.stateDir ?? broker.defaultStateDir(), dir, broker.VERSION);
      ctx.print(r, () =>
        [
          `backed up to ${r.dir}: ${r.regions} regions, ${r.auditEvents} audit events verified`,
          ...r.files.map((f) => `  ${f.name.padEnd(14)} ${String(f.bytes).padStart(10)} bytes  sha256 ${f.sha256}`),
        ].join('\n'),
      );
    });
  withExamples(backup, [
    ['Back up the running broker', 'sudo shmbroker state backup /var/backups/shmbroker/$(date +%F)'],
    ['Another state directory', 'shmbroker state backup ./bk --state-dir ~/.local/state/shmbroker'],
  ]);
}
