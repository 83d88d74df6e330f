// A local stand-in for the Kubernetes API server, for tests only: speaks
// just the pods LIST and WATCH calls PodWatcher makes (fieldSelector on
// spec.nodeName, limit/continue paging, resourceVersion, watch events as
// newline-delimited JSON, BOOKMARK, and 410 Gone both as an HTTP status and
// as an ERROR event carrying a Status). Not shipped behaviour: nothing in
// the broker imports it.

import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface FakePod {
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec: { nodeName?: string; serviceAccountName?: string };
}

interface HistoryEntry {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  pod: FakePod;
}

interface Watcher {
  res: http.ServerResponse;
  node: string | undefined;
}

export interface RecordedRequest {
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
}

export function makePod(name: string, namespace: string, uid: string, nodeName: string, serviceAccountName?: string): FakePod {
  const pod: FakePod = { metadata: { name, namespace, uid }, spec: { nodeName } };
  if (serviceAccountName !== undefined) pod.spec.serviceAccountName = serviceAccountName;
  return pod;
}

export class FakeApiServer {
  readonly requests: RecordedRequest[] = [];
  private readonly pods = new Map<string, FakePod>();
  private readonly history: HistoryEntry[] = [];
  private rv = 100;
  /** Watches from a resourceVersion older than this get 410 Gone. */
  private compactedRv = 0;
  private readonly watchers = new Set<Watcher>();
  private server: http.Server | https.Server | undefined;
  /** Answer the next N requests (list or watch) with HTTP 500. */
  failNext = 0;
  /** Answer a too-old watch with HTTP 410 instead of an ERROR event. */
  goneAsHttpStatus = false;
  /** When false, events are recorded but not sent to open watches (a slow watch). */
  deliver = true;
  /** How many watches were refused with 410. */
  goneAnswers = 0;
  /** Base URL once listening. */
  url = '';
  /** Required bearer token, if set. */
  token: string | undefined;

  constructor(private readonly tls?: { key: string; cert: string }) {}

  async listen(): Promise<string> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    this.server = this.tls ? https.createServer({ key: this.tls.key, cert: this.tls.cert }, handler) : http.createServer(handler);
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `${this.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    return this.url;
  }

  async close(): Promise<void> {
    this.closeWatches();
    if (!this.server) return;
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  get resourceVersion(): number {
    return this.rv;
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  upsert(pod: FakePod): void {
    const type = this.pods.has(pod.metadata.uid) ? 'MODIFIED' : 'ADDED';
    this.rv++;
    const stored: FakePod = JSON.parse(JSON.stringify(pod)) as FakePod;
    stored.metadata.resourceVersion = String(this.rv);
    this.pods.set(pod.metadata.uid, stored);
    this.publish({ rv: this.rv, type, pod: stored });
  }

  remove(uid: string): void {
    const pod = this.pods.get(uid);
    if (!pod) return;
    this.pods.delete(uid);
    this.rv++;
    const stored: FakePod = { ...pod, metadata: { ...pod.metadata, resourceVersion: String(this.rv) } };
    this.publish({ rv: this.rv, type: 'DELETED', pod: stored });
  }

  /**
   * Forget history up to now. With notify (default) every open watch gets an
   * ERROR 410 event and ends; without, open watches stay and the next watch
   * from an old resourceVersion is refused.
   */
  compact(notify = true): void {
    this.compactedRv = this.rv;
    this.history.length = 0;
    if (!notify) return;
    for (const w of this.watchers) {
      w.res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } }) + '\n');
    }
    this.watchers.clear();
  }

  /** End every open watch normally (as the server-side timeout does). */
  closeWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** Write raw bytes to every open watch (to split events across chunks, or send garbage). */
  writeRaw(text: string): void {
    for (const w of this.watchers) w.res.write(text);
  }

  /** The watch event line for a pod change, as the server would send it (for writeRaw). */
  eventLine(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: FakePod): string {
    this.rv++;
    const stored: FakePod = JSON.parse(JSON.stringify(pod)) as FakePod;
    stored.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.pods.delete(pod.metadata.uid);
    else this.pods.set(pod.metadata.uid, stored);
    this.history.push({ rv: this.rv, type, pod: stored });
    return JSON.stringify({ type, object: { kind: 'Pod', apiVersion: 'v1', ...stored } }) + '\n';
  }

  bookmark(): void {
    for (const w of this.watchers) {
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } } }) + '\n');
    }
  }

  private publish(e: HistoryEntry): void {
    this.history.push(e);
    if (!this.deliver) return;
    for (const w of this.watchers) {
      if (w.node === undefined || e.pod.spec.nodeName === w.node) {
        w.res.write(JSON.stringify({ type: e.type, object: { kind: 'Pod', apiVersion: 'v1', ...e.pod } }) + '\n');
      }
    }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ path: url.pathname, query: url.searchParams, authorization: req.headers.authorization });
    const status = (code: number, reason: string, message: string): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, code, message }));
    };
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) return status(401, 'Unauthorized', 'Unauthorized');
    if (req.method !== 'GET' || url.pathname !== '/api/v1/pods') return status(404, 'NotFound', 'not found');
    if (this.failNext > 0) {
      this.failNext--;
      return status(500, 'InternalError', 'injected failure');
    }
    const sel = url.searchParams.get('fieldSelector') ?? '';
    const m = /^spec\.nodeName=(.*)$/.exec(sel);
    const node = m ? m[1] : undefined;
    const matches = (p: FakePod): boolean => node === undefined || p.spec.nodeName === node;

    if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
      const from = Number(url.searchParams.get('resourceVersion') ?? '0');
      if (from < this.compactedRv) {
        this.goneAnswers++;
        if (this.goneAsHttpStatus) return status(410, 'Expired', 'too old resource version');
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' } }) + '\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      for (const e of this.history) {
        if (e.rv > from && matches(e.pod)) {
          res.write(JSON.stringify({ type: e.type, object: { kind: 'Pod', apiVersion: 'v1', ...e.pod } }) + '\n');
        }
      }
      const w: Watcher = { res, node };
      this.watchers.add(w);
      res.on('close', () => this.watchers.delete(w));
      return;
    }

    // LIST, paged with limit/continue (continue = index into the sorted set).
    const all = [...this.pods.values()].filter(matches).sort((a, b) => a.metadata.uid.localeCompare(b.metadata.uid));
    const limit = Number(url.searchParams.get('limit') ?? '0') || all.length || 1;
    const start = Number(url.searchParams.get('continue') || '0');
    const page = all.slice(start, start + limit);
    const next = start + limit < all.length ? String(start + limit) : '';
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: 'PodList',
        apiVersion: 'v1',
        metadata: next ? { resourceVersion: String(this.rv), continue: next } : { resourceVersion: String(this.rv) },
        items: page.map((p) => ({ kind: 'Pod', apiVersion: 'v1', ...p })),
      }),
    );
  }
}
