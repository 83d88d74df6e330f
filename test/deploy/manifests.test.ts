// Offline checks of deploy/kubernetes: every document validated by the
// matching kubernetes-models (4.5.x) class, unknown fields caught by a
// TypeScript excess-property check against the same package's types, the
// kustomization's references resolved, the optional components applied and
// re-validated, and the security posture asserted.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import * as YAML from 'yaml';
import { parseConfig } from '../../service/config';

const ROOT = path.resolve(__dirname, '../..');
const K8S = path.join(ROOT, 'deploy/kubernetes');
const NAMESPACE = 'shmbroker-system';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Doc {
  file: string;
  index: number;
  obj: Obj;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

function loadDocs(file: string): Doc[] {
  const text = fs.readFileSync(file, 'utf8');
  const docs = YAML.parseAllDocuments(text, { strict: true, uniqueKeys: true });
  return docs.flatMap((d, index) => {
    if (d.errors.length) throw new Error(`${file}#${index}: ${d.errors.map((e) => e.message).join('; ')}`);
    const obj = d.toJS() as Obj | null;
    return obj === null ? [] : [{ file: path.relative(ROOT, file), index, obj }];
  });
}

const isKustomize = (o: Obj): boolean => typeof o['apiVersion'] === 'string' && o['apiVersion'].startsWith('kustomize.config.k8s.io/');

/** kubernetes-models module for an apiVersion/kind: "apps/v1" + DaemonSet -> kubernetes-models/apps/v1/DaemonSet */
function modelFor(apiVersion: string, kind: string): { modulePath: string; cls: new (o: Obj) => { validate(): void } } {
  const modulePath = `kubernetes-models/${apiVersion}/${kind}`;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(modulePath) as Record<string, new (o: Obj) => { validate(): void }>;
  const cls = mod[kind];
  if (!cls) throw new Error(`no ${kind} in ${modulePath}`);
  return { modulePath, cls };
}

const ALL_FILES = yamlFiles(K8S);
const ALL_DOCS = ALL_FILES.flatMap(loadDocs);
const K8S_DOCS = ALL_DOCS.filter((d) => !isKustomize(d.obj));

function find(kind: string, name: string, docs: Doc[] = ALL_DOCS): Obj {
  const d = docs.find((x) => x.obj['kind'] === kind && x.obj['metadata']?.['name'] === name);
  if (!d) throw new Error(`no ${kind}/${name} in deploy/kubernetes`);
  return d.obj;
}

// ---- a small RFC 6902 subset (add, replace, remove, test): what our components use

function pointer(p: string): string[] {
  if (!p.startsWith('/')) throw new Error(`bad JSON pointer ${p}`);
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function applyJsonPatch(target: Obj, ops: Obj[]): Obj {
  const doc = structuredClone(target);
  for (const op of ops) {
    const parts = pointer(op['path']);
    const last = parts.pop()!;
    let parent: any = doc; // eslint-disable-line @typescript-eslint/no-explicit-any
    for (const p of parts) {
      parent = Array.isArray(parent) ? parent[Number(p)] : parent?.[p];
      if (parent === undefined) throw new Error(`patch path ${op['path']} does not exist`);
    }
    const isArr = Array.isArray(parent);
    switch (op['op']) {
      case 'add':
        if (isArr) {
          if (last === '-') parent.push(op['value']);
          else parent.splice(Number(last), 0, op['value']);
        } else parent[last] = op['value'];
        break;
      case 'replace':
        if (!(isArr ? Number(last) < parent.length : last in parent)) throw new Error(`replace: ${op['path']} does not exist`);
        parent[isArr ? Number(last) : last] = op['value'];
        break;
      case 'remove':
        if (isArr) parent.splice(Number(last), 1);
        else delete parent[last];
        break;
      case 'test':
        expect(parent[isArr ? Number(last) : last], `test op at ${op['path']}`).toEqual(op['value']);
        break;
      default:
        throw new Error(`unsupported patch op ${op['op']}`);
    }
  }
  return doc;
}

function podSpecOf(o: Obj): Obj | undefined {
  if (o['kind'] === 'Pod') return o['spec'];
  if (['DaemonSet', 'Deployment', 'StatefulSet', 'ReplicaSet', 'Job'].includes(o['kind'])) return o['spec']?.['template']?.['spec'];
  return undefined;
}

function containersOf(spec: Obj): Obj[] {
  return [...(spec['initContainers'] ?? []), ...(spec['containers'] ?? [])];
}

function hostPathsOf(spec: Obj): string[] {
  return (spec['volumes'] ?? []).filter((v: Obj) => v['hostPath']).map((v: Obj) => v['hostPath']['path']);
}

/** hostPath volume name -> path */
function hostPathVolumes(spec: Obj): Map<string, string> {
  return new Map((spec['volumes'] ?? []).filter((v: Obj) => v['hostPath']).map((v: Obj) => [v['name'], v['hostPath']['path']]));
}

// ---------------------------------------------------------------------------

describe('deploy/kubernetes: every manifest validates offline (kubernetes-models 4.5.x)', () => {
  it('uses the pinned kubernetes-models', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const version = (require('kubernetes-models/package.json') as { version: string }).version;
    expect(version).toMatch(/^4\.5\./);
  });

  it('found the manifests', () => {
    expect(ALL_FILES.length).toBeGreaterThanOrEqual(9);
    const kinds = new Set(K8S_DOCS.map((d) => d.obj['kind']));
    for (const k of ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ConfigMap', 'DaemonSet', 'Pod', 'ResourceQuota']) {
      expect(kinds, k).toContain(k);
    }
  });

  for (const d of K8S_DOCS) {
    it(`${d.file}#${d.index} ${d.obj['kind']}/${d.obj['metadata']?.['name']}`, () => {
      const { cls } = modelFor(d.obj['apiVersion'], d.obj['kind']);
      expect(() => new cls(d.obj).validate()).not.toThrow();
      expect(d.obj['metadata']?.['name'], 'metadata.name').toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    });
  }

  it('the validator does reject broken manifests (sanity check of the check)', () => {
    const ds = structuredClone(find('DaemonSet', 'shmbroker'));
    ds['spec']['template']['spec']['containers'][0]['securityContext']['privileged'] = 'no';
    const { cls } = modelFor('apps/v1', 'DaemonSet');
    expect(() => new cls(ds).validate()).toThrow(/privileged must be boolean/);
    const noSelector = structuredClone(find('DaemonSet', 'shmbroker'));
    delete noSelector['spec']['selector'];
    expect(() => new cls(noSelector).validate()).toThrow(/selector/);
  });

  describe('no unknown fields (TypeScript excess-property check against kubernetes-models types)', () => {
    let diagnostics: string[] = [];
    beforeAll(() => {
      diagnostics = typecheck(K8S_DOCS.map((d) => d.obj));
    }, 60_000);

    it('every document type-checks as its kubernetes-models interface', () => {
      expect(diagnostics).toEqual([]);
    });

    it('and a typo is caught (sanity check of the check)', () => {
      const ds = structuredClone(find('DaemonSet', 'shmbroker'));
      ds['spec']['template']['spec']['containers'][0]['readinesProbe'] = ds['spec']['template']['spec']['containers'][0]['readinessProbe'];
      const out = typecheck([ds]);
      expect(out.join('\n')).toMatch(/readinesProbe/);
    }, 60_000);
  });
});

/** Type-check objects as object literals of their kubernetes-models interfaces; returns diagnostics. */
function typecheck(objs: Obj[]): string[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-typecheck-'));
  try {
    const lines: string[] = [];
    objs.forEach((o, i) => {
      const { modulePath } = modelFor(o['apiVersion'], o['kind']);
      const abs = path.join(ROOT, 'node_modules', modulePath);
      lines.push(`import type { I${o['kind']} as T${i} } from ${JSON.stringify(abs)};`);
      lines.push(`export const v${i}: T${i} = ${JSON.stringify(o, null, 1)};`);
    });
    const file = path.join(dir, 'manifests.ts');
    fs.writeFileSync(file, lines.join('\n'));
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.Node16,
      moduleResolution: ts.ModuleResolutionKind.Node16,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    return ts
      .getPreEmitDiagnostics(program)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('kustomization', () => {
  const kfile = path.join(K8S, 'kustomization.yaml');
  const k = loadDocs(kfile)[0]!.obj;

  it('every resource exists and is a manifest of this directory', () => {
    expect(k['kind']).toBe('Kustomization');
    for (const r of k['resources'] as string[]) {
      expect(fs.existsSync(path.join(K8S, r)), r).toBe(true);
    }
    // Nothing in the directory (but examples and components) is left out.
    const top = fs.readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...(k['resources'] as string[])].sort()).toEqual(top.sort());
  });

  it('namespace, and every namespaced object already in it', () => {
    expect(k['namespace']).toBe(NAMESPACE);
    for (const r of k['resources'] as string[]) {
      for (const d of loadDocs(path.join(K8S, r))) {
        if (['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(d.obj['kind'])) continue;
        expect(d.obj['metadata']['namespace'], `${r} ${d.obj['kind']}`).toBe(NAMESPACE);
      }
    }
  });

  it('every image the workloads use is pinned by the kustomization', () => {
    const names = new Set((k['images'] as Obj[]).map((i) => i['name']));
    for (const i of k['images'] as Obj[]) expect(i['newTag'] ?? i['digest'], i['name']).toBeTruthy();
    const ds = find('DaemonSet', 'shmbroker');
    for (const c of containersOf(ds['spec']['template']['spec'])) expect(names, c['name']).toContain(c['image']);
    const comp = loadDocs(path.join(K8S, 'components/kmod-device/kustomization.yaml'))[0]!.obj;
    const loader = find('DaemonSet', 'shmbroker-kmod-loader');
    const compNames = new Set((comp['images'] as Obj[]).map((i) => i['name']));
    for (const c of containersOf(loader['spec']['template']['spec'])) expect(compNames, c['name']).toContain(c['image']);
  });

  for (const comp of ['kmod-build', 'kmod-device']) {
    it(`component ${comp}: its resources exist and its patches apply to a still-valid DaemonSet`, () => {
      const dir = path.join(K8S, 'components', comp);
      const c = loadDocs(path.join(dir, 'kustomization.yaml'))[0]!.obj;
      expect(c['kind']).toBe('Component');
      for (const r of c['resources'] ?? []) expect(fs.existsSync(path.join(dir, r)), r).toBe(true);
      const ds = patchedDaemonSet(comp);
      const { cls } = modelFor('apps/v1', 'DaemonSet');
      expect(() => new cls(ds).validate()).not.toThrow();
      expect(typecheck([ds])).toEqual([]);
    });
  }
});

/**
 * What kustomize renders for the base plus these components, in this order:
 * each component adds its resources, then each patch applies to every object
 * its target matches; a patch whose target is absent is skipped, as kustomize
 * skips it. (The kubectl kustomize suite below checks the same with the real
 * renderer where kubectl is installed.)
 */
function render(components: string[]): Obj[] {
  const base = loadDocs(path.join(K8S, 'kustomization.yaml'))[0]!.obj;
  let objs = (base['resources'] as string[]).flatMap((r) => loadDocs(path.join(K8S, r)).map((d) => d.obj));
  for (const comp of components) {
    const dir = path.join(K8S, 'components', comp);
    const c = loadDocs(path.join(dir, 'kustomization.yaml'))[0]!.obj;
    for (const r of (c['resources'] ?? []) as string[]) objs.push(...loadDocs(path.join(dir, r)).map((d) => d.obj));
    for (const p of (c['patches'] ?? []) as Obj[]) {
      expect(p['target']['kind']).toBe('DaemonSet');
      const ops = YAML.parse(p['patch']) as Obj[];
      objs = objs.map((o) => (o['kind'] === p['target']['kind'] && o['metadata']['name'] === p['target']['name'] ? applyJsonPatch(o, ops) : o));
    }
  }
  return objs;
}

function daemonSetOf(objs: Obj[], name: string): Obj | undefined {
  return objs.find((o) => o['kind'] === 'DaemonSet' && o['metadata']['name'] === name);
}

function patchedDaemonSet(component: string): Obj {
  return daemonSetOf(render([component]), 'shmbroker')!;
}

// ---------------------------------------------------------------------------

describe('security posture', () => {
  const ds = find('DaemonSet', 'shmbroker');
  const pod = ds['spec']['template']['spec'];
  const broker = pod['containers'].find((c: Obj) => c['name'] === 'broker');
  const init = pod['initContainers'].find((c: Obj) => c['name'] === 'kmod');

  it('one broker container and one kmod init container', () => {
    expect(pod['containers'].map((c: Obj) => c['name'])).toEqual(['broker']);
    expect(pod['initContainers'].map((c: Obj) => c['name'])).toEqual(['kmod']);
  });

  it('no container anywhere in deploy/kubernetes is privileged, escalates, or keeps default capabilities', () => {
    let n = 0;
    for (const d of K8S_DOCS) {
      const spec = podSpecOf(d.obj);
      if (!spec) continue;
      for (const c of containersOf(spec)) {
        n++;
        const sc = c['securityContext'] ?? {};
        const where = `${d.file} ${c['name']}`;
        expect(sc['privileged'] ?? false, where).toBe(false);
        expect(sc['allowPrivilegeEscalation'], where).toBe(false);
        expect(sc['readOnlyRootFilesystem'], where).toBe(true);
        expect(sc['capabilities']?.['drop'], where).toEqual(['ALL']);
        expect(sc['procMount'] ?? 'Default', where).toBe('Default');
        const seccomp = sc['seccompProfile']?.['type'] ?? spec['securityContext']?.['seccompProfile']?.['type'];
        expect(seccomp, where).toBe('RuntimeDefault');
      }
      expect(spec['hostNetwork'] ?? false, d.file).toBe(false);
      expect(spec['hostIPC'] ?? false, d.file).toBe(false);
    }
    expect(n).toBeGreaterThanOrEqual(4);
  });

  it('the broker adds no capability; the init container adds exactly SYS_MODULE', () => {
    expect(broker['securityContext']['capabilities']['add'] ?? []).toEqual([]);
    expect(init['securityContext']['capabilities']['add']).toEqual(['SYS_MODULE']);
  });

  it('only the hostPaths /run/shmbroker, /var/lib/shmbroker and (init, read-only) /lib/modules', () => {
    expect(hostPathsOf(pod).sort()).toEqual(['/lib/modules', '/run/shmbroker', '/var/lib/shmbroker']);
    const hp = hostPathVolumes(pod);
    const brokerHostMounts = broker['volumeMounts'].filter((m: Obj) => hp.has(m['name']));
    expect(brokerHostMounts.map((m: Obj) => [hp.get(m['name']), m['mountPath']]).sort()).toEqual([
      ['/run/shmbroker', '/run/shmbroker'],
      ['/var/lib/shmbroker', '/var/lib/shmbroker'],
    ]);
    const initHostMounts = init['volumeMounts'].filter((m: Obj) => hp.has(m['name']));
    for (const m of initHostMounts) {
      if (hp.get(m['name']) === '/lib/modules') expect(m['readOnly'], 'init /lib/modules').toBe(true);
    }
    expect(initHostMounts.map((m: Obj) => hp.get(m['name'])).sort()).toEqual(['/lib/modules', '/run/shmbroker']);
    // and no mount propagation back to the host
    for (const c of containersOf(pod)) for (const m of c['volumeMounts'] ?? []) expect(m['mountPropagation'] ?? 'None').toBe('None');
  });

  it('hostPID is the one host namespace shared (pod identity needs the peers\' pids); no hostNetwork/hostIPC', () => {
    expect(pod['hostPID']).toBe(true);
    expect(pod['hostNetwork']).toBe(false);
    expect(pod['hostIPC']).toBe(false);
    expect(pod['shareProcessNamespace'] ?? false).toBe(false);
  });

  it('probes are HTTP GETs on the metrics port: liveness /healthz, readiness /readyz, startup /healthz (no exec of the CLI)', () => {
    const want: Record<string, string> = { livenessProbe: '/healthz', readinessProbe: '/readyz', startupProbe: '/healthz' };
    for (const [probe, p] of Object.entries(want)) {
      expect(broker[probe]?.['exec'], probe).toBeUndefined();
      expect(broker[probe]['httpGet'], probe).toEqual({ path: p, port: 'metrics' });
      expect(broker[probe]['timeoutSeconds'], probe).toBeGreaterThanOrEqual(1);
    }
    expect(broker['ports'].map((x: Obj) => x['name'])).toContain('metrics');
    // Liveness must not be readiness: a live but not-ready broker is not restarted.
    expect(broker['livenessProbe']['httpGet']['path']).not.toBe(broker['readinessProbe']['httpGet']['path']);
    expect(broker['args']).toContain('--runtime-dir=/run/shmbroker');
  });

  it('every container has cpu and memory requests and limits', () => {
    for (const d of K8S_DOCS) {
      const spec = podSpecOf(d.obj);
      if (!spec) continue;
      for (const c of containersOf(spec)) {
        for (const kind of ['requests', 'limits']) {
          for (const r of ['cpu', 'memory']) expect(c['resources']?.[kind]?.[r], `${d.file} ${c['name']} ${kind}.${r}`).toBeDefined();
        }
      }
    }
  });

  it('system-node-critical, covered by a quota for clusters that restrict it', () => {
    expect(pod['priorityClassName']).toBe('system-node-critical');
    const q = find('ResourceQuota', 'shmbroker-critical-pods');
    expect(q['spec']['scopeSelector']['matchExpressions'][0]).toMatchObject({ scopeName: 'PriorityClass', operator: 'In', values: ['system-node-critical'] });
  });

  it('rolling update never runs two brokers on one node (maxSurge 0), one node at a time', () => {
    expect(ds['spec']['updateStrategy']).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
  });

  it('pod identity inputs: NODE_NAME from spec.nodeName, the service account exists with only the RBAC it needs', () => {
    const env = broker['env'].find((e: Obj) => e['name'] === 'NODE_NAME');
    expect(env['valueFrom']['fieldRef']['fieldPath']).toBe('spec.nodeName');
    expect(pod['serviceAccountName']).toBe('shmbroker');
    find('ServiceAccount', 'shmbroker');
    const cr = find('ClusterRole', 'shmbroker-pod-reader');
    expect(cr['rules']).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }]);
    const role = find('Role', 'shmbroker-events');
    expect(role['rules']).toEqual([{ apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] }]);
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      const b = K8S_DOCS.filter((d) => d.obj['kind'] === kind).map((d) => d.obj);
      for (const x of b) expect(x['subjects']).toEqual([{ kind: 'ServiceAccount', name: 'shmbroker', namespace: NAMESPACE }]);
    }
    // No wildcard and no secrets anywhere.
    for (const d of K8S_DOCS.filter((x) => ['Role', 'ClusterRole'].includes(x.obj['kind']))) {
      const flat = JSON.stringify(d.obj['rules']);
      expect(flat).not.toContain('*');
      expect(flat).not.toContain('secrets');
    }
  });

  it('the ConfigMap is a configuration the broker accepts, and metrics are scraped where the broker serves them', () => {
    const cm = find('ConfigMap', 'shmbroker-config');
    const cfg = parseConfig(cm['data']['broker.yaml'], 'configmap.yaml:broker.yaml');
    expect(cfg.metricsAddr).toBe('0.0.0.0:9464');
    const ann = ds['spec']['template']['metadata']['annotations'];
    expect(ann['prometheus.io/scrape']).toBe('true');
    expect(ann['prometheus.io/path']).toBe('/metrics');
    expect(ann['prometheus.io/port']).toBe(cfg.metricsAddr!.split(':').pop());
    expect(broker['ports']).toContainEqual({ name: 'metrics', containerPort: Number(ann['prometheus.io/port']), protocol: 'TCP' });
    const cfgMount = broker['volumeMounts'].find((m: Obj) => m['mountPath'] === '/etc/shmbroker');
    expect(cfgMount['readOnly']).toBe(true);
    expect(broker['args']).toContain('--config=/etc/shmbroker/broker.yaml');
  });

  it('a NetworkPolicy admits only the monitoring namespace, only on the metrics port, to the broker pods', () => {
    const np = find('NetworkPolicy', 'shmbroker-metrics');
    // It selects exactly the broker's pods.
    expect(np['spec']['podSelector']['matchLabels']).toEqual(ds['spec']['template']['metadata']['labels']);
    expect(np['spec']['policyTypes']).toEqual(['Ingress']);
    expect(np['spec']['ingress']).toHaveLength(1);
    const rule = np['spec']['ingress'][0];
    expect(rule['from']).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    expect(rule['ports']).toEqual([{ protocol: 'TCP', port: 'metrics' }]);
    // The named port is the one the broker listens on for metrics and probes.
    const port = broker['ports'].find((p: Obj) => p['name'] === 'metrics');
    const cfg = parseConfig(find('ConfigMap', 'shmbroker-config')['data']['broker.yaml']);
    expect(port['containerPort']).toBe(Number(cfg.metricsAddr!.split(':').pop()));
  });

  it('component kmod-build adds only /usr/src, read-only, to the init container', () => {
    const p = patchedDaemonSet('kmod-build')['spec']['template']['spec'];
    expect(hostPathsOf(p).sort()).toEqual(['/lib/modules', '/run/shmbroker', '/usr/src', '/var/lib/shmbroker']);
    const hp = hostPathVolumes(p);
    const m = p['initContainers'][0]['volumeMounts'].find((x: Obj) => hp.get(x['name']) === '/usr/src');
    expect(m).toMatchObject({ mountPath: '/usr/src', readOnly: true });
    expect(p['containers'][0]['volumeMounts']).toEqual(broker['volumeMounts']);
  });

  // The README's own example: the loader DaemonSet (kmod-device) is the one
  // that builds the module, so it needs the headers kmod-build mounts.
  // kustomize applies components in order and a patch sees only what is
  // rendered so far, so kmod-build comes after kmod-device, as the README says.
  const readmeOrder = [...fs.readFileSync(path.join(ROOT, 'deploy/README.md'), 'utf8').matchAll(/^ {2}- \.\.\/deploy\/kubernetes\/components\/([a-z-]+)/gm)].map((m) => m[1]!);
  it("deploy/README.md's overlay lists kmod-device, then kmod-build", () => {
    expect(readmeOrder).toEqual(['kmod-device', 'kmod-build']);
  });
  for (const order of [readmeOrder]) {
    it(`components ${order.join(' + ')}: both DaemonSets' kmod init containers get /usr/src read-only; no long-running container does`, () => {
      const objs = render(order);
      for (const name of ['shmbroker', 'shmbroker-kmod-loader']) {
        const ds = daemonSetOf(objs, name)!;
        expect(ds, name).toBeDefined();
        const spec = ds['spec']['template']['spec'];
        const hp = hostPathVolumes(spec);
        expect([...hp.values()], name).toContain('/usr/src');
        const init = spec['initContainers'].find((c: Obj) => c['name'] === 'kmod');
        expect(init['volumeMounts'].find((m: Obj) => hp.get(m['name']) === '/usr/src'), name).toMatchObject({ mountPath: '/usr/src', readOnly: true });
        for (const c of spec['containers']) expect(c['volumeMounts'] ?? [], `${name}/${c['name']}`).not.toContainEqual(expect.objectContaining({ mountPath: '/usr/src' }));
        const { cls } = modelFor('apps/v1', 'DaemonSet');
        expect(() => new cls(ds).validate()).not.toThrow();
      }
    });
  }

  it('component kmod-build alone renders no loader DaemonSet (its loader patch is skipped)', () => {
    expect(daemonSetOf(render(['kmod-build']), 'shmbroker-kmod-loader')).toBeUndefined();
  });

  it('component kmod-device requests the device from a device plugin instead of any privilege', () => {
    const p = patchedDaemonSet('kmod-device')['spec']['template']['spec'];
    const c = p['containers'][0];
    expect(c['resources']['limits']['squat.ai/shmbroker']).toBe('1');
    expect(c['args']).toContain('--backend=kmod');
    expect(c['args']).not.toContain('--backend=auto');
    // The one capability the module checks at open (kmod/README.md), nothing else.
    expect(c['securityContext']).toEqual({
      ...broker['securityContext'],
      capabilities: { ...broker['securityContext']['capabilities'], add: ['IPC_LOCK'] },
    });
    expect(hostPathsOf(p).sort()).toEqual(hostPathsOf(pod).sort());
  });

  it('the example client mounts only the socket directory, read-only, as a non-root uid without an API token', () => {
    const client = find('Pod', 'shmbroker-client');
    const spec = client['spec'];
    expect(hostPathsOf(spec)).toEqual(['/run/shmbroker']);
    expect(spec['containers'][0]['volumeMounts']).toEqual([{ name: 'shmbroker', mountPath: '/run/shmbroker', readOnly: true }]);
    expect(spec['securityContext']['runAsNonRoot']).toBe(true);
    expect(spec['securityContext']['runAsUser']).toBeGreaterThan(0);
    expect(spec['automountServiceAccountToken']).toBe(false);
    expect(spec['hostPID'] ?? false).toBe(false);
    expect(spec['containers'][0]['args'][0]).toMatch(/acquire\('demo'/);
  });
});

