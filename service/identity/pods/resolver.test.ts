import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PodWatcher } from './pods-api';
import { formatSubject, parseSubject, principalsOf, subjectMatches } from './principals';
import { PodIdentityResolver, type PodLookup } from './resolver';
import { FakeApiServer, makePod } from '../../../test/support/fake-apiserver';

const NODE = 'node-a';

/** Where cgroup v2 is mounted (a hybrid host: /sys/fs/cgroup/unified), or undefined. */
function cgroup2Mount(): string | undefined {
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      // ... mount-point ... - fstype source options
      const [pre, post] = line.split(' - ');
      if (!pre || !post || !post.startsWith('cgroup2 ')) continue;
      const mp = pre.split(' ')[4];
      if (mp) return mp;
    }
  } catch {
    /* no /proc */
  }
  return undefined;
}

const CG2 = cgroup2Mount();
const canMoveProcesses = (() => {
  if (!CG2 || process.getuid?.() !== 0) return false;
  try {
    fs.accessSync(path.join(CG2, 'cgroup.procs'), fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();

function randomUid(): string {
  const h = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) {
    try {
      await c();
    } catch (e) {
      console.warn('cleanup failed:', e);
    }
  }
  cleanup = [];
});

function spawnSleeper(): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  cleanup.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  return child;
}

/**
 * Create kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope
 * under the cgroup v2 root, move `pid` into it, and register the undo (move
 * back to the root, rmdir leaf to root) for the end of the test.
 */
function placeInPodCgroup(pid: number, podUid: string, containerId: string): string {
  const root = CG2!;
  const dirs = [
    'kubepods.slice',
    'kubepods-besteffort.slice',
    `kubepods-besteffort-pod${podUid.replace(/-/g, '_')}.slice`,
    `cri-containerd-${containerId}.scope`,
  ];
  const created: string[] = [];
  let cur = root;
  for (const d of dirs) {
    cur = path.join(cur, d);
    if (!fs.existsSync(cur)) {
      fs.mkdirSync(cur);
      created.push(cur);
    }
  }
  cleanup.push(() => {
    // Move the process (if still alive) back to the root, then remove what we made.
    try {
      fs.writeFileSync(path.join(root, 'cgroup.procs'), String(pid));
    } catch {
      /* exited already */
    }
    for (const d of created.reverse()) {
      for (let i = 0; i < 50; i++) {
        try {
          fs.rmdirSync(d);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20); // dying task still listed
        }
      }
    }
  });
  fs.writeFileSync(path.join(cur, 'cgroup.procs'), String(pid));
  return cur;
}

describe('resolvePeer with a real process in a pod-shaped cgroup', () => {
  it.skipIf(!canMoveProcesses)(
    'identifies the process by namespace and service account through the pods API',
    async () => {
      const podUid = randomUid();
      const containerId = [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, '0')).join('');
      const server = new FakeApiServer();
      server.upsert(makePod('analytics-7f9c', 'team-a', podUid, NODE, 'reader'));
      server.upsert(makePod('elsewhere', 'team-b', randomUid(), 'node-b', 'writer'));
      const baseUrl = await server.listen();
      const watcher = new PodWatcher({ api: { baseUrl }, nodeName: NODE, backoffInitialMs: 10 });
      cleanup.push(async () => {
        await watcher.stop();
        await server.close();
      });
      watcher.start();
      expect(await watcher.waitForSync(3000)).toBe(true);

      const child = spawnSleeper();
      const pid = child.pid!;
      const dir = placeInPodCgroup(pid, podUid, containerId);
      expect(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toContain(path.relative(CG2!, dir));

      const unresolved: string[] = [];
      const resolver = new PodIdentityResolver({ pods: watcher, missWaitMs: 0, onUnresolved: (_p, r) => unresolved.push(r) });
      const id = await resolver.resolvePeer(pid);
      expect(id).toEqual({
        namespace: 'team-a',
        name: 'analytics-7f9c',
        podUid,
        serviceAccount: 'reader',
        containerId,
        qosClass: 'besteffort',
        nodeName: NODE,
      });
      // Rights: the pod's subjects come first, uid/gid still apply.
      const principals = principalsOf({ pid, uid: 1000, gid: 1000 }, id).map(formatSubject);
      expect(principals).toEqual(['sa:team-a/reader', 'ns:team-a', 'uid:1000', 'gid:1000']);
      expect(resolver.resolvePeerSync(pid)).toEqual(id);
      expect(unresolved).toEqual([]);

      // Moved out of the pod cgroup, the same process is just a uid again.
      fs.writeFileSync(path.join(CG2!, 'cgroup.procs'), String(pid));
      expect(await resolver.resolvePeer(pid)).toBeUndefined();
      expect(resolver.resolvePeerSync(pid)).toBeUndefined();
    },
    15_000,
  );

  it.skipIf(!canMoveProcesses)('a pod cgroup whose pod the API does not know resolves to nothing', async () => {
    const child = spawnSleeper();
    placeInPodCgroup(child.pid!, randomUid(), 'ab'.repeat(32));
    const reasons: string[] = [];
    const resolver = new PodIdentityResolver({ pods: { get: () => undefined }, onUnresolved: (_p, r) => reasons.push(r) });
    expect(await resolver.resolvePeer(child.pid!)).toBeUndefined();
    expect(reasons[0]).toMatch(/not known to the pods API cache/);
  });
});

