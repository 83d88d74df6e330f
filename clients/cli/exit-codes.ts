// The CLI's exit codes: one table, documented in README.md ("Exit codes").
// Scripts branch on these, so a code's meaning never changes once shipped.
// The numbers follow the habits operators already have: 2 for usage (as
// every getopt tool), 3 for "the service is not there" (as systemctl's
// "not running"), 78 for a bad configuration file (sysexits' EX_CONFIG).
import { ShmbrokerError } from '../sdk/errors';

export const EXIT = {
  /** The command did what was asked. */
  OK: 0,
  /** Anything else: the broker refused, a region was not found, an I/O error. */
  ERROR: 1,
  /** The command line itself is wrong: unknown command or option, missing argument. */
  USAGE: 2,
  /** No broker answers on RUNTIME_DIR/broker.sock (or data.sock). */
  UNREACHABLE: 3,
  /** `config check`: the configuration file has problems. */
  CONFIG: 78,
} as const;

/** Reasons that mean "no broker to talk to", whichever socket found out. */
const UNREACHABLE_REASONS = new Set(['BROKER_UNREACHABLE']);

/** The exit code for an error a command threw. */
export function exitCodeFor(err: unknown): number {
  // `serve` says itself which failures are configuration (78) and which are not.
  const own = (err as { exitCode?: unknown } | null)?.exitCode;
  if (typeof own === 'number' && Number.isInteger(own) && own > 0) return own;
  if (err instanceof ShmbrokerError && UNREACHABLE_REASONS.has(err.reason)) return EXIT.UNREACHABLE;
  if (err instanceof ShmbrokerError && err.reason === 'INVALID_CONFIG') return EXIT.CONFIG;
  return EXIT.ERROR;
}
