import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startPodIdentity } from './index';
import { FakeApiServer, makePod } from '../../../test/support/fake-apiserver';

describe('startPodIdentity', () => {
  it("'auto' (default) is off outside Kubernetes and resolves nothing", async () => {
    const logs: string[] = [];
    const pi = await startPodIdentity(undefined, (_l, m) => logs.push(m), {});
    expect(pi.enabled).toBe(false);
    expect(await pi.resolvePeer(process.pid)).toBeUndefined();
    expect(logs.join('\n')).toMatch(/not running in a Kubernetes pod/);
    await pi.stop();
  });

  it('enabled in a pod without a node name: off, with a warning', async () => {
    const logs: string[] = [];
    const pi = await startPodIdentity({ enabled: true }, (l, m) => logs.push(`${l} ${m}`), { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' });
    expect(pi.enabled).toBe(false);
    expect(logs.some((l) => l.startsWith('warn') && /NODE_NAME/.test(l))).toBe(true);
  });

  it('in a pod without service-account credentials: off, with a warning', async () => {
    const logs: string[] = [];
    const pi = await startPodIdentity({}, (l, m) => logs.push(`${l} ${m}`), {
      KUBERNETES_SERVICE_HOST: '10.0.0.1',
      KUBERNETES_SERVICE_PORT: '443',
      NODE_NAME: 'n',
    });
    expect(pi.enabled).toBe(pathExists('/var/run/secrets/kubernetes.io/serviceaccount/token'));
    if (!pi.enabled) expect(logs.some((l) => l.startsWith('warn'))).toBe(true);
    await pi.stop();
  });

  it('SHMBROKER_POD_IDENTITY=off turns it off in a pod; =on without a node name warns', async () => {
    const logs: string[] = [];
    const inPod = { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443', NODE_NAME: 'n' };
    let pi = await startPodIdentity(undefined, (l, m) => logs.push(`${l} ${m}`), { ...inPod, SHMBROKER_POD_IDENTITY: 'off' });
    expect(pi.enabled).toBe(false);
    expect(logs.pop()).toMatch(/disabled: switched off/);
    pi = await startPodIdentity(undefined, (l, m) => logs.push(`${l} ${m}`), { SHMBROKER_POD_IDENTITY: 'on' });
    expect(pi.enabled).toBe(false);
    expect(logs.some((l) => l.startsWith('warn') && /requested but no node name/.test(l))).toBe(true);
    pi = await startPodIdentity(undefined, (l, m) => logs.push(`${l} ${m}`), { SHMBROKER_POD_IDENTITY: 'maybe' });
    expect(logs.some((l) => /SHMBROKER_POD_IDENTITY=maybe is not on, off or auto/.test(l))).toBe(true);
  });

  it('with an explicit API server: syncs this node, stops cleanly', async () => {
    const server = new FakeApiServer();
    server.upsert(makePod('p', 'ns', '11111111-1111-4111-8111-111111111111', 'node-x', 'sa'));
    const baseUrl = await server.listen();
    try {
      const pi = await startPodIdentity({ enabled: true, apiServer: baseUrl, nodeName: 'node-x' }, () => {}, {});
      expect(pi.enabled).toBe(true);
      expect(pi.watcher?.synced).toBe(true);
      expect(pi.watcher?.get('11111111-1111-4111-8111-111111111111')?.serviceAccount).toBe('sa');
      await pi.stop();
    } finally {
      await server.close();
    }
  });
});

function pathExists(p: string): boolean {
  try {
    fs.accessSync(p);
    return true;
  } catch {
    return false;
  }
}
