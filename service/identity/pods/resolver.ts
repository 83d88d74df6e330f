// Map a peer process (the pid from SO_PEERCRED) to its Kubernetes pod
// identity: /proc/PID/cgroup -> pod UID -> pods API cache -> namespace,
// name, service account.
//
// Never throws for a peer it cannot resolve: a host process, a pod not (yet)
// in the cache, a pid that already exited, an unreadable /proc entry all give
// `undefined`, and the caller then has uid/gid-based rights only.
//
// Trust: the pod identity is exactly as strong as the cgroup hierarchy's
// write protection. An unprivileged container cannot move itself into
// another pod's cgroup; a privileged container (or a host root process) can,
// and is root on the node anyway. The pid is read once, right after the
// connection is accepted: the window for pid reuse is the peer exiting and
// its pid being recycled between accept() and this read.

import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { podFromCgroupFile, type CgroupPodInfo, type QosClass } from './cgroup-path';
import type { PodRecord } from './pods-api';

export interface PodIdentity {
  namespace: string;
  name: string;
  podUid: string;
  serviceAccount: string;
  containerId?: string;
  qosClass: QosClass;
  nodeName?: string;
}

/** What the resolver needs from the pods cache (PodWatcher implements it). */
export interface PodLookup {
  get(uid: string): PodRecord | undefined;
  waitForPod?(uid: string, timeoutMs: number): Promise<PodRecord | undefined>;
}

export interface ResolverOptions {
  pods: PodLookup;
  /** Root of procfs; tests point it elsewhere. Default "/proc". */
  procRoot?: string;
  /**
   * When the pod UID is not cached, wait this long for the watch to deliver
   * it (a pod that connects right after it started). Default 1000 ms; 0 disables.
   */
  missWaitMs?: number;
  /** Called for every resolution attempt that did not produce an identity, with the reason. */
  onUnresolved?: (pid: number, reason: string, cgroup?: CgroupPodInfo) => void;
}

export type ResolvePeer = (pid: number) => Promise<PodIdentity | undefined>;
export type ResolvePeerSync = (pid: number) => PodIdentity | undefined;

export class PodIdentityResolver {
  private readonly procRoot: string;
  private readonly missWaitMs: number;

  constructor(private readonly opts: ResolverOptions) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.missWaitMs = opts.missWaitMs ?? 1000;
  }

  /** Read and parse the peer's cgroup file; undefined when it is not in a pod or cannot be read. */
  async cgroupOf(pid: number): Promise<CgroupPodInfo | undefined> {
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    let text: string;
    try {
      text = await fsp.readFile(path.join(this.procRoot, String(pid), 'cgroup'), 'utf8');
    } catch {
      return undefined;
    }
    try {
      return podFromCgroupFile(text);
    } catch {
      return undefined;
    }
  }

  /** Synchronous cgroupOf (one small procfs read): for callers that cannot await. */
  cgroupOfSync(pid: number): CgroupPodInfo | undefined {
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    try {
      return podFromCgroupFile(fs.readFileSync(path.join(this.procRoot, String(pid), 'cgroup'), 'utf8'));
    } catch {
      return undefined;
    }
  }

  readonly resolvePeer: ResolvePeer = async (pid: number) => {
    try {
      if (!this.checkPid(pid)) return undefined;
      const cg = await this.cgroupOf(pid);
      if (!cg) return this.notInPod(pid);
      let pod = this.opts.pods.get(cg.podUid);
      if (!pod && this.missWaitMs > 0 && this.opts.pods.waitForPod) {
        pod = await this.opts.pods.waitForPod(cg.podUid, this.missWaitMs);
      }
      return this.identity(pid, cg, pod);
    } catch (e) {
      this.unresolved(pid, `resolver error: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  };

  /**
   * resolvePeer without the wait for a just-started pod: for a synchronous
   * identify step at connection accept. Same rules, never throws.
   */
  readonly resolvePeerSync = (pid: number): PodIdentity | undefined => {
    try {
      if (!this.checkPid(pid)) return undefined;
      const cg = this.cgroupOfSync(pid);
      if (!cg) return this.notInPod(pid);
      return this.identity(pid, cg, this.opts.pods.get(cg.podUid));
    } catch (e) {
      this.unresolved(pid, `resolver error: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  };

  private checkPid(pid: number): boolean {
    if (Number.isSafeInteger(pid) && pid > 0) return true;
    // pid 0: SO_PEERCRED of a peer in a pid namespace we cannot see
    // (the broker container needs hostPID for pod identity).
    this.unresolved(pid, 'no pid (peer in a pid namespace the broker cannot see?)');
    return false;
  }

  private notInPod(pid: number): undefined {
    this.unresolved(pid, 'not in a pod cgroup (or /proc entry unreadable)');
    return undefined;
  }

  private identity(pid: number, cg: CgroupPodInfo, pod: PodRecord | undefined): PodIdentity | undefined {
    if (!pod) {
      this.unresolved(pid, `pod ${cg.podUid} not known to the pods API cache`, cg);
      return undefined;
    }
    const id: PodIdentity = {
      namespace: pod.namespace,
      name: pod.name,
      podUid: pod.uid,
      serviceAccount: pod.serviceAccount,
      qosClass: cg.qosClass,
    };
    if (cg.containerId !== undefined) id.containerId = cg.containerId;
    if (pod.nodeName !== undefined) id.nodeName = pod.nodeName;
    return id;
  }

  private unresolved(pid: number, reason: string, cg?: CgroupPodInfo): void {
    try {
      this.opts.onUnresolved?.(pid, reason, cg);
    } catch {
      /* a logging hook must not break resolution */
    }
  }
}

/** A resolver that never resolves anything: pod identity disabled, or not on Kubernetes. */
export const resolveNothing: ResolvePeer = async () => undefined;
export const resolveNothingSync: ResolvePeerSync = () => undefined;
