// Structured JSON logs (pino) on stderr, so stdout stays free for a CLI's
// output when the broker runs in the foreground.
//
// Field names are unique: `pid` is the broker's own; a peer's credentials are
// `peer.pid`, `peer.uid`, `peer.gid` (peerFields); free text is only `msg`
// (never also `message`); `requestId` is added to every line written while a
// request is handled (request-context.ts).
import pino from 'pino';
import { currentRequestId } from './request-context';

export type Logger = pino.Logger;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The level: the flag or config key if given, else $SHMBROKER_LOG_LEVEL, else info. */
export function createLogger(options: { level?: string; destination?: number } = {}): Logger {
  return pino(
    {
      name: 'shmbroker',
      level: options.level ?? process.env.SHMBROKER_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      mixin() {
        const requestId = currentRequestId();
        return requestId ? { requestId } : {};
      },
    },
    pino.destination({ fd: options.destination ?? 2, sync: true }),
  );
}

/** A peer's credentials as log fields, named apart from the broker's own pid. */
export function peerFields(peer: { pid: number; uid: number; gid?: number }): Record<string, number> {
  const out: Record<string, number> = { 'peer.pid': peer.pid, 'peer.uid': peer.uid };
  if (peer.gid !== undefined) out['peer.gid'] = peer.gid;
  return out;
}

/**
 * Rate-limits a log line to one per interval: the first failure is logged at
 * once, later ones at most once per interval with how many there were, so a
 * failing disk cannot also flood the log (issue 16 item 2). The first
 * failure after a success is logged at once again (reset).
 */
export function intervalLog(intervalMs: number): ((write: (failures: number) => void) => void) & { reset(): void } {
  let loggedAt = -Infinity;
  let unlogged = 0;
  const log = (write: (failures: number) => void): void => {
    unlogged++;
    const now = Date.now();
    if (now - loggedAt < intervalMs) return;
    write(unlogged);
    loggedAt = now;
    unlogged = 0;
  };
  log.reset = (): void => {
    loggedAt = -Infinity;
    unlogged = 0;
  };
  return log;
}
