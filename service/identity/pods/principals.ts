// Who a caller "is" for grants and quotas: its uid, its gids, and, only when
// its pod was resolved, its Kubernetes namespace and service account.
//
// This is the seam between pod identity and policy. A grant or quota names
// one subject; a caller matches it when the subject is among its principals.
// A peer whose pod cannot be resolved has uid/gid principals only, so a
// namespace or service-account grant never applies to it (fail closed).
//
// Text form (config files, CLI, audit):
//   uid:1000   gid:100   ns:team-a   sa:team-a/reader
// ("sa:" mirrors Kubernetes' system:serviceaccount:<ns>:<name>.)

import type { PodIdentity } from './resolver';

export type Subject =
  | { kind: 'uid'; uid: number }
  | { kind: 'gid'; gid: number }
  | { kind: 'namespace'; namespace: string }
  | { kind: 'serviceAccount'; namespace: string; name: string };

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
  /** Supplementary groups (from /proc/PID/status). */
  groups?: readonly number[];
}

// DNS-1123 label (namespaces) and subdomain (service account names).
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseSubject(text: string): Subject {
  const m = /^(uid|gid|ns|sa):(.+)$/.exec(text.trim());
  if (!m) throw new Error(`invalid subject ${JSON.stringify(text)}: expected uid:N, gid:N, ns:NAMESPACE or sa:NAMESPACE/NAME`);
  const [, kind, rest] = m as unknown as [string, string, string];
  switch (kind) {
    case 'uid':
    case 'gid': {
      if (!/^\d{1,10}$/.test(rest) || Number(rest) > 0xffffffff) throw new Error(`invalid ${kind} in ${JSON.stringify(text)}`);
      return kind === 'uid' ? { kind: 'uid', uid: Number(rest) } : { kind: 'gid', gid: Number(rest) };
    }
    case 'ns':
      if (!DNS_LABEL.test(rest)) throw new Error(`invalid namespace in ${JSON.stringify(text)}`);
      return { kind: 'namespace', namespace: rest };
    default: {
      const parts = rest.split('/');
      if (parts.length !== 2 || !DNS_LABEL.test(parts[0]!) || !DNS_SUBDOMAIN.test(parts[1]!)) {
        throw new Error(`invalid service account in ${JSON.stringify(text)}: expected sa:NAMESPACE/NAME`);
      }
      return { kind: 'serviceAccount', namespace: parts[0]!, name: parts[1]! };
    }
  }
}

export function formatSubject(s: Subject): string {
  switch (s.kind) {
    case 'uid':
      return `uid:${s.uid}`;
    case 'gid':
      return `gid:${s.gid}`;
    case 'namespace':
      return `ns:${s.namespace}`;
    case 'serviceAccount':
      return `sa:${s.namespace}/${s.name}`;
  }
}

/** Every subject the caller matches, most specific first. */
export function principalsOf(cred: PeerCredentials, pod: Pick<PodIdentity, 'namespace' | 'serviceAccount'> | undefined): Subject[] {
  const out: Subject[] = [];
  if (pod) {
    out.push({ kind: 'serviceAccount', namespace: pod.namespace, name: pod.serviceAccount });
    out.push({ kind: 'namespace', namespace: pod.namespace });
  }
  out.push({ kind: 'uid', uid: cred.uid });
  const gids = new Set<number>([cred.gid, ...(cred.groups ?? [])]);
  for (const g of gids) out.push({ kind: 'gid', gid: g });
  return out;
}

export function subjectMatches(subject: Subject, principals: readonly Subject[]): boolean {
  const key = formatSubject(subject);
  return principals.some((p) => formatSubject(p) === key);
}
