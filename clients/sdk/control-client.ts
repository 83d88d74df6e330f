// A promise-based client of the broker's gRPC control plane over
// RUNTIME_DIR/broker.sock. Errors become the SDK's typed errors with the
// broker's machine-readable reason.
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadShmbrokerGrpc } from '../../proto/load';
import { errorFromStatus, ShmbrokerError } from './errors';
import { CONTROL_SOCKET, resolveRuntimeDir } from './runtime-dir';

const REASON_KEY = 'shmbroker-reason';

type Callable = (req: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => unknown;

export class ControlClient {
  readonly socketPath: string;
  readonly #clients = new Map<string, grpc.Client>();
  readonly #deadlineMs: number;

  constructor(options: { runtimeDir?: string; deadlineMs?: number } = {}) {
    this.socketPath = path.join(resolveRuntimeDir(options.runtimeDir), CONTROL_SOCKET);
    this.#deadlineMs = options.deadlineMs ?? 30_000;
  }

  #client(service: string): grpc.Client {
    let c = this.#clients.get(service);
    if (!c) {
      const ctor = (loadShmbrokerGrpc() as unknown as Record<string, grpc.ServiceClientConstructor | undefined>)[service];
      if (!ctor) throw new Error(`unknown service shmbroker.v1.${service}`);
      c = new ctor(`unix:${this.socketPath}`, grpc.credentials.createInsecure());
      this.#clients.set(service, c);
    }
    return c;
  }

  /** Calls a unary rpc, e.g. call('BrokerService', 'CreateRegion', {...}). */
  call<T = any>(service: string, method: string, request: object): Promise<T> {
    const client = this.#client(service) as unknown as Record<string, Callable>;
    const fn = client[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`unknown rpc ${service}.${method}`));
    return new Promise<T>((resolve, reject) => {
      fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + this.#deadlineMs }, (err, res) => {
        if (err) reject(toError(err, this.socketPath));
        else resolve(res as T);
      });
    });
  }

  /** Opens a server-streaming rpc; returns the grpc-js stream. */
  stream(service: string, method: string, request: object): grpc.ClientReadableStream<any> {
    const client = this.#client(service) as unknown as Record<string, (req: unknown) => grpc.ClientReadableStream<unknown>>;
    const fn = client[method];
    if (typeof fn !== 'function') throw new Error(`unknown rpc ${service}.${method}`);
    return fn.call(client, request);
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}

export function toError(err: grpc.ServiceError, socketPath: string): ShmbrokerError {
  const reason = String(err.metadata?.get(REASON_KEY)[0] ?? '');
  if (err.code === grpc.status.UNAVAILABLE && !reason) {
    const cause = /\b(ENOENT|ECONNREFUSED|EACCES|ECONNRESET|EPIPE)\b/.exec(err.details)?.[1];
    const why = cause === 'ENOENT' || cause === 'ECONNREFUSED' ? 'is it running?' : cause ?? err.details;
    return errorFromStatus(err.code, 'BROKER_UNREACHABLE', `cannot reach the broker at ${socketPath} (${why})`);
  }
  return errorFromStatus(err.code, reason || grpc.status[err.code] || 'UNKNOWN', err.details);
}
