// What the broker keeps of a pod (four fields and a static pod's mirror UID),
// and how it reads them from a v1 Pod object. Moved out of pods-api.ts
// unchanged (issue 14).

/** Annotation the kubelet puts on a static pod's mirror pod: the UID the kubelet (and the cgroup path) uses. */
export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  serviceAccount: string;
  nodeName?: string;
  /** For a static pod's mirror: the kubelet-side UID (config hash) that appears in cgroup paths. */
  mirrorUid?: string;
}

/** Extract the fields we need from a v1 Pod object; undefined when it is not a usable pod. */
export function podRecordFromObject(obj: unknown): PodRecord | undefined {
  if (typeof obj !== 'object' || obj === null) return undefined;
  const o = obj as { metadata?: unknown; spec?: unknown };
  const md = (typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {}) as Record<string, unknown>;
  const spec = (typeof o.spec === 'object' && o.spec !== null ? o.spec : {}) as Record<string, unknown>;
  const uid = md['uid'];
  const namespace = md['namespace'];
  const name = md['name'];
  if (typeof uid !== 'string' || typeof namespace !== 'string' || typeof name !== 'string') return undefined;
  if (uid === '' || namespace === '' || name === '') return undefined;
  // serviceAccountName is the field; serviceAccount is its deprecated alias.
  // An absent value means the namespace's "default" account (admission fills
  // it in, but be tolerant of objects that skipped admission).
  const sa =
    typeof spec['serviceAccountName'] === 'string' && spec['serviceAccountName'] !== ''
      ? spec['serviceAccountName']
      : typeof spec['serviceAccount'] === 'string' && spec['serviceAccount'] !== ''
        ? spec['serviceAccount']
        : 'default';
  const rec: PodRecord = { uid: uid.toLowerCase(), namespace, name, serviceAccount: sa as string };
  if (typeof spec['nodeName'] === 'string') rec.nodeName = spec['nodeName'];
  const ann = md['annotations'];
  if (typeof ann === 'object' && ann !== null) {
    const m = (ann as Record<string, unknown>)[MIRROR_ANNOTATION];
    if (typeof m === 'string' && /^[0-9a-f-]{32,36}$/i.test(m)) rec.mirrorUid = m.toLowerCase();
  }
  return rec;
}
