// Who is calling: taken from SO_PEERCRED/SO_PEERGROUPS of the caller's Unix
// connection when it connected, never from anything the caller sends.
export interface Caller {
  pid: number;
  uid: number;
  gid: number;
  /** Supplementary groups at connect time (SO_PEERGROUPS). */
  groups: number[];
  isAdmin: boolean;
  /** Kubernetes pod of the peer, when pod identity is on and the pod is known. */
  pod?: { namespace: string; name: string; serviceAccount: string };
}

export function callerGids(caller: Pick<Caller, 'gid' | 'groups'>): number[] {
  return caller.groups.includes(caller.gid) ? caller.groups : [caller.gid, ...caller.groups];
}
