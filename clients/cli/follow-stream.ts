// The one way the CLI follows a server stream (`region list --watch`,
// `audit watch`): verify the broker, open the stream, hand each message to
// `onData`, and stop cleanly on SIGINT/SIGTERM (the stream is cancelled and
// the command exits 0). Any other stream error becomes the CLI's error.
// Each message is printed as one line of text, one line of proto3 JSON
// (JSON lines, `-o json`) or one YAML document (`-o yaml`).
import type { ServiceError } from '@grpc/grpc-js';
import * as YAML from 'yaml';
import { toProto3Json } from '../../proto/json';
import { toError } from '../sdk/control-client';
import type { CliContext } from './context';

/** gRPC status CANCELLED: the stream ended because we cancelled it. */
const CANCELLED = 1;

/** Prints one streamed message: `text(message)` in text mode, else the proto3 JSON mapping of `typeName`. */
export function printStreamed(ctx: CliContext, typeName: string, message: object, text: () => string): void {
  const format = ctx.format();
  if (format === 'text') process.stdout.write(`${text()}\n`);
  else {
    const out = toProto3Json(typeName, message);
    process.stdout.write(format === 'json' ? `${JSON.stringify(out)}\n` : `---\n${YAML.stringify(out)}`);
  }
}

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
