// Parse the contents of /proc/PID/cgroup into the Kubernetes pod (and
// container) the process runs in.
//
// Shapes handled (all seen in the wild; the test file has one real sample
// of each):
//
//   cgroup v2, systemd driver (containerd, CRI-O, cri-dockerd):
//     0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//     0::/kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope                 (Guaranteed: no QoS level)
//     0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/docker-<id>.scope
//   cgroup v2, cgroupfs driver:
//     0::/kubepods/besteffort/pod<uid>/<id>
//     0::/kubepods/pod<uid>/<id>                                                (Guaranteed)
//   cgroup v1: the same paths, once per hierarchy ("4:memory:/kubepods/...",
//     "1:name=systemd:/kubepods.slice/...").
//   A kubelet with a non-default cgroup root (kind, k3s-in-docker, ...):
//     0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope
//   A reader in its own cgroup namespace (the broker in a container on a
//   cgroup v2 node) sees the path relative to its own cgroup:
//     0::/../../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope
//
// The parser therefore never anchors on the start of the path: it looks for
// the pod segment anywhere and takes the container segment right below it.
// Static pods have a 32-hex "uid" (the kubelet's config hash) instead of a
// UUID; it is returned as is, the pods API cache maps it through the
// mirror-pod annotation.
//
// Pure functions, no I/O: resolver.ts does the reading.

export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';

export type ContainerRuntime = 'containerd' | 'crio' | 'docker' | 'podman' | 'unknown';

export interface CgroupPodInfo {
  /** Pod UID as the API server spells it (dashes, lower case), or a static pod's config hash. */
  podUid: string;
  /** Container ID (usually 64 hex) when the process sits in a container's cgroup, else undefined (e.g. conmon, or the pod cgroup itself). */
  containerId?: string;
  /** Container runtime inferred from the scope prefix (systemd driver only; 'unknown' for cgroupfs). */
  runtime?: ContainerRuntime;
  qosClass: QosClass;
  /** 'v1' or 'v2': which line of /proc/PID/cgroup gave the answer. */
  cgroupVersion: 'v1' | 'v2';
  /** The cgroup path the answer came from (for the audit trail and debugging). */
  path: string;
}

export interface CgroupLine {
  hierarchyId: number;
  /** Controllers of a v1 hierarchy ("memory", "cpu,cpuacct", "name=systemd"); empty for the v2 line. */
  controllers: string[];
  path: string;
}

/** Parse /proc/PID/cgroup into its lines. Malformed lines are skipped, never thrown on. */
export function parseCgroupFile(contents: string): CgroupLine[] {
  const out: CgroupLine[] = [];
  for (const raw of contents.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    // "hierarchy-ID:controller-list:cgroup-path"; the path may itself contain ':'
    const first = line.indexOf(':');
    if (first < 0) continue;
    const second = line.indexOf(':', first + 1);
    if (second < 0) continue;
    const idText = line.slice(0, first);
    if (!/^\d+$/.test(idText)) continue;
    const ctrl = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (!path.startsWith('/')) continue;
    out.push({
      hierarchyId: Number(idText),
      controllers: ctrl === '' ? [] : ctrl.split(','),
      path,
    });
  }
  return out;
}

// A pod UID: a UUID (8-4-4-4-12 hex) or a static pod's 32-hex config hash.
// In systemd slice names the dashes are escaped to underscores.
const UID_DASHED = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const UID_UNDERSCORED = '[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}';
const UID_HASH = '[0-9a-f]{32}';

// systemd driver: "<prefix>-kubepods[-<qos>]-pod<uid>.slice" where <prefix>
// is empty or a kubelet cgroup root ("kubelet-").
const SYSTEMD_POD = new RegExp(
  `^(?:[a-z0-9_.]+-)?kubepods(?:-(besteffort|burstable))?-pod(${UID_UNDERSCORED}|${UID_HASH})\\.slice$`,
);
// cgroupfs driver: "pod<uid>" below "kubepods" or "kubepods/<qos>".
const CGROUPFS_POD = new RegExp(`^pod(${UID_DASHED}|${UID_HASH})$`);

const CONTAINER_ID = /^[0-9a-f]{12,128}$/;

// Container scopes under a pod slice (systemd driver).
const SCOPE_PREFIXES: Array<[string, ContainerRuntime]> = [
  ['cri-containerd-', 'containerd'],
  ['crio-', 'crio'],
  ['docker-', 'docker'],
  ['libpod-', 'podman'],
];

