// What every CLI command gets: the broker location, a control-plane client,
// and output in the format the user asked for (-o text|wide|json|yaml).
import type { Command } from 'commander';
import * as YAML from 'yaml';
import { toProto3Json } from '../../proto/json';
import { ControlClient } from '../sdk/control-client';
import { resolveRuntimeDir } from '../sdk/runtime-dir';

/** text (and wide) for people; json and yaml for programs (the same data). */
export type OutputFormat = 'text' | 'json' | 'yaml';

export interface CliContext {
  /** The runtime directory from --runtime-dir / the environment / the default. */
  runtimeDir(): string;
  /** A control-plane client (created on first use, closed when the command ends). */
  control(): ControlClient;
  /** The -o format. */
  format(): OutputFormat;
  /** -o wide: text tables with the exact timestamps and ids as extra columns. */
  wide(): boolean;
  /** Prints `value` (not a proto message) as JSON or YAML with -o json|yaml, else the text `render` gives. */
  print(value: unknown, render: () => string): void;
  /**
   * Prints a proto message of type `typeName` ("shmbroker.v1.Region") in the
   * proto3 JSON mapping with -o json (YAML of the same data with -o yaml),
   * else the text `render` gives. Lists print as their List response.
   */
  printMessage(typeName: string, message: object, render: () => string): void;
}

export function createContext(program: Command): CliContext & { close(): void } {
  let control: ControlClient | undefined;
  const opts = (): { runtimeDir?: string; output?: string } => program.opts();
  const ctx = {
    runtimeDir: () => resolveRuntimeDir(opts().runtimeDir),
    control: () => (control ??= new ControlClient({ runtimeDir: opts().runtimeDir })),
    format: (): OutputFormat => (opts().output === 'json' ? 'json' : opts().output === 'yaml' ? 'yaml' : 'text'),
    wide: (): boolean => opts().output === 'wide',
    print(value: unknown, render: () => string): void {
      const format = ctx.format();
      if (format === 'json') process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else if (format === 'yaml') process.stdout.write(YAML.stringify(value));
      else {
        const text = render();
        if (text) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    printMessage(typeName: string, message: object, render: () => string): void {
      ctx.print(ctx.format() === 'text' ? undefined : toProto3Json(typeName, message), render);
    },
    close(): void {
      control?.close();
      control = undefined;
    },
  };
  return ctx;
}

/** Formats rows as aligned columns. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i]!))).join('  ')).join('\n');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    u++;
  }
  return `${v} ${units[u]}`;
}

export function formatTime(ts: { seconds: number | string; nanos: number } | null | undefined): string {
  if (!ts) return '-';
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)).toISOString();
}
