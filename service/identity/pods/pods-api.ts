// A small client of the Kubernetes pods API: LIST the pods bound to this
// node, then WATCH from the list's resourceVersion, and keep a cache
// podUid -> { namespace, name, serviceAccount }.
//
// Deliberately tiny (Node's http/https only, no client library): the broker
// needs four fields of one resource kind, and it is a privileged process
// whose dependency surface we keep small.
//
// Behaviour, following the API conventions for list+watch:
//  - LIST /api/v1/pods?fieldSelector=spec.nodeName=<node> (paged with limit/continue),
//    RBAC needs only get/list/watch on pods; the field selector keeps the
//    traffic to this node's pods (the API server filters, RBAC cannot).
//  - WATCH from the list's resourceVersion with allowWatchBookmarks; a watch
//    that ends normally (server-side timeoutSeconds) is resumed from the last
//    resourceVersion seen.
//  - 410 Gone (as an HTTP status or as an ERROR event carrying a Status with
//    code 410) means our resourceVersion is too old: re-LIST.
//  - Any other failure: retry with exponential backoff and jitter; the cache
//    keeps serving what it has meanwhile.
//  - The bearer token is re-read from its file on every request: projected
//    service-account tokens are rotated by the kubelet.

import { EventEmitter } from 'node:events';
import { ApiStatusError, collect, GoneError, PodsApiHttp, type PodsApiConfig } from './api-http';
import { podRecordFromObject, type PodRecord } from './pod-record';

// The API's configuration, errors and HTTP plumbing live in api-http.ts;
// they are re-exported here, where callers have always found them.
export { ApiStatusError, GoneError, InClusterConfigError, inClusterConfig, SERVICE_ACCOUNT_DIR, type PodsApiConfig } from './api-http';

// The pod record lives in pod-record.ts; re-exported here, where callers have always found it.
export { MIRROR_ANNOTATION, podRecordFromObject, type PodRecord } from './pod-record';

export type LogFn = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface PodWatcherOptions {
  api: PodsApiConfig;
  nodeName: string;
  /** Server-side timeout of one watch request; resumed afterwards. Default 300. */
  watchTimeoutSeconds?: number;
  /** Timeout of one LIST page, and idle timeout on top of watchTimeoutSeconds. Default 30000. */
  requestTimeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  pageSize?: number;
  log?: LogFn;
}

export interface PodWatcherStats {
  lists: number;
  watches: number;
  relistsOnGone: number;
  errors: number;
  events: number;
}

interface WatchEvent {
  type: string;
  object: unknown;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * LIST+WATCH of this node's pods, with a cache by pod UID (and by a static
 * pod's mirror UID). Events: 'synced' (after each successful LIST),
 * 'added' (PodRecord), 'deleted' (PodRecord), 'warning' (Error).
 */
export class PodWatcher extends EventEmitter {
  private readonly byUid = new Map<string, PodRecord>();
  private readonly byMirror = new Map<string, PodRecord>();
  private resourceVersion = '';
  private hasSynced = false;
  private running = false;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly waiters = new Map<string, Set<(p: PodRecord) => void>>();
  readonly stats: PodWatcherStats = { lists: 0, watches: 0, relistsOnGone: 0, errors: 0, events: 0 };

  private readonly watchTimeoutSeconds: number;
  private readonly requestTimeoutMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly pageSize: number;
  private readonly log: LogFn;
  private readonly http: PodsApiHttp;

