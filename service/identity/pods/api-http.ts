// The Kubernetes API as the pod watcher needs it: where it is (in-cluster
// configuration), how it says no (ApiStatusError, GoneError), and plain GET
// requests with a bearer token re-read on every request (projected tokens
// rotate) over Node's own http/https. Split from pods-api.ts, which keeps the
// list+watch loop and the cache.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface PodsApiConfig {
  /** e.g. "https://10.96.0.1:443", or "http://127.0.0.1:PORT" in tests. */
  baseUrl: string;
  token?: string;
  /** Read on every request (rotating projected tokens). Ignored when token is set. */
  tokenFile?: string;
  ca?: string | Buffer;
  caFile?: string;
}

export class InClusterConfigError extends Error {
  override name = 'InClusterConfigError';
}

/**
 * The in-cluster configuration every pod gets: KUBERNETES_SERVICE_HOST/PORT
 * and the service account's token and CA under `dir`.
 */
export function inClusterConfig(
  env: NodeJS.ProcessEnv = process.env,
  dir: string = SERVICE_ACCOUNT_DIR,
): PodsApiConfig {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (!host || !port) {
    throw new InClusterConfigError('not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST/PORT are not set');
  }
  const tokenFile = path.join(dir, 'token');
  const caFile = path.join(dir, 'ca.crt');
  for (const f of [tokenFile, caFile]) {
    if (!fs.existsSync(f)) throw new InClusterConfigError(`in-cluster credentials missing: ${f}`);
  }
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return { baseUrl: `https://${h}:${port}`, tokenFile, caFile };
}

export class ApiStatusError extends Error {
  override name = 'ApiStatusError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Our resourceVersion is too old (HTTP 410 or a watch ERROR event with code 410): re-list. */
export class GoneError extends ApiStatusError {
  override name = 'GoneError';
  constructor(message: string) {
    super(410, message);
  }
}

/** GET requests to one API server. */
export class PodsApiHttp {
  private readonly base: URL;

  constructor(
    private readonly api: PodsApiConfig,
    private readonly requestTimeoutMs: number,
  ) {
    this.base = new URL(api.baseUrl);
    if (this.base.protocol !== 'https:' && this.base.protocol !== 'http:') {
      throw new Error(`PodWatcher: unsupported API URL ${api.baseUrl}`);
    }
  }

  /** The API server's path prefix ('' for the usual root). */
  get basePath(): string {
    return this.base.pathname.replace(/\/$/, '');
  }

  private headers(): http.OutgoingHttpHeaders {
    const h: http.OutgoingHttpHeaders = { Accept: 'application/json', 'User-Agent': 'shmbroker-pod-identity' };
    let token = this.api.token;
    if (token === undefined && this.api.tokenFile) {
      try {
        token = fs.readFileSync(this.api.tokenFile, 'utf8').trim();
      } catch (e) {
        throw new Error(`cannot read service account token ${this.api.tokenFile}: ${(e as Error).message}`);
      }
    }
    if (token) h['Authorization'] = `Bearer ${token}`;
    return h;
  }

  request(p: string, onResponse: (res: http.IncomingMessage) => void): http.ClientRequest {
    const common: http.RequestOptions = {
      method: 'GET',
      hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
      port: this.base.port || (this.base.protocol === 'https:' ? 443 : 80),
      path: p,
      headers: this.headers(),
    };
    if (this.base.protocol === 'https:') {
      let ca = this.api.ca;
      if (ca === undefined && this.api.caFile) ca = fs.readFileSync(this.api.caFile);
      const o: https.RequestOptions = { ...common, rejectUnauthorized: true };
      if (ca !== undefined) o.ca = ca;
      return https.request(o, onResponse);
    }
    return http.request(common, onResponse);
  }

  getJson(p: string, signal: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, val?: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(val);
      };
      const onAbort = (): void => finish(new Error('aborted'));
      const req = this.request(p, (res) => {
        collect(res, (text) => {
          if (res.statusCode === 410) return finish(new GoneError(`list: HTTP 410 Gone`));
          if (res.statusCode !== 200) {
            return finish(new ApiStatusError(res.statusCode ?? 0, `list: HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          }
          try {
            finish(undefined, JSON.parse(text));
          } catch {
            finish(new Error('list: response is not JSON'));
          }
        });
        res.on('error', (e) => finish(e));
      });
      req.on('error', (e) => finish(e));
      req.setTimeout(this.requestTimeoutMs, () => finish(new Error('list: request timed out')));
      signal.addEventListener('abort', onAbort, { once: true });
      req.end();
    });
  }
}

export function collect(res: http.IncomingMessage, cb: (text: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (c: Buffer) => {
    size += c.length;
    if (size <= 256 * 1024 * 1024) chunks.push(c);
  });
  res.on('end', () => cb(Buffer.concat(chunks).toString('utf8')));
}