function parseScope(segment: string): { id: string; runtime: ContainerRuntime } | undefined {
  if (!segment.endsWith('.scope')) return undefined;
  const base = segment.slice(0, -'.scope'.length);
  // CRI-O runs one conmon per container in "crio-conmon-<id>.scope": that
  // process is not the container, do not attribute a container to it.
  if (base.startsWith('crio-conmon-')) return undefined;
  for (const [prefix, runtime] of SCOPE_PREFIXES) {
    if (base.startsWith(prefix)) {
      const id = base.slice(prefix.length);
      return CONTAINER_ID.test(id) ? { id, runtime } : undefined;
    }
  }
  return undefined;
}

/**
 * Find the pod in one cgroup path. Returns undefined when the path is not
 * below a pod cgroup (host processes, system services, the root "/").
 */
export function parseCgroupPath(path: string): Omit<CgroupPodInfo, 'cgroupVersion'> | undefined {
  const segments = path.split('/').filter((s) => s !== '' && s !== '.' && s !== '..');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;

    const sd = SYSTEMD_POD.exec(seg);
    if (sd) {
      // The slice name alone is specific enough (kubepods, QoS, escaped
      // UID); its ancestors may be missing under a cgroup namespace.
      const qos = (sd[1] as QosClass | undefined) ?? 'guaranteed';
      const podUid = sd[2]!.replace(/_/g, '-');
      const info: Omit<CgroupPodInfo, 'cgroupVersion'> = { podUid, qosClass: qos, path };
      const next = segments[i + 1];
      const scope = next !== undefined ? parseScope(next) : undefined;
      if (scope) {
        info.containerId = scope.id;
        info.runtime = scope.runtime;
      }
      return info;
    }

    const fs = CGROUPFS_POD.exec(seg);
    if (fs) {
      // cgroupfs: ".../kubepods/pod<uid>" (Guaranteed) or ".../kubepods/<qos>/pod<uid>".
      // A relative path (cgroup namespace) may have lost the ancestors; accept
      // the pod segment on its own only when it is unambiguous.
      const parent = segments[i - 1];
      const grand = segments[i - 2];
      let qos: QosClass;
      if (parent === 'besteffort' || parent === 'burstable') {
        if (grand !== undefined && grand !== 'kubepods') continue;
        qos = parent;
      } else if (parent === 'kubepods' || parent === undefined) {
        qos = 'guaranteed';
      } else {
        continue;
      }
      const info: Omit<CgroupPodInfo, 'cgroupVersion'> = { podUid: fs[1]!, qosClass: qos, path };
      const next = segments[i + 1];
      if (next !== undefined && CONTAINER_ID.test(next)) {
        info.containerId = next;
        info.runtime = 'unknown';
      } else if (next !== undefined) {
        // Some runtimes keep the systemd-style scope name under cgroupfs too.
        const scope = parseScope(next);
        if (scope) {
          info.containerId = scope.id;
          info.runtime = scope.runtime;
        }
      }
      return info;
    }
  }
  return undefined;
}

// Order in which v1 hierarchies are consulted: the ones every container
// runtime places processes in first.
const V1_PREFERENCE = ['name=systemd', 'memory', 'pids', 'cpu', 'cpuacct', 'devices'];

/**
 * Parse /proc/PID/cgroup contents into the pod the process runs in. The v2
 * (unified) line is preferred; on a v1 or hybrid host the v1 hierarchies are
 * consulted in a fixed order. Returns undefined for a process outside any pod.
 */
export function podFromCgroupFile(contents: string): CgroupPodInfo | undefined {
  const lines = parseCgroupFile(contents);
  const v2 = lines.filter((l) => l.hierarchyId === 0 && l.controllers.length === 0);
  for (const l of v2) {
    const r = parseCgroupPath(l.path);
    if (r) return { ...r, cgroupVersion: 'v2' };
  }
  const v1 = lines.filter((l) => !(l.hierarchyId === 0 && l.controllers.length === 0));
  const rank = (l: CgroupLine): number => {
    let best = V1_PREFERENCE.length;
    for (const c of l.controllers) {
      const i = V1_PREFERENCE.indexOf(c);
      if (i >= 0 && i < best) best = i;
    }
    return best;
  };
  v1.sort((a, b) => rank(a) - rank(b) || a.hierarchyId - b.hierarchyId);
  for (const l of v1) {
    const r = parseCgroupPath(l.path);
    if (r) return { ...r, cgroupVersion: 'v1' };
  }
  return undefined;
}
