// End to end: a real broker (in this process) with pod identity from a local
// pods API; real CLI processes connect from a pod-shaped cgroup v2 path and
// from outside; the audit trail (read back with `shmbroker audit list -o
// json`, as an operator would) names the pod's namespace and service account
// for the first and only the uid for the others.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../broker';
import { DEFAULT_CONFIG } from '../../config';
import { createLogger } from '../../logger';
import { PodWatcher } from './pods-api';
import { PodIdentityResolver } from './resolver';
import { FakeApiServer, makePod } from '../../../test/support/fake-apiserver';

const REPO = path.resolve(__dirname, '../../..');
const BIN = path.join(REPO, 'bin', 'shmbroker');
const NODE = 'node-a';

function cgroup2Mount(): string | undefined {
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const [pre, post] = line.split(' - ');
      if (pre && post?.startsWith('cgroup2 ')) return pre.split(' ')[4];
    }
  } catch {
    /* no procfs */
  }
  return undefined;
}

const CG2 = cgroup2Mount();
const runnable = (() => {
  if (!CG2 || process.getuid?.() !== 0) return false;
  if (!fs.existsSync(path.join(REPO, 'dist/clients/cli/main.js'))) return false; // `npm test` builds it first
  try {
    fs.accessSync(path.join(CG2, 'cgroup.procs'), fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();

const hex = (n: number): string => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, '0')).join('');
const uuid = (): string => {
  const h = hex(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** kubepods.slice/.../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope, created under the v2 root. */
function makePodCgroup(podUid: string, created: string[]): string {
  let cur = CG2!;
  for (const d of [
    'kubepods.slice',
    'kubepods-besteffort.slice',
    `kubepods-besteffort-pod${podUid.replace(/-/g, '_')}.slice`,
    `cri-containerd-${hex(32)}.scope`,
  ]) {
    cur = path.join(cur, d);
    if (!fs.existsSync(cur)) {
      fs.mkdirSync(cur);
      created.push(cur);
    }
  }
  return cur;
}

/** Run the CLI; with `cgroup`, the process enters that cgroup before exec'ing node, so it connects from there. */
function cli(args: string[], runtimeDir: string, cgroup?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cmd = cgroup
    ? ['sh', '-c', `echo $$ > "$1" && shift && exec "$@"`, 'sh', path.join(cgroup, 'cgroup.procs'), process.execPath, BIN, ...args]
    : [process.execPath, BIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { env: { ...process.env, SHMBROKER_RUNTIME_DIR: runtimeDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.skipIf(!runnable)('pod identity in the audit trail (real broker, real processes, pod-shaped cgroup)', () => {
  const created: string[] = [];
  let dir: string;
  let server: FakeApiServer;
  let watcher: PodWatcher;
  let broker: Broker;
  const podUid = uuid();
  const unknownPodUid = uuid();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-podid-'));
    fs.chmodSync(dir, 0o755);
    server = new FakeApiServer();
    server.upsert(makePod('analytics-7f9c', 'team-a', podUid, NODE, 'reader'));
    server.upsert(makePod('elsewhere', 'team-b', uuid(), 'node-b', 'writer'));
    watcher = new PodWatcher({ api: { baseUrl: await server.listen() }, nodeName: NODE, backoffInitialMs: 10 });
    watcher.start();
    expect(await watcher.waitForSync(5000)).toBe(true);
    const resolver = new PodIdentityResolver({ pods: watcher });
    broker = await Broker.start({
      runtimeDir: path.join(dir, 'run'),
      stateDir: path.join(dir, 'state'),
      backend: 'memfd',
      config: DEFAULT_CONFIG,
      log: createLogger({ level: 'silent' }),
      resolvePod: resolver.resolvePeerSync,
    });
  }, 30_000);

  afterAll(async () => {
    await broker?.stop();
    await watcher?.stop();
    await server?.close();
    for (const d of [...created].reverse()) {
      for (let i = 0; i < 50; i++) {
        try {
          fs.rmdirSync(d);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
          await new Promise((r) => setTimeout(r, 20)); // an exiting task may still be listed
        }
      }
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names namespace and service account for the pod peer, only the uid for the others', async () => {
    const run = path.join(dir, 'run');
    const inPod = await cli(['region', 'create', 'from-pod', '--size', '4KiB'], run, makePodCgroup(podUid, created));
    expect(inPod.code, inPod.stderr).toBe(0);
    const onHost = await cli(['region', 'create', 'from-host', '--size', '4KiB'], run);
    expect(onHost.code, onHost.stderr).toBe(0);
    const unknown = await cli(['region', 'create', 'from-unknown-pod', '--size', '4KiB'], run, makePodCgroup(unknownPodUid, created));
    expect(unknown.code, unknown.stderr).toBe(0);

    const listed = await cli(['audit', 'list', '-o', 'json'], run);
    expect(listed.code, listed.stderr).toBe(0);
    const parsed = JSON.parse(listed.stdout) as unknown;
    const events = (Array.isArray(parsed) ? parsed : (parsed as { events: unknown[] }).events) as Array<{
      action: string;
      resource: string;
      result: string;
      actor: { uid: number; pod?: { namespace: string; name: string; serviceAccount: string } | null } | null;
    }>;
    const byResource = (r: string) => events.find((e) => e.action === 'CreateRegion' && e.resource.includes(r));

    const fromPod = byResource('from-pod');
    expect(fromPod?.result).toBe('AUDIT_RESULT_ALLOWED'); // proto3 JSON: the enum value's full name
    expect(fromPod?.actor?.pod).toEqual({ namespace: 'team-a', name: 'analytics-7f9c', serviceAccount: 'reader' });
    expect(fromPod?.actor).toBeTruthy();
    expect(fromPod?.actor).not.toHaveProperty('uid'); // uid 0 (root): proto3 JSON omits a zero

    for (const r of ['from-host', 'from-unknown-pod']) {
      const e = byResource(r);
      expect(e?.result, r).toBe('AUDIT_RESULT_ALLOWED');
      expect(e?.actor?.pod ?? undefined, r).toBeUndefined();
    }

    // The pod identity is part of the hash chain like every other field.
    const verify = await cli(['audit', 'verify'], run);
    expect(verify.code, verify.stderr + verify.stdout).toBe(0);
  }, 60_000);
  it('a grant to a namespace or service account admits a pod peer of another uid, and nobody else', async () => {
    const run = path.join(dir, 'run');
    expect((await cli(['region', 'create', 'ns-shared', '--size', '4KiB'], run)).code).toBe(0);
    const granted = await cli(['grant', 'create', 'ns-shared', '--namespace', 'team-a', '-o', 'json'], run);
    expect(granted.code, granted.stderr).toBe(0);
    const grant = JSON.parse(granted.stdout);
    expect(grant).toMatchObject({ kubernetesNamespace: 'team-a' });
    // proto3 JSON: the oneof's member is there, its discriminator is not.
    expect(grant).not.toHaveProperty('grantee');
    expect(grant).not.toHaveProperty('uid');
    const bad = await cli(['grant', 'create', 'ns-shared', '--service-account', 'Team_A'], run);
    expect(bad.stderr).toContain('(INVALID_GRANTEE)');
    // uid 1001 in the pod's cgroup reads; the same uid outside any pod, or in an unknown pod, does not.
    const asUser = (cgroup?: string): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve, reject) => {
        const inner = `${cgroup ? 'echo $$ > "$1" && ' : ''}exec setpriv --reuid=1001 --regid=1001 --clear-groups -- "${process.execPath}" "${BIN}" region read ns-shared --length 4`;
        const child = spawn('sh', ['-c', inner, 'sh', cgroup ? path.join(cgroup, 'cgroup.procs') : ''], {
          env: { ...process.env, SHMBROKER_RUNTIME_DIR: run },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const podRead = await asUser(makePodCgroup(podUid, created));
    expect(podRead.code, podRead.stderr).toBe(0);
    const hostRead = await asUser();
    expect(hostRead.code).toBe(1);
    // Without a grant the region is invisible: the one NOT_FOUND a missing region gets (issue 16 item 6).
    expect(hostRead.stderr).toContain('(REGION_NOT_FOUND)');
    const unknownRead = await asUser(makePodCgroup(unknownPodUid, created));
    expect(unknownRead.stderr).toContain('(REGION_NOT_FOUND)');
  });
});
