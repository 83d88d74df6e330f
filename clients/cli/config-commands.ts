// shmbroker config check FILE: the broker's own loader, run offline. Exit 0
// when the file would start a broker, 78 (EX_CONFIG) with every problem on
// its own line otherwise. Like `serve`, it loads the broker's entry point by
// path (clients do not import service/).
import type { Command } from 'commander';
import type { CliContext } from './context';
import { InvalidArgumentError } from '../sdk/errors';
import { withExamples } from './help';
import { BROKER_ENTRY_POINT } from './serve-command';

interface ConfigCheck {
  file: string;
  ok: boolean;
  problems: Array<{ line: number; field: string; message: string; text: string }>;
}

export function register(program: Command, ctx: CliContext): void {
  const config = program.command('config').description('check configuration files');
  withExamples(config, [['Check a file before a reload', 'shmbroker config check /etc/shmbroker/broker.yaml && sudo systemctl reload shmbroker']]);
  const check = config
    .command('check <file>')
    .description('check a configuration file: exit 0 if the broker would accept it, 78 with every problem on its own line otherwise')
    .action((file: string) => {
      const { checkConfigFile } = require(BROKER_ENTRY_POINT) as { checkConfigFile(f: string): ConfigCheck };
      const r = checkConfigFile(file);
      if (ctx.format() === 'json') ctx.print(r, () => '');
      else if (r.ok) process.stdout.write(`${file}: ok\n`);
      else process.stderr.write(r.problems.map((p) => `${p.text}\n`).join(''));
      // The summary is the error line (exit 78: exit-codes.ts maps INVALID_CONFIG).
      if (!r.ok) throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_CONFIG', `${file}: ${r.problems.length} problem(s)`);
    });
  withExamples(check, [
    ['Check the installed file', 'shmbroker config check /etc/shmbroker/broker.yaml'],
    ['As JSON (problems with line and field)', 'shmbroker config check broker.yaml -o json'],
  ]);
}
