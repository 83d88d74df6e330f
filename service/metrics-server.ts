// The broker's HTTP listener (`metricsAddr`): Prometheus metrics and the
// probes an orchestrator polls, cheap enough to run every few seconds
// (exec'ing `shmbroker status` cost ~0.55 CPU-s and 68 MB per probe).
//
//   /metrics  the Prometheus text format
//   /healthz  liveness: 200 whenever the process's event loop answers. It
//             checks nothing else on purpose: restarting a broker that is
//             alive but not ready loses memfd regions and helps nobody.
//   /readyz   readiness: 200 when the gRPC health state of the server ('')
//             is SERVING, 503 otherwise (starting, shutting down), the same
//             answer grpc.health.v1.Health/Check gives on broker.sock.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { parseHostPort } from './config';

/** What /readyz asks: true while the control plane serves. */
export type Readiness = () => boolean;

export interface MetricsServer {
  close(): Promise<void>;
  address: string;
}

const TEXT = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };

export async function startMetricsServer(addr: string, registry: Registry, readiness: Readiness = () => true): Promise<MetricsServer> {
  const { host, port } = parseHostPort(addr);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.writeHead(404, TEXT).end('not found\n'); // nothing here takes a body
      return;
    }
    switch (url) {
      case '/healthz':
        res.writeHead(200, TEXT).end(head ? undefined : 'ok\n');
        return;
      case '/readyz': {
        const ready = readiness();
        res.writeHead(ready ? 200 : 503, TEXT).end(head ? undefined : ready ? 'ready\n' : 'not ready: the control plane is not SERVING\n');
        return;
      }
      case '/metrics':
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': registry.contentType });
            res.end(head ? undefined : text);
          },
          (err: unknown) => {
            res.writeHead(500, TEXT).end(`metrics collection failed: ${String(err)}\n`);
          },
        );
        return;
      default:
        res.writeHead(404, TEXT).end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host || undefined, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
