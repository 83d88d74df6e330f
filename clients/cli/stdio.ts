// Whole-stream stdin/stdout helpers for region read/write, and the pipe
// habits of Unix tools: `shmbroker region read big | head -c 10` ends
// quietly with 0 once the reader closes its end, as cat does.
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function writeStdout(data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/** True for the error a write to a pipe whose reader has gone away gets. */
export function isClosedPipe(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}

/**
 * Node ignores SIGPIPE, so a closed stdout surfaces as an EPIPE 'error'
 * event (an uncaught exception with a stack trace when nobody listens).
 * Streaming commands (audit watch, audit export) write without a callback;
 * this ends the process with 0 for them, as a reader closing early is how
 * `| head` works, not a failure.
 */
export function endQuietlyOnClosedStdout(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (err) => {
    if (isClosedPipe(err)) process.exit(0);
    throw err;
  });
}
