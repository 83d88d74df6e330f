// The one way the CLI follows a server stream (`region list --watch`,
// `audit watch`): verify the broker, open the stream, hand each message to
// `onData`, and stop cleanly on SIGINT/SIGTERM (the stream is cancelled and
// the command exits 0). Any other stream error becomes the CLI's error.
import type { ServiceError } from '@grpc/grpc-js';
import { toError } from '../sdk/control-client';
import type { CliContext } from './context';

/** gRPC status CANCELLED: the stream ended because we cancelled it. */
const CANCELLED = 1;

export async function followStream<T>(ctx: CliContext, service: string, method: string, request: object, onData: (message: T) => void): Promise<void> {
  await ctx.control().verify();
  const stream = ctx.control().stream(service, method, request);
  await new Promise<void>((resolve, reject) => {
    const stop = (): void => stream.cancel();
    const done = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    stream.on('data', (message: T) => onData(message));
    stream.on('error', (err: ServiceError) => {
      done();
      if (err.code === CANCELLED) resolve(); // cancelled by us
      else reject(toError(err, ctx.control().socketPath));
    });
    stream.on('end', () => {
      done();
      resolve();
    });
  });
}