describe('a peer whose pod cannot be resolved gets only uid-based rights', () => {
  const known: PodLookup = {
    get: (uid) => (uid === 'x' ? { uid: 'x', namespace: 'team-a', name: 'p', serviceAccount: 'reader' } : undefined),
  };
  const grants = ['ns:team-a', 'sa:team-a/reader', 'uid:1000'].map(parseSubject);

  async function rightsOf(pid: number, procRoot?: string): Promise<string[]> {
    const resolver = new PodIdentityResolver(procRoot ? { pods: known, procRoot, missWaitMs: 0 } : { pods: known, missWaitMs: 0 });
    const pod = await resolver.resolvePeer(pid);
    expect(resolver.resolvePeerSync(pid)).toEqual(pod);
    const principals = principalsOf({ pid, uid: 1000, gid: 100, groups: [100, 27] }, pod);
    return grants.filter((g) => subjectMatches(g, principals)).map(formatSubject);
  }

  it('host process (this test runner), pid 0, a pid that does not exist', async () => {
    expect(await rightsOf(process.pid)).toEqual(['uid:1000']);
    expect(await rightsOf(0)).toEqual(['uid:1000']);
    expect(await rightsOf(-1)).toEqual(['uid:1000']);
    expect(await rightsOf(2 ** 31)).toEqual(['uid:1000']);
  });

  it('pod-shaped cgroup but pod unknown, unreadable or garbage /proc entries', async () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
    cleanup.push(() => fs.rmSync(proc, { recursive: true, force: true }));
    const write = (pid: number, text: string | Buffer): void => {
      fs.mkdirSync(path.join(proc, String(pid)));
      fs.writeFileSync(path.join(proc, String(pid), 'cgroup'), text);
    };
    write(10, '0::/kubepods.slice/kubepods-pod11111111_1111_4111_8111_111111111111.slice/cri-containerd-' + 'ab'.repeat(32) + '.scope\n');
    write(11, Buffer.from([0xff, 0xfe, 0x00, 0x3a, 0x3a]));
    write(12, '0::/kubepods/pod' + '1'.repeat(32) + '/../../../etc\n');
    fs.mkdirSync(path.join(proc, '13')); // no cgroup file
    for (const pid of [10, 11, 12, 13]) expect(await rightsOf(pid, proc), String(pid)).toEqual(['uid:1000']);
  });

  it('a UID lookalike ("podx") is not a pod, whatever the cache holds', async () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
    cleanup.push(() => fs.rmSync(proc, { recursive: true, force: true }));
    fs.mkdirSync(path.join(proc, '20'));
    fs.writeFileSync(path.join(proc, '20', 'cgroup'), '0::/kubepods/besteffort/podx/' + 'cd'.repeat(32) + '\n');
    // "podx" is not a valid UID shape: still uid-only. The parser, not the cache, is the gate.
    expect(await rightsOf(20, proc)).toEqual(['uid:1000']);
  });

  it('waits briefly for a just-started pod to reach the cache, then gives up', async () => {
    let calls = 0;
    const slow: PodLookup = {
      get: () => undefined,
      waitForPod: async (_uid, ms) => {
        calls++;
        await new Promise((r) => setTimeout(r, ms));
        return undefined;
      },
    };
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
    cleanup.push(() => fs.rmSync(proc, { recursive: true, force: true }));
    fs.mkdirSync(path.join(proc, '30'));
    fs.writeFileSync(path.join(proc, '30', 'cgroup'), '0::/kubepods/pod11111111-1111-4111-8111-111111111111/' + 'ab'.repeat(32) + '\n');
    const resolver = new PodIdentityResolver({ pods: slow, procRoot: proc, missWaitMs: 30 });
    const t0 = Date.now();
    expect(await resolver.resolvePeer(30)).toBeUndefined();
    expect(calls).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
  });
});

describe('subjects', () => {
  it('parse and format round-trip; invalid ones are refused', () => {
    for (const s of ['uid:0', 'gid:4294967295', 'ns:team-a', 'sa:team-a/reader', 'sa:kube-system/my.sa']) {
      expect(formatSubject(parseSubject(s))).toBe(s);
    }
    for (const s of ['uid:-1', 'uid:4294967296', 'ns:Team', 'ns:', 'sa:team-a', 'sa:a/b/c', 'user:1', 'ns:a_b']) {
      expect(() => parseSubject(s), s).toThrow();
    }
  });
});
