// shmbroker serve: the command line of the broker. The broker itself is not
// part of the clients: it is loaded at run time through its documented entry
// point, service/index.ts (docs/ARCHITECTURE.md, "Entry points"), by path,
// so nothing under clients/ imports service/ (test/layering.test.ts).
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import type { CliContext } from './context';
import { withExamples } from './help';

export interface ServeCommandOptions {
  stateDir?: string;
  backend: string;
  config?: string;
  metricsAddr?: string;
  auditSync?: 'batch' | 'strict';
  logLevel?: string;
  printConfig?: boolean;
}

/** The part of the broker's entry point this command uses. */
interface BrokerEntryPoint {
  serve(options: ServeCommandOptions, runtimeDir: string): Promise<void>;
}

/** service/index.js beside clients/ in this checkout (or installed broker package). */
export const BROKER_ENTRY_POINT = path.join(__dirname, '..', '..', 'service', 'index');

export function register(program: Command, ctx: CliContext): void {
  const serveCmd = program
    .command('serve')
    .description('run the broker')
    .option('--state-dir <dir>', 'state directory (default /var/lib/shmbroker)')
    .addOption(new Option('--backend <backend>', 'where regions live').choices(['auto', 'kmod', 'memfd']).default('auto'))
    .option('--config <file>', 'configuration file (YAML or JSON)')
    .option('--metrics-addr <host:port>', 'serve Prometheus metrics (and /healthz, /readyz) here')
    .addOption(
      new Option('--audit-sync <mode>', 'audit group commit: batch (events on disk within audit.windowMs) or strict (every change waits for its event on disk); overrides audit.sync').choices(['batch', 'strict']),
    )
    .addOption(new Option('--log-level <level>', 'log level (overrides the logLevel key and $SHMBROKER_LOG_LEVEL)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .option('--print-config', 'print the effective configuration (file, defaults and flags) as YAML and exit')
    .action(async (o: ServeCommandOptions) => {
      // Loaded on demand: admin commands should not pay for the whole broker at start-up.
      const broker = require(BROKER_ENTRY_POINT) as BrokerEntryPoint;
      await broker.serve(o, ctx.runtimeDir());
    });
  withExamples(serveCmd, [
    ['Run the broker (as root) on the memfd backend', 'shmbroker serve --backend memfd'],
    ['With a configuration file and metrics on localhost', 'shmbroker serve --config /etc/shmbroker/broker.yaml --metrics-addr 127.0.0.1:9464'],
    ['What the broker would run with, defaults included', 'shmbroker serve --config /etc/shmbroker/broker.yaml --print-config'],
    ['Reload the file into a running broker (keys that need a restart are logged)', 'sudo systemctl reload shmbroker   # or: kill -HUP $(pidof shmbroker)'],
  ]);
}
