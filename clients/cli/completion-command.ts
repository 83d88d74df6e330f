// `shmbroker completion bash|zsh|fish`: shell completion scripts. The
// scripts are thin: they hand the words typed so far to the hidden
// `shmbroker __complete WORDS...`, which walks the same command tree the
// parser uses (so completion never drifts from the commands) and, where an
// argument names a region or a grant, asks the broker for the names the
// caller can see. No broker, or a slow one: no candidates, never an error.
import type { Command, Option } from 'commander';
import { ControlClient } from '../sdk/control-client';
import type { CliContext } from './context';
import { withExamples } from './help';

const SHELLS = ['bash', 'zsh', 'fish'] as const;

const SCRIPTS: Record<(typeof SHELLS)[number], string> = {
  bash: `# shmbroker completion for bash: source <(shmbroker completion bash)
_shmbroker() {
  local IFS=$'\\n'
  COMPREPLY=($(compgen -W "$("\${COMP_WORDS[0]}" __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "\${COMP_WORDS[COMP_CWORD]}"))
}
complete -o default -F _shmbroker shmbroker
`,
  zsh: `#compdef shmbroker
# shmbroker completion for zsh: source <(shmbroker completion zsh) after compinit
_shmbroker() {
  local -a candidates
  candidates=("\${(@f)$(\${words[1]} __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  compadd -a candidates
}
compdef _shmbroker shmbroker
`,
  fish: `# shmbroker completion for fish: shmbroker completion fish | source
function __shmbroker_complete
    set -l words (commandline -opc) (commandline -ct)
    $words[1] __complete $words[2..-1] 2>/dev/null
end
complete -c shmbroker -f -a '(__shmbroker_complete)'
`,
};

export function register(program: Command, _ctx: CliContext): void {
  const cmd = program
    .command('completion <shell>')
    .description(`print a shell completion script (${SHELLS.join(', ')}); region names and grant ids come from the broker`)
    .action((shell: string) => {
      if (!(SHELLS as readonly string[]).includes(shell)) {
        cmd.error(`unknown shell '${shell}' (one of ${SHELLS.join(', ')})`, { exitCode: 2, code: 'commander.invalidArgument' });
      }
      process.stdout.write(SCRIPTS[shell as (typeof SHELLS)[number]]);
    });
  withExamples(cmd, [
    ['Complete in the current bash session', 'source <(shmbroker completion bash)'],
    ['Install for fish', 'shmbroker completion fish > ~/.config/fish/completions/shmbroker.fish'],
  ]);
}

function findOption(cmd: Command, word: string): Option | undefined {
  for (let c: Command | null = cmd; c; c = c.parent) {
    const o = c.options.find((x) => x.long === word || x.short === word);
    if (o) return o;
  }
  return undefined;
}

/**
 * Candidates for the last of `words` (the word being typed, possibly ''),
 * one per line on stdout. Always exits 0.
 */
export async function complete(program: Command, words: string[]): Promise<number> {
  const current = words.length ? words[words.length - 1]! : '';
  let cmd = program;
  let positional = 0;
  let runtimeDir: string | undefined;
  let valueFor: Option | undefined;
  for (const w of words.slice(0, -1)) {
    if (valueFor) {
      if (valueFor.long === '--runtime-dir') runtimeDir = w;
      valueFor = undefined;
    } else if (w.startsWith('-')) {
      const [flag, inline] = w.split('=', 2);
      const o = findOption(cmd, flag!);
      if (o && (o.required || o.optional) && inline === undefined) valueFor = o;
      if (o?.long === '--runtime-dir' && inline !== undefined) runtimeDir = inline;
    } else {
      const sub = cmd.commands.find((c) => c.name() === w || c.aliases().includes(w));
      if (sub && positional === 0) cmd = sub;
      else positional++;
    }
  }
  let out: string[] = [];
  if (valueFor) {
    if (valueFor.argChoices) out = valueFor.argChoices;
    else if (valueFor.long === '--region') out = await regionNames(runtimeDir);
    else if (valueFor.long === '--mode') out = ['ro', 'rw'];
  } else if (current.startsWith('-')) {
    for (let c: Command | null = cmd; c; c = c.parent) {
      for (const o of c.options) if (o.long && !o.hidden) out.push(o.long);
    }
    out.push('--help');
  } else if (cmd.commands.length > 0 && positional === 0) {
    out = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden).map((c) => c.name());
  } else {
    const arg = cmd.registeredArguments[positional]?.name();
    if (arg === 'name') out = await regionNames(runtimeDir);
    else if (arg === 'grant-id') out = await grantIds(runtimeDir);
    else if (arg === 'shell') out = [...SHELLS];
  }
  const matching = out.filter((c) => c.startsWith(current));
  if (matching.length) process.stdout.write(`${matching.join('\n')}\n`);
  return 0;
}

async function fromBroker<T>(runtimeDir: string | undefined, fn: (c: ControlClient) => Promise<T[]>): Promise<T[]> {
  const client = new ControlClient({ runtimeDir, deadlineMs: 1500 });
  try {
    return await fn(client);
  } catch {
    return []; // completion must not fail the shell's prompt
  } finally {
    client.close();
  }
}

function regionNames(runtimeDir: string | undefined): Promise<string[]> {
  return fromBroker(runtimeDir, async (c) => {
    const res = await c.call<{ regions: Array<{ name: string }> }>('BrokerService', 'ListRegions', { pageSize: 1000 });
    return res.regions.map((r) => r.name.replace(/^regions\//, ''));
  });
}

function grantIds(runtimeDir: string | undefined): Promise<string[]> {
  return fromBroker(runtimeDir, async (c) => {
    const res = await c.call<{ grants: Array<{ name: string }> }>('BrokerService', 'ListGrants', { parent: 'regions/-', pageSize: 1000 });
    return res.grants.map((g) => g.name.split('/').pop()!);
  });
}
