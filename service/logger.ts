// Structured JSON logs (pino) on stderr, so stdout stays free for a CLI's
// output when the broker runs in the foreground.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(options: { level?: string; destination?: number } = {}): Logger {
  return pino(
    {
      name: 'shmbroker',
      level: options.level ?? process.env.SHMBROKER_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: options.destination ?? 2, sync: true }),
  );
}
