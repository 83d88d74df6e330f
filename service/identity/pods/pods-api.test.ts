import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { inClusterConfig, InClusterConfigError, PodWatcher, podRecordFromObject, type PodsApiConfig } from './pods-api';
import { FakeApiServer, makePod } from '../../../test/support/fake-apiserver';

const NODE = 'node-a';
const U1 = '11111111-1111-4111-8111-111111111111';
const U2 = '22222222-2222-4222-8222-222222222222';
const U3 = '33333333-3333-4333-8333-333333333333';
const U4 = '44444444-4444-4444-8444-444444444444';

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function setup(opts: { api?: Partial<PodsApiConfig>; pageSize?: number; server?: FakeApiServer } = {}) {
  const server = opts.server ?? new FakeApiServer();
  const baseUrl = await server.listen();
  const watcher = new PodWatcher({
    api: { baseUrl, ...opts.api },
    nodeName: NODE,
    backoffInitialMs: 10,
    backoffMaxMs: 50,
    pageSize: opts.pageSize ?? 500,
    watchTimeoutSeconds: 30,
  });
  cleanup.push(async () => {
    await watcher.stop();
    await server.close();
  });
  return { server, watcher };
}

describe('PodWatcher against a local pods API', () => {
  it('LISTs only this node (field selector), with the bearer token re-read from its file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'token'), 'tok-1\n');
    const server = new FakeApiServer();
    server.token = 'tok-1';
    server.upsert(makePod('web-0', 'team-a', U1, NODE, 'reader'));
    server.upsert(makePod('db-0', 'team-b', U2, 'node-b', 'writer'));
    const { watcher } = await setup({ server, api: { tokenFile: path.join(dir, 'token') } });
    watcher.start();
    expect(await watcher.waitForSync(3000)).toBe(true);
    expect(watcher.get(U1)).toEqual({ uid: U1, namespace: 'team-a', name: 'web-0', serviceAccount: 'reader', nodeName: NODE });
    expect(watcher.get(U2)).toBeUndefined();
    const list = server.requests.find((r) => r.query.get('watch') === null)!;
    expect(list.query.get('fieldSelector')).toBe(`spec.nodeName=${NODE}`);
    expect(list.authorization).toBe('Bearer tok-1');
    // The token rotates: the next request must carry the new one.
    await until(() => server.openWatches === 1);
    fs.writeFileSync(path.join(dir, 'token'), 'tok-2\n');
    server.token = 'tok-2';
    server.closeWatches();
    await until(() => server.requests.filter((r) => r.query.get('watch') === 'true').length >= 2);
    expect(server.requests.at(-1)!.authorization).toBe('Bearer tok-2');
  });

  it('a WATCH event adds a pod; DELETED removes it; MODIFIED to another node drops it', async () => {
    const { server, watcher } = await setup();
    watcher.start();
    await watcher.waitForSync(3000);
    expect(watcher.get(U3)).toBeUndefined();
    await until(() => server.openWatches === 1);
    const watchReq = server.requests.find((r) => r.query.get('watch') === 'true')!;
    expect(watchReq.query.get('resourceVersion')).toBe(String(server.resourceVersion));
    expect(watchReq.query.get('allowWatchBookmarks')).toBe('true');
    const waiting = watcher.waitForPod(U3, 3000);
    server.upsert(makePod('job-1', 'batch', U3, NODE)); // no serviceAccountName: "default"
    expect(await waiting).toMatchObject({ namespace: 'batch', name: 'job-1', serviceAccount: 'default' });
    server.upsert(makePod('job-2', 'batch', U4, NODE, 'runner'));
    await until(() => watcher.get(U4) !== undefined);
    server.remove(U3);
    await until(() => watcher.get(U3) === undefined);
    expect(watcher.stats.lists).toBe(1);
  });

  it('resumes a watch that ended normally from the last resourceVersion, without re-listing', async () => {
    const { server, watcher } = await setup();
    watcher.start();
    await watcher.waitForSync(3000);
    await until(() => server.openWatches === 1);
    server.upsert(makePod('a', 'ns', U1, NODE));
    await until(() => watcher.get(U1) !== undefined);
    server.bookmark();
    server.closeWatches();
    await until(() => server.openWatches === 1);
    const watches = server.requests.filter((r) => r.query.get('watch') === 'true');
    expect(watches.at(-1)!.query.get('resourceVersion')).toBe(String(server.resourceVersion));
    expect(watcher.stats.lists).toBe(1);
  });

  it('re-LISTs on 410 Gone delivered as a watch ERROR event, picking up what happened meanwhile', async () => {
    const { server, watcher } = await setup();
    server.upsert(makePod('old', 'ns', U1, NODE));
    watcher.start();
    await watcher.waitForSync(3000);
    await until(() => server.openWatches === 1);
    server.compact(); // open watch gets ERROR 410 and ends
    server.upsert(makePod('new', 'ns', U2, NODE, 'sa2')); // happens "in the gap"
    server.remove(U1);
    await until(() => watcher.stats.lists === 2);
    expect(watcher.stats.relistsOnGone).toBe(1);
    expect(watcher.get(U2)?.serviceAccount).toBe('sa2');
    expect(watcher.get(U1)).toBeUndefined();
  });

  it('re-LISTs on 410 Gone as an HTTP status', async () => {
    const server = new FakeApiServer();
    server.goneAsHttpStatus = true;
    const { watcher } = await setup({ server });
    watcher.start();
    await watcher.waitForSync(3000);
    await until(() => server.openWatches === 1);
    server.upsert(makePod('x', 'ns', U3, NODE));
    await until(() => watcher.get(U3) !== undefined);
    server.deliver = false; // the open watch falls behind...
    server.upsert(makePod('y', 'ns', U4, NODE));
    server.compact(false); // ...history is compacted past it...
    server.deliver = true;
    server.closeWatches(); // ...so the resumed watch starts from an expired resourceVersion
    await until(() => watcher.stats.lists === 2);
    expect(server.goneAnswers).toBe(1);
    expect(watcher.stats.relistsOnGone).toBe(1);
    expect(watcher.get(U4)?.name).toBe('y');
  });

  it('retries with backoff when the API server fails, and keeps serving the cache meanwhile', async () => {
    const { server, watcher } = await setup();
    server.failNext = 3;
    server.upsert(makePod('a', 'ns', U1, NODE));
    watcher.start();
    expect(await watcher.waitForSync(3000)).toBe(true);
    expect(watcher.stats.errors).toBe(3);
    await until(() => server.openWatches === 1);
    server.failNext = 2;
    server.closeWatches();
    await until(() => server.openWatches === 1);
    expect(watcher.get(U1)?.name).toBe('a');
  });

  it('pages a large LIST with limit/continue', async () => {
    const server = new FakeApiServer();
    const uids = [U1, U2, U3, U4, '55555555-5555-4555-8555-555555555555'];
    uids.forEach((u, i) => server.upsert(makePod(`p${i}`, 'ns', u, NODE)));
    const { watcher } = await setup({ server, pageSize: 2 });
    watcher.start();
    await watcher.waitForSync(3000);
    expect(watcher.size).toBe(5);
    const lists = server.requests.filter((r) => r.query.get('watch') === null);
    expect(lists.map((r) => r.query.get('continue'))).toEqual([null, '2', '4']);
  });

  it('reassembles an event split across chunks; a malformed line costs a reconnect, not the cache', async () => {
    const { server, watcher } = await setup();
    watcher.start();
    await watcher.waitForSync(3000);
    await until(() => server.openWatches === 1);
    const line = server.eventLine('ADDED', makePod('split', 'ns', U1, NODE, 'sa'));
    server.writeRaw(line.slice(0, 17));
    await new Promise((r) => setTimeout(r, 30));
    expect(watcher.get(U1)).toBeUndefined();
    server.writeRaw(line.slice(17));
    await until(() => watcher.get(U1) !== undefined);
    const watchesBefore = watcher.stats.watches;
    server.writeRaw('{"type": "ADDED", "object": {tru\n');
    await until(() => watcher.stats.watches > watchesBefore && server.openWatches === 1);
    expect(watcher.stats.errors).toBe(1);
    expect(watcher.stats.lists).toBe(1); // resumed from the last resourceVersion, no re-list
    expect(watcher.get(U1)?.name).toBe('split');
  });

  it('a static pod is found by its mirror hash through the watch, and forgotten when deleted', async () => {
    const { server, watcher } = await setup();
    watcher.start();
    await watcher.waitForSync(3000);
    await until(() => server.openWatches === 1);
    const hash = '6b1f2d9c0a8e4f3b7c5d1e2f3a4b5c6d';
    const mirror = makePod('etcd-node-a', 'kube-system', U2, NODE, 'default');
    mirror.metadata.annotations = { 'kubernetes.io/config.mirror': hash, 'kubernetes.io/config.hash': hash };
    server.upsert(mirror);
    await until(() => watcher.get(hash) !== undefined);
    expect(watcher.get(hash)).toMatchObject({ name: 'etcd-node-a', namespace: 'kube-system', uid: U2 });
    server.remove(U2);
    await until(() => watcher.get(hash) === undefined);
    expect(watcher.get(U2)).toBeUndefined();
  });

  it('finds a static pod by the config hash in its cgroup path (mirror annotation)', () => {
    const rec = podRecordFromObject({
      metadata: {
        name: 'kube-proxy-node-a',
        namespace: 'kube-system',
        uid: U1,
        annotations: { 'kubernetes.io/config.mirror': '6b1f2d9c0a8e4f3b7c5d1e2f3a4b5c6d' },
      },
      spec: { nodeName: NODE, serviceAccountName: 'kube-proxy' },
    });
    expect(rec?.mirrorUid).toBe('6b1f2d9c0a8e4f3b7c5d1e2f3a4b5c6d');
  });

  it('ignores objects that are not pods', () => {
    expect(podRecordFromObject(null)).toBeUndefined();
    expect(podRecordFromObject({ metadata: { name: 'x' } })).toBeUndefined();
    expect(podRecordFromObject({ metadata: { name: 'x', namespace: 'y', uid: 5 } })).toBeUndefined();
  });

  it('stop() ends the watch promptly', async () => {
    const { server, watcher } = await setup();
    watcher.start();
    await watcher.waitForSync(3000);
    await until(() => server.openWatches === 1);
    const t0 = Date.now();
    await watcher.stop();
    // What this guards against is waiting out the watch's 30 s server-side
    // timeout; a loaded machine may add a scheduling delay, never seconds.
    expect(Date.now() - t0).toBeLessThan(5000);
    await until(() => server.openWatches === 0);
  });
});