// ---------------------------------------------------------------------------
// `kubectl kustomize` (the renderer behind `kubectl apply -k`), offline, where
// kubectl is installed: the base and an overlay with both components render,
// and every rendered object still validates and keeps the posture.

function kubectlPath(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(dir, 'kubectl');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}
const KUBECTL = kubectlPath();

function kustomize(dir: string): Obj[] {
  const r = spawnSync(KUBECTL!, ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
  return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

describe.skipIf(!KUBECTL)('kubectl kustomize renders what `kubectl apply -k` would send', () => {
  it('base: every object validates, in the namespace, images pinned, posture kept', () => {
    const objs = kustomize(K8S);
    expect(objs.map((o) => o['kind']).sort()).toEqual(
      ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet', 'Namespace', 'NetworkPolicy', 'ResourceQuota', 'Role', 'RoleBinding', 'ServiceAccount'].sort(),
    );
    for (const o of objs) {
      const { cls } = modelFor(o['apiVersion'], o['kind']);
      expect(() => new cls(o).validate(), `${o['kind']}/${o['metadata']['name']}`).not.toThrow();
      expect(o['metadata']['labels']?.['app.kubernetes.io/part-of']).toBe('shmbroker');
      if (!['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(o['kind'])) expect(o['metadata']['namespace']).toBe(NAMESPACE);
    }
    const ds = objs.find((o) => o['kind'] === 'DaemonSet')!;
    const spec = ds['spec']['template']['spec'];
    for (const c of containersOf(spec)) expect(c['image']).toMatch(/:0\.1\.0$/);
    expect(hostPathsOf(spec).sort()).toEqual(['/lib/modules', '/run/shmbroker', '/var/lib/shmbroker']);
    // The label transformer must not touch the (immutable) selector.
    expect(ds['spec']['selector']['matchLabels']).toEqual({ 'app.kubernetes.io/name': 'shmbroker', 'app.kubernetes.io/component': 'broker' });
  });

  it('overlay with both components renders and validates', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-'));
    try {
      const rel = (p: string): string => path.relative(dir, path.join(K8S, p)) || '.';
      fs.writeFileSync(
        path.join(dir, 'kustomization.yaml'),
        YAML.stringify({
          apiVersion: 'kustomize.config.k8s.io/v1beta1',
          kind: 'Kustomization',
          resources: [rel('')],
          components: [rel('components/kmod-device'), rel('components/kmod-build')],
        }),
      );
      const objs = kustomize(dir);
      for (const o of objs) {
        const { cls } = modelFor(o['apiVersion'], o['kind']);
        expect(() => new cls(o).validate(), `${o['kind']}/${o['metadata']['name']}`).not.toThrow();
      }
      const broker = objs.find((o) => o['kind'] === 'DaemonSet' && o['metadata']['name'] === 'shmbroker')!;
      const c = broker['spec']['template']['spec']['containers'][0];
      expect(c['resources']['limits']['squat.ai/shmbroker']).toBe('1');
      expect(c['args']).toContain('--backend=kmod');
      expect(hostPathsOf(broker['spec']['template']['spec'])).toContain('/usr/src');
      const loader = objs.find((o) => o['kind'] === 'DaemonSet' && o['metadata']['name'] === 'shmbroker-kmod-loader');
      expect(loader?.['metadata']['namespace']).toBe(NAMESPACE);
      // The loader builds the module: its init container gets the headers too.
      const lspec = loader!['spec']['template']['spec'];
      const lhp = hostPathVolumes(lspec);
      expect(lspec['initContainers'][0]['volumeMounts'].find((m: Obj) => lhp.get(m['name']) === '/usr/src')).toMatchObject({ mountPath: '/usr/src', readOnly: true });
      // Our offline renderer agrees with kubectl's on every DaemonSet's volumes and mounts.
      const ours = render(['kmod-device', 'kmod-build']);
      for (const o of objs.filter((x) => x['kind'] === 'DaemonSet')) {
        const mine = daemonSetOf(ours, o['metadata']['name'])!['spec']['template']['spec'];
        const theirs = o['spec']['template']['spec'];
        expect(theirs['volumes'], o['metadata']['name']).toEqual(mine['volumes']);
        expect(containersOf(theirs).map((c) => c['volumeMounts']), o['metadata']['name']).toEqual(containersOf(mine).map((c) => c['volumeMounts']));
      }
      for (const o of objs.filter((x) => x['kind'] === 'DaemonSet')) {
        for (const c of containersOf(o['spec']['template']['spec'])) expect(c['image'], `${o['metadata']['name']}/${c['name']}`).toMatch(/:0\.1\.0$/);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