  constructor(private readonly opts: PodWatcherOptions) {
    super();
    if (!opts.nodeName) throw new Error('PodWatcher: nodeName is required (set NODE_NAME from spec.nodeName)');
    this.http = new PodsApiHttp(opts.api, opts.requestTimeoutMs ?? 30_000);
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.backoffInitialMs = opts.backoffInitialMs ?? 500;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
    this.pageSize = opts.pageSize ?? 500;
    this.log = opts.log ?? (() => {});
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  get size(): number {
    return this.byUid.size;
  }

  /** Look a pod up by the UID found in a cgroup path (pod UID or static pod config hash). */
  get(uid: string): PodRecord | undefined {
    const u = uid.toLowerCase();
    return this.byUid.get(u) ?? this.byMirror.get(u) ?? this.byMirror.get(u.replace(/-/g, ''));
  }

  /**
   * Like get(), but when the pod is not cached yet wait up to timeoutMs for
   * the watch to deliver it (a pod that connects right after it started may
   * be a few milliseconds ahead of its ADDED event).
   */
  waitForPod(uid: string, timeoutMs: number): Promise<PodRecord | undefined> {
    const hit = this.get(uid);
    if (hit || timeoutMs <= 0 || !this.running) return Promise.resolve(hit);
    const key = uid.toLowerCase();
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (!set) this.waiters.set(key, (set = new Set()));
      const s = set;
      const cb = (p: PodRecord): void => {
        clearTimeout(timer);
        s.delete(cb);
        resolve(p);
      };
      const timer = setTimeout(() => {
        s.delete(cb);
        if (s.size === 0) this.waiters.delete(key);
        resolve(this.get(uid));
      }, timeoutMs);
      timer.unref?.();
      s.add(cb);
    });
  }

