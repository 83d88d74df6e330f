// `shmbroker --version` / `-V` (one line, no broker needed) and
// `shmbroker version` (client, API, addon and kernel module builds, plus the
// running broker's version and backend when one answers), like
// `kubectl version`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import type { CliContext } from './context';
import { withExamples } from './help';

export interface ClientVersion {
  /** The package version (package.json): the CLI, SDK and broker ship together. */
  version: string;
  /** Control- and data-plane API versions this client speaks (proto packages). */
  apiVersions: string[];
  node: string;
  /** The native addon: N-API version of this Node and the addon file, when built. */
  addon: { napi: string; file: string | null };
  /** The kernel module loaded on this host (/sys/module/shmbroker), if any. */
  kmod: { version: string; srcversion: string } | null;
}

function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && fs.existsSync(path.join(dir, 'proto', 'shmbroker'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`cannot find the shmbroker package above ${__dirname}`);
  }
}

function readTrimmed(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

export function clientVersion(): ClientVersion {
  const root = packageRoot();
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const apiVersions = fs
    .readdirSync(path.join(root, 'proto', 'shmbroker'), { withFileTypes: true })
    .filter((e) => e.isDirectory() && /^v\d+/.test(e.name))
    .map((e) => `shmbroker.${e.name}`)
    .sort();
  const addonFile = path.join(root, 'build', 'Release', 'shmbroker_native.node');
  const kmodVersion = readTrimmed('/sys/module/shmbroker/version');
  return {
    version: pkg.version,
    apiVersions,
    node: process.version,
    addon: { napi: process.versions.napi ?? 'unknown', file: fs.existsSync(addonFile) ? path.relative(root, addonFile) : null },
    kmod: kmodVersion === null ? null : { version: kmodVersion, srcversion: readTrimmed('/sys/module/shmbroker/srcversion') ?? '' },
  };
}

/** The one line `--version` prints. */
export function versionLine(v: ClientVersion = clientVersion()): string {
  const kmod = v.kmod ? `kmod ${v.kmod.version}` : 'kmod not loaded';
  return `shmbroker ${v.version} (api ${v.apiVersions.join(', ')}; addon N-API ${v.addon.napi}${v.addon.file ? '' : ' NOT BUILT'}; ${kmod}; node ${v.node})`;
}

export function register(program: Command, ctx: CliContext): void {
  program.version(versionLine(), '-V, --version', 'print the version (client, API, addon, kernel module) and exit');
  const cmd = program
    .command('version')
    .description("print the client's versions and, when a broker answers, the broker's version and backend")
    .action(async () => {
      const client = clientVersion();
      let server: { version: string; backend: string } | { unreachable: string };
      try {
        // GetStatus answers any local uid; a short deadline keeps `version` quick with no broker.
        const s = await ctx.control().call<{ version: string; backend: string }>('BrokerService', 'GetStatus', {});
        server = { version: s.version, backend: s.backend };
      } catch (err) {
        server = { unreachable: (err as Error).message };
      }
      ctx.print({ client, server }, () =>
        [
          `client:         ${client.version}`,
          `api:            ${client.apiVersions.join(', ')}`,
          `addon:          ${client.addon.file ?? 'NOT BUILT'} (N-API ${client.addon.napi}, node ${client.node})`,
          `kernel module:  ${client.kmod ? `${client.kmod.version} (srcversion ${client.kmod.srcversion})` : 'not loaded'}`,
          'unreachable' in server ? `broker:         unreachable: ${server.unreachable}` : `broker:         ${server.version} (backend ${server.backend})`,
        ].join('\n'),
      );
    });
  withExamples(cmd, [
    ['One line, without asking the broker', 'shmbroker --version'],
    ['Client and broker versions as JSON', 'shmbroker version -o json'],
  ]);
}
