// bin/shmbroker: `serve` and every admin command (docs/ARCHITECTURE.md,
// command line). Errors go to stderr as one line with the broker's reason,
// and the exit code is non-zero (the table is in exit-codes.ts and README.md).
import { Command, CommanderError, Option } from 'commander';
import { ShmbrokerError } from '../sdk/errors';
import * as completionCommand from './completion-command';
import { createContext } from './context';
import { EXIT, exitCodeFor } from './exit-codes';
import * as grantCommands from './grant-commands';
import { configureHelp, withExamples } from './help';
import * as regionCommands from './region-commands';
import * as serveCommand from './serve-command';
import * as statusCommand from './status-command';
import { endQuietlyOnClosedStdout, isClosedPipe } from './stdio';
import * as versionCommand from './version-command';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('shmbroker');
  program
    .description('shared-memory regions for local processes: a broker and its admin commands')
    .option('--runtime-dir <dir>', 'broker runtime directory (default: $SHMBROKER_RUNTIME_DIR, else /run/shmbroker)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'wide', 'json', 'yaml']).default('text'))
    .exitOverride();
  const ctx = createContext(program);
  endQuietlyOnClosedStdout();
  versionCommand.register(program, ctx);

  serveCommand.register(program, ctx);
  statusCommand.register(program, ctx);
  regionCommands.register(program, ctx);
  grantCommands.register(program, ctx);
  for (const optional of ['./quota-commands', './audit-commands', './config-commands', './state-commands']) {
    let mod: { register?: typeof regionCommands.register } | undefined;
    try {
      mod = require(optional) as typeof mod;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    }
    mod?.register?.(program, ctx);
  }
  completionCommand.register(program, ctx);
  withExamples(program, [
    ['Is a broker running, and on which backend?', 'shmbroker status'],
    ['Share 1 MiB with uid 1001, read-only', 'shmbroker region create frames --size 1MiB\n  shmbroker grant create frames --uid 1001'],
    ['The help of one command', 'shmbroker help region create'],
  ]);
  configureHelp(program);
  // Every subcommand accepts -o/--runtime-dir after its own name too.
  // Usage errors too are one line on stderr (the contract), pointing at
  // --help; Commander's "(Did you mean region?)" second line is kept on it.
  const oneLine = {
    outputError: (str: string, write: (s: string) => void) =>
      write(`shmbroker: ${str.replace(/^error: /, '').split('\n').map((l) => l.trim()).filter(Boolean).join(' ').replace('(Did you mean', '(did you mean')} (USAGE; see --help)\n`),
  };
  program.configureOutput(oneLine);
  for (const cmd of allCommands(program)) cmd.exitOverride().configureOutput(oneLine);

  // The shell completion scripts call this hidden entry (completion-command.ts).
  if (argv[0] === '__complete') return completionCommand.complete(program, argv.slice(1));

  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if (isClosedPipe(err)) return EXIT.OK; // `... | head`: the reader has what it wanted, like cat
    process.stderr.write(`shmbroker: ${describe(err)}\n`);
    return exitCodeFor(err);
  } finally {
    ctx.close();
  }
}

function allCommands(c: Command): Command[] {
  return c.commands.flatMap((sub) => [sub, ...allCommands(sub)]);
}

function describe(err: unknown): string {
  if (err instanceof ShmbrokerError) return `${err.message} (${err.reason})`;
  if (err && typeof err === 'object' && 'reason' in err && 'message' in err) {
    return `${String((err as { message: unknown }).message)} (${String((err as { reason: unknown }).reason)})`;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!;
}