  /** Resolves true once the first LIST completed, false after timeoutMs. */
  waitForSync(timeoutMs: number): Promise<boolean> {
    if (this.hasSynced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onSync = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      const t = setTimeout(() => {
        this.off('synced', onSync);
        resolve(this.hasSynced);
      }, timeoutMs);
      t.unref?.();
      this.once('synced', onSync);
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.loop = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.abort.abort();
    await this.loop;
    this.loop = undefined;
  }

  // ---- cache maintenance -------------------------------------------------

  private put(rec: PodRecord): void {
    const old = this.byUid.get(rec.uid);
    if (old?.mirrorUid && old.mirrorUid !== rec.mirrorUid) this.byMirror.delete(old.mirrorUid);
    this.byUid.set(rec.uid, rec);
    if (rec.mirrorUid) this.byMirror.set(rec.mirrorUid, rec);
    for (const k of [rec.uid, rec.mirrorUid]) {
      if (!k) continue;
      const ws = this.waiters.get(k);
      if (ws) {
        this.waiters.delete(k);
        for (const w of ws) w(rec);
      }
    }
  }

  private remove(rec: PodRecord): void {
    const old = this.byUid.get(rec.uid);
    this.byUid.delete(rec.uid);
    const m = old?.mirrorUid ?? rec.mirrorUid;
    if (m) this.byMirror.delete(m);
  }

  private replaceAll(recs: PodRecord[]): void {
    this.byUid.clear();
    this.byMirror.clear();
    for (const r of recs) this.put(r);
  }

  // ---- the list/watch loop -----------------------------------------------

  private async run(signal: AbortSignal): Promise<void> {
    let needList = true;
    let backoff = this.backoffInitialMs;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.list(signal);
          needList = false;
          backoff = this.backoffInitialMs;
        }
        const gotEvents = await this.watch(signal);
        if (gotEvents) backoff = this.backoffInitialMs;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof GoneError) {
          this.stats.relistsOnGone++;
          this.log('info', 'pods watch: resourceVersion expired (410 Gone), re-listing', {
            resourceVersion: this.resourceVersion,
          });
          needList = true;
          continue;
        }
        this.stats.errors++;
        const e = err instanceof Error ? err : new Error(String(err));
        this.log('warn', `pods API: ${e.message}; retrying`, { backoffMs: backoff });
        if (this.listenerCount('warning') > 0) this.emit('warning', e);
        // Full jitter on the upper half: spread reconnects of every node's
        // broker after an API server restart.
        const delay = backoff / 2 + Math.random() * (backoff / 2);
        await sleep(delay, signal);
        backoff = Math.min(backoff * 2, this.backoffMaxMs);
      }
    }
  }

  private query(extra: Record<string, string>): string {
    const q = new URLSearchParams({ fieldSelector: `spec.nodeName=${this.opts.nodeName}`, ...extra });
    const basePath = this.http.basePath;
    return `${basePath}/api/v1/pods?${q.toString()}`;
  }

  private async list(signal: AbortSignal): Promise<void> {
    const recs: PodRecord[] = [];
    let cont = '';
    let rv = '';
    do {
      const params: Record<string, string> = { limit: String(this.pageSize) };
      if (cont) params['continue'] = cont;
      const body = await this.http.getJson(this.query(params), signal);
      const b = body as { kind?: unknown; items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } };
      if (!Array.isArray(b.items)) throw new Error('pods LIST: response has no items array');
      for (const item of b.items) {
        const r = podRecordFromObject(item);
        if (r) recs.push(r);
      }
      rv = typeof b.metadata?.resourceVersion === 'string' ? b.metadata.resourceVersion : '';
      cont = typeof b.metadata?.continue === 'string' ? b.metadata.continue : '';
    } while (cont !== '');
    if (rv === '') throw new Error('pods LIST: response has no resourceVersion');
    this.replaceAll(recs);
    this.resourceVersion = rv;
    this.stats.lists++;
    const first = !this.hasSynced;
    this.hasSynced = true;
    this.log(first ? 'info' : 'debug', 'pods LIST done', { pods: recs.length, resourceVersion: rv });
    this.emit('synced');
  }

  /** One watch request. Returns whether it delivered any event; throws GoneError on 410. */
  private watch(signal: AbortSignal): Promise<boolean> {
    this.stats.watches++;
    const p = this.query({
      watch: 'true',
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(this.watchTimeoutSeconds),
    });
    return new Promise<boolean>((resolve, reject) => {
      let got = false;
      let settled = false;
      let buf = '';
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        req.destroy();
        if (err) reject(err);
        else resolve(got);
      };
      const onAbort = (): void => finish();
      const req = this.http.request(p, (res) => {
        if (res.statusCode === 410) {
          res.resume();
          return finish(new GoneError('watch: HTTP 410 Gone'));
        }
        if (res.statusCode !== 200) {
          return collect(res, (text) => finish(new ApiStatusError(res.statusCode ?? 0, `watch: HTTP ${res.statusCode}: ${text.slice(0, 200)}`)));
        }
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          if (buf.length > 16 * 1024 * 1024) return finish(new Error('watch: event larger than 16 MiB'));
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            let ev: WatchEvent;
            try {
              ev = JSON.parse(line) as WatchEvent;
            } catch {
              return finish(new Error('watch: malformed event line'));
            }
            try {
              if (this.onEvent(ev)) got = true;
            } catch (e) {
              return finish(e instanceof Error ? e : new Error(String(e)));
            }
          }
        });
        res.on('end', () => finish());
        res.on('aborted', () => finish(new Error('watch: connection aborted')));
        res.on('error', (e) => finish(e));
      });
      req.on('error', (e) => finish(e));
      // Idle guard: the server ends the watch after timeoutSeconds; silence
      // well beyond that means a dead connection.
      req.setTimeout(this.watchTimeoutSeconds * 1000 + this.requestTimeoutMs, () =>
        finish(new Error('watch: idle timeout')),
      );
      signal.addEventListener('abort', onAbort, { once: true });
      req.end();
    });
  }

  /** Apply one watch event; returns true for a real change. */
  private onEvent(ev: WatchEvent): boolean {
    this.stats.events++;
    const obj = ev.object as { metadata?: { resourceVersion?: unknown }; code?: unknown; message?: unknown } | undefined;
    const rv = obj?.metadata?.resourceVersion;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const r = podRecordFromObject(ev.object);
        if (r) {
          if (r.nodeName === undefined || r.nodeName === this.opts.nodeName) {
            this.put(r);
            this.emit('added', r);
          } else {
            this.remove(r);
          }
        }
        break;
      }
      case 'DELETED': {
        const r = podRecordFromObject(ev.object);
        if (r) {
          this.remove(r);
          this.emit('deleted', r);
        }
        break;
      }
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        const code = typeof obj?.code === 'number' ? obj.code : 0;
        const msg = typeof obj?.message === 'string' ? obj.message : 'watch error event';
        if (code === 410) throw new GoneError(`watch: ${msg}`);
        throw new ApiStatusError(code, `watch: ERROR event ${code}: ${msg}`);
      }
      default:
        throw new Error(`watch: unknown event type ${JSON.stringify(ev.type)}`);
    }
    if (typeof rv === 'string' && rv !== '') this.resourceVersion = rv;
    return ev.type !== 'BOOKMARK';
  }

}
