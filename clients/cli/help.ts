// Help habits operators expect from kubectl and friends: an "Examples:"
// block in every command's help, required options marked in the option list,
// and `shmbroker help region create` showing that command's own help
// (Commander's built-in help command looks only one level down).
import { Command, Help, type Option } from 'commander';

/** One example: a comment saying what it does, and the command line. */
export type Example = [what: string, commandLine: string];

/** Appends a kubectl-style Examples: block to `cmd`'s help. */
export function withExamples(cmd: Command, examples: Example[]): Command {
  const text = examples.map(([what, line]) => `  # ${what}\n  ${line}`).join('\n\n');
  return cmd.addHelpText('after', `\nExamples:\n${text}\n`);
}

/** Help whose option list says "(required)" after each mandatory option. */
class MarkedHelp extends Help {
  override optionDescription(option: Option): string {
    const base = super.optionDescription(option);
    return option.mandatory ? `${base} (required)` : base;
  }
}

/** Applies the help conventions to `program` and every command below it. */
export function configureHelp(program: Command): void {
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const c of all(program)) c.createHelp = () => Object.assign(new MarkedHelp(), c.configureHelp());
  // Replace the built-in top-level help command with one that follows the
  // whole path: `help region create` -> the help of `region create`.
  program.helpCommand(false);
  const help = program
    .command('help [command...]')
    .description('show the help of a command, e.g. `help region create`')
    .action((words: string[]) => {
      let cmd: Command = program;
      for (const w of words) {
        const next = cmd.commands.find((c) => c.name() === w || c.aliases().includes(w));
        if (!next) {
          const known = cmd.commands.map((c) => c.name()).filter((n) => n !== 'help');
          cmd.error(`unknown command '${[...pathOf(cmd), w].join(' ')}' (commands here: ${known.join(', ')})`, { exitCode: 2, code: 'commander.unknownCommand' });
        }
        cmd = next!;
      }
      cmd.outputHelp();
    });
  withExamples(help, [
    ['Show the options of region create', 'shmbroker help region create'],
    ['The same', 'shmbroker region create --help'],
  ]);
}

function pathOf(cmd: Command): string[] {
  const out: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) out.unshift(c.name());
  return out;
}
