// The gRPC control plane on RUNTIME_DIR/broker.sock. grpc-js does not expose
// the peer's credentials, so the broker accepts the Unix connections itself,
// reads SO_PEERCRED/SO_PEERGROUPS from each, and injects the socket into
// grpc-js with a per-connection key as its remoteAddress; a handler finds its
// caller by call.getPeer(). Identity sent in metadata is never looked at.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import * as native from '../../native';
import { DESCRIPTOR_SET_PATH, PROTO_DEPS_DIR } from '../../proto/load';
import type { Caller } from '../identity/caller';
import { BrokerError, Code, InternalError, isAudited } from '../errors';
import { toServiceError } from './grpc-status';
import type { Logger } from '../logger';
import { ReflectionService } from './reflection';
import { withRequest } from '../request-context';

/** A unary handler: gets the caller as the broker sees it, returns the response or throws. */
export type UnaryHandler = (caller: Caller, request: any) => unknown;

/** A server-streaming handler: emits responses until the signal aborts. */
export type StreamHandler = (caller: Caller, request: any, emit: (response: unknown) => void, signal: AbortSignal) => void | Promise<void>;

interface SocketWithHandle extends net.Socket {
  _handle?: { fd?: number };
}

export class ControlServer {
  readonly grpcServer: grpc.Server;
  readonly health = new HealthImplementation({ '': 'NOT_SERVING' });
  /** Mirrors the '' service of `health` (grpc-health-check keeps its map private). */
  private serving = false;
  private readonly injector;
  private netServer: net.Server | undefined;
  private readonly callers = new Map<string, Caller>();
  private readonly sockets = new Set<net.Socket>();
  private readonly perUid = new Map<number, number>();
  private nextKey = 1;
  /** Full names of the services added, for reflection's list. */
  private readonly services = new Set(['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection']);