describe('in-cluster configuration', () => {
  it('uses KUBERNETES_SERVICE_HOST/PORT and the service account token and CA', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sa-'));
    try {
      fs.writeFileSync(path.join(dir, 'token'), 't');
      fs.writeFileSync(path.join(dir, 'ca.crt'), 'c');
      expect(inClusterConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir)).toEqual({
        baseUrl: 'https://10.96.0.1:443',
        tokenFile: path.join(dir, 'token'),
        caFile: path.join(dir, 'ca.crt'),
      });
      expect(inClusterConfig({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, dir).baseUrl).toBe(
        'https://[fd00::1]:443',
      );
      expect(() => inClusterConfig({}, dir)).toThrow(InClusterConfigError);
      expect(() => inClusterConfig({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' }, '/nonexistent')).toThrow(
        InClusterConfigError,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('talks TLS to an API server whose CA is given in caFile, and refuses one it does not trust', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-'));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    try {
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
          '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
          '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'ca.crt')],
        { stdio: 'ignore' },
      );
    } catch {
      console.warn('openssl not available: TLS test skipped');
      return;
    }
    const tls = { key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8') };
    const server = new FakeApiServer(tls);
    server.upsert(makePod('tls-pod', 'secure', U1, NODE, 'sa'));
    const { watcher } = await setup({ server, api: { caFile: path.join(dir, 'ca.crt'), token: 'x' } });
    watcher.start();
    expect(await watcher.waitForSync(3000)).toBe(true);
    expect(watcher.get(U1)?.namespace).toBe('secure');

    // Same server, no CA: the certificate is not trusted, nothing syncs.
    const base = server.url;
    const untrusting = new PodWatcher({ api: { baseUrl: base }, nodeName: NODE, backoffInitialMs: 10, backoffMaxMs: 20 });
    untrusting.start();
    expect(await untrusting.waitForSync(300)).toBe(false);
    expect(untrusting.stats.errors).toBeGreaterThan(0);
    await untrusting.stop();
  });
});
