// A promise-based client of the broker's gRPC control plane over
// RUNTIME_DIR/broker.sock: one typed method per RPC (createRegion,
// listGrants, ..., generated from the protos into ControlMethods by
// scripts/gen-control-client.js). Errors become the SDK's typed errors with
// the broker's machine-readable reason (google.rpc.ErrorInfo).
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as native from '../../native';
import { ControlMethods } from '../../proto/generated/control-methods';
import { loadShmbrokerGrpc } from '../../proto/load';
import { BrokerNotTrustedError, checkPeer, checkSocketPath, trustedUids } from './broker-trust';
import { STATUS_DETAILS_KEY, decodeStatus, type RichStatus } from '../../proto/status-details';
import { errorFromStatus, ShmbrokerError } from './errors';
import { CONTROL_SOCKET, MAX_REVOCATION_GRACE_MS, METHODS_WAITING_FOR_GRACE } from '../../proto/wire';
import { resolveRuntimeDir } from './runtime-dir';

/** Deadline of a unary call the caller did not set one for. */
const DEFAULT_DEADLINE_MS = 30_000;

type Callable = (req: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => unknown;

/** Options of the ControlClient constructor. */
export interface ControlClientOptions {
  /** The broker's runtime directory (default: $SHMBROKER_RUNTIME_DIR, else /run/shmbroker). */
  runtimeDir?: string;
  /**
   * Deadline of each unary call, in milliseconds. Default 30 s; for
   * DeleteRegion and RevokeGrant, which answer once the holders let go or
   * the broker's revocation grace ran out, 30 s more than the longest grace
   * a broker accepts (1 h).
   */
  deadlineMs?: number;
}

/**
 * The control-plane client, one typed method per RPC (inherited from
 * ControlMethods): `client.createRegion(...)` with a region id and a region
 * resolves with the Region. The broker is authenticated before the first
 * request is sent.
 */
export class ControlClient extends ControlMethods {
  /** The control socket this client talks to. */
  readonly socketPath: string;
  readonly #clients = new Map<string, grpc.Client>();
  readonly #deadlineMs: number | undefined;
  #verified: Promise<void> | undefined;

  /** @param options - where the broker is, and the deadline of each call */
  constructor(options: ControlClientOptions = {}) {
    super();
    this.socketPath = path.join(resolveRuntimeDir(options.runtimeDir), CONTROL_SOCKET);
    this.#deadlineMs = options.deadlineMs;
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

  /**
   * Authenticates the broker before the first request (broker-trust.ts):
   * the path, then SO_PEERCRED of a probe connection to the same socket.
   * The path check makes the socket one only a trusted uid can replace, so
   * the channel grpc-js opens by that path reaches the same listener.
   */
  verify(): Promise<void> {
    this.#verified ??= new Promise<void>((resolve, reject) => {
      const uids = trustedUids();
      try {
        checkSocketPath(this.socketPath, uids);
      } catch (err) {
        if (err instanceof BrokerNotTrustedError) throw err;
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        const why = code === 'ENOENT' ? 'is it running?' : code;
        throw errorFromStatus(grpc.status.UNAVAILABLE, 'BROKER_UNREACHABLE', `cannot reach the broker at ${this.socketPath} (${why})`);
      }
      const probe = net.connect(this.socketPath);
      probe.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'ECONNREFUSED' ? 'is it running?' : err.code ?? err.message;
        reject(errorFromStatus(grpc.status.UNAVAILABLE, 'BROKER_UNREACHABLE', `cannot reach the broker at ${this.socketPath} (${why})`));
      });
      probe.once('connect', () => {
        try {
          const fd = (probe as unknown as { _handle: { fd: number } })._handle.fd;
          checkPeer(native.peerCredOfFd(fd), this.socketPath, uids);
          resolve();
        } catch (err) {
          reject(err);
        } finally {
          probe.destroy();
        }
      });
    });
    return this.#verified;
  }

  /** The transport of the typed methods: a unary call through call(). */
  protected unary(service: string, method: string, request: object): Promise<unknown> {
    return this.call(service, method, request);
  }

  /** The transport of the typed server-streaming methods: stream(). */
  protected serverStream(service: string, method: string, request: object): grpc.ClientReadableStream<unknown> {
    return this.stream(service, method, request);
  }

  /**
   * Calls a unary rpc by name, untyped: `call('BrokerService', 'CreateRegion', request)`.
   * For raw and malformed requests (tests, fuzzing); programs use the typed methods.
   */
  async call<T = any>(service: string, method: string, request: object): Promise<T> {
    await this.verify();
    const client = this.#client(service) as unknown as Record<string, Callable>;
    const fn = client[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`unknown rpc ${service}.${method}`));
    return new Promise<T>((resolve, reject) => {
      fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + this.#deadlineFor(method) }, (err, res) => {
        if (err) reject(toError(err, this.socketPath));
        else resolve(res as T);
      });
    });
  }

  #deadlineFor(method: string): number {
    if (this.#deadlineMs !== undefined) return this.#deadlineMs;
    return METHODS_WAITING_FOR_GRACE.has(method) ? MAX_REVOCATION_GRACE_MS + DEFAULT_DEADLINE_MS : DEFAULT_DEADLINE_MS;
  }

  /** Opens a server-streaming rpc; returns the grpc-js stream. Await verify() first. */
  stream(service: string, method: string, request: object): grpc.ClientReadableStream<any> {
    if (!this.#verified) throw new Error('ControlClient.stream: await verify() first (the broker is authenticated before anything is sent)');
    const client = this.#client(service) as unknown as Record<string, (req: unknown) => grpc.ClientReadableStream<unknown>>;
    const fn = client[method];
    if (typeof fn !== 'function') throw new Error(`unknown rpc ${service}.${method}`);
    return fn.call(client, request);
  }

  /** Closes the gRPC channels; the client cannot be used afterwards. */
  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}

/** The google.rpc.Status the broker sent in grpc-status-details-bin, if any (a transport error has none). */
export function richStatus(err: grpc.ServiceError): RichStatus | undefined {
  const bytes = err.metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(bytes)) return undefined;
  try {
    return decodeStatus(bytes);
  } catch {
    return undefined;
  }
}

export function toError(err: grpc.ServiceError, socketPath: string): ShmbrokerError {
  const status = richStatus(err);
  const reason = status?.errorInfo?.reason ?? '';
  if (err.code === grpc.status.UNAVAILABLE && !reason) {
    const cause = /\b(ENOENT|ECONNREFUSED|EACCES|ECONNRESET|EPIPE)\b/.exec(err.details)?.[1];
    const why = cause === 'ENOENT' || cause === 'ECONNREFUSED' ? 'is it running?' : cause ?? err.details;
    return errorFromStatus(err.code, 'BROKER_UNREACHABLE', `cannot reach the broker at ${socketPath} (${why})`);
  }
  return errorFromStatus(err.code, reason || grpc.status[err.code] || 'UNKNOWN', err.details, status);
}