  constructor(
    private readonly deps: {
      log: Logger;
      identify: (cred: native.PeerCred) => Caller;
      observe?: (method: string, seconds: number, code: number, type?: 'unary' | 'server_stream') => void;
      /** Open control connections one non-admin uid may hold (default 64); admins are not limited. */
      maxConnectionsPerUid?: number;
      /**
       * Before a reply goes out: a promise to wait for (the call's audit event
       * on disk, in strict mode or for settings a person typed), or undefined.
       */
      settle?: (path: string) => Promise<void> | undefined;
      /**
       * A refusal no handler audited (a malformed name rejected before the
       * handler's audited part, the per-uid connection cap): the broker
       * records it (aggregated, service/audit/refusal-aggregator.ts).
       */
      onRefusal?: (caller: Caller, action: string, resource: string, reason: string) => void;
      /**
       * Group commit (store/commit-batch.ts): the methods in `paths` run in
       * their turn's shared transaction; the reply waits for its commit.
       */
      groupCommit?: { paths: ReadonlySet<string>; run<T>(fn: () => T): Promise<Awaited<T>> };
    },
  ) {
    this.grpcServer = new grpc.Server({
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      'grpc.keepalive_time_ms': 60_000,
    });
    this.health.addToServer(this.grpcServer);
    ReflectionService.fromFile(DESCRIPTOR_SET_PATH, () => [...this.services]).addToServer(this.grpcServer, PROTO_DEPS_DIR);
    this.injector = this.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  callerOf(call: { getPeer(): string }): Caller {
    const caller = this.callers.get(call.getPeer());
    if (!caller) throw new InternalError('UNKNOWN_PEER', 'the broker has no credentials for this connection');
    return caller;
  }

  /** Registers a service whose methods are plain handlers (see UnaryHandler / StreamHandler). */
  addService(definition: grpc.ServiceDefinition, handlers: Record<string, UnaryHandler | StreamHandler>): void {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [method, attrs] of Object.entries(definition)) {
      const handler = handlers[method] ?? handlers[method.charAt(0).toLowerCase() + method.slice(1)];
      if (!handler) throw new Error(`no handler for ${attrs.path}`);
      if (attrs.responseStream) {
        impl[method] = (call: grpc.ServerWritableStream<unknown, unknown>) => this.stream(attrs.path, handler as StreamHandler, call);
      } else {
        impl[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
          void this.unary(attrs.path, handler as UnaryHandler, call, callback);
      }
    }
    this.grpcServer.addService(definition, impl);
    for (const attrs of Object.values(definition)) this.services.add(attrs.path.split('/')[1]!);
  }

  private async unary(path: string, handler: UnaryHandler, call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>): Promise<void> {
    const start = performance.now();
    let code = 0;
    try {
      const caller = this.callerOf(call);
      const run = (): unknown => withRequest(() => handler(caller, call.request));
      const group = this.deps.groupCommit;
      const response = await (group?.paths.has(path) ? group.run(run) : run());
      await this.deps.settle?.(path);
      callback(null, response);
    } catch (err) {
      if (err instanceof BrokerError && !isAudited(err) && err.code !== Code.INTERNAL) {
        // Every decision reaches the audit trail, also one made before a handler's audited part.
        const caller = this.callers.get(call.getPeer());
        // The resource is what the error names, else the method (a malformed name names nothing).
        if (caller) this.deps.onRefusal?.(caller, path.split('/').pop()!, err.resource ?? path.slice(1), err.reason);
      }
      await this.deps.settle?.(path)?.catch(() => undefined);
      const status = toServiceError(err, this.deps.log, path);
      code = status.code ?? grpc.status.UNKNOWN;
      callback(status as grpc.ServiceError);
    } finally {
      this.deps.observe?.(path, (performance.now() - start) / 1000, code);
    }
  }

  private async stream(path: string, handler: StreamHandler, call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
    const start = performance.now();
    let code = 0;
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    call.on('close', () => abort.abort());
    try {
      const caller = this.callerOf(call);
      await withRequest(() => handler(caller, call.request, (r) => call.write(r), abort.signal));
      if (!abort.signal.aborted) call.end();
      else code = grpc.status.CANCELLED;
    } catch (err) {
      const status = toServiceError(err, this.deps.log, path);
      code = status.code ?? grpc.status.UNKNOWN;
      // Not call.destroy(err): a destroyed Writable never runs _final, so
      // grpc-js would never send the status and the client would hang.
      // Its own 'error' listener records the status and ends the call.
      call.emit('error', status);
    } finally {
      this.deps.observe?.(path, (performance.now() - start) / 1000, code, 'server_stream');
    }
  }

  /** The gRPC health state of the whole server ('' service): what /readyz reports. */
  isServing(): boolean {
    return this.serving;
  }

  async listen(socketPath: string): Promise<void> {
    const server = net.createServer({ pauseOnConnect: false }, (socket) => this.accept(socket as SocketWithHandle));
    server.maxConnections = 4096;
    // The bind happens inside listen(), synchronously for a Unix path: a
    // temporary umask makes the socket 0666 from birth (see chmod below).
    const oldMask = process.umask(0o111);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path: socketPath, backlog: 512 }, () => {
          server.off('error', reject);
          resolve();
        });
        process.umask(oldMask);
      });
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(socketPath, 0o666); // any local uid may connect; who it is decides what it may do
    server.on('error', (err) => this.deps.log.error({ err }, 'control socket error'));
    this.netServer = server;
    this.health.setStatus('', 'SERVING');
    this.health.setStatus('shmbroker.v1.BrokerService', 'SERVING');
    this.serving = true;
  }

  private accept(socket: SocketWithHandle): void {
    const fd = socket._handle?.fd;
    let caller: Caller;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new Error('no fd on the accepted socket');
      caller = this.deps.identify(native.peerCredOfFd(fd));
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'control connection without credentials; closing');
      socket.destroy();
      return;
    }
    // Without a per-uid cap, one uid holding a few thousand idle connections
    // fills maxConnections and locks every other uid (root included) out.
    const limit = this.deps.maxConnectionsPerUid ?? 64;
    const held = this.perUid.get(caller.uid) ?? 0;
    if (!caller.isAdmin && held >= limit) {
      this.deps.onRefusal?.(caller, 'ControlPlaneConnect', 'broker.sock', 'TOO_MANY_CONNECTIONS');
      socket.destroy();
      return;
    }
    this.perUid.set(caller.uid, held + 1);
    const key = `unix:peer-${this.nextKey++}`;
    Object.defineProperty(socket, 'remoteAddress', { value: key, configurable: true });
    this.callers.set(key, caller);
    this.sockets.add(socket);
    socket.once('close', () => {
      this.callers.delete(key);
      this.sockets.delete(socket);
      const n = (this.perUid.get(caller.uid) ?? 1) - 1;
      if (n <= 0) this.perUid.delete(caller.uid);
      else this.perUid.set(caller.uid, n);
    });
    this.injector.injectConnection(socket);
  }

  connectionCount(): number {
    return this.sockets.size;
  }

  async close(graceMs = 2000): Promise<void> {
    this.health.setStatus('', 'NOT_SERVING');
    this.serving = false;
    const server = this.netServer;
    this.netServer = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    this.injector.drain(graceMs);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.grpcServer.forceShutdown();
        resolve();
      }, graceMs);
      this.grpcServer.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.injector.destroy();
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
