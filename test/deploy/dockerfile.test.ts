// No container engine runs here, so `docker build` is not tested. What can be
// checked offline: the Dockerfile's stages and targets, that every COPY from
// the build context names something that exists and is not ignored, and that
// the paths the Kubernetes manifests exec are the ones the images create.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as YAML from 'yaml';

const ROOT = path.resolve(__dirname, '../..');
const DOCKERFILE = path.join(ROOT, 'deploy/docker/Dockerfile');

interface Instr {
  op: string;
  args: string;
  stage: string;
}

function parse(text: string): Instr[] {
  const joined = text.replace(/\\\n/g, ' ');
  const out: Instr[] = [];
  let stage = '';
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`unparsable Dockerfile line: ${line}`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!;
    if (op === 'FROM') {
      const as = /\bAS\s+([a-z0-9_.-]+)\s*$/i.exec(args);
      stage = as ? as[1]! : `#${out.filter((i) => i.op === 'FROM').length}`;
    }
    out.push({ op, args, stage });
  }
  return out;
}

const instrs = parse(fs.readFileSync(DOCKERFILE, 'utf8'));
const stages = instrs.filter((i) => i.op === 'FROM').map((i) => i.stage);

/** COPY sources and destination, without flags. */
function copyParts(args: string): { flags: string[]; srcs: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  return { flags, srcs: rest.slice(0, -1), dest: rest.at(-1)! };
}

function ignorePatterns(): string[] {
  return fs
    .readFileSync(path.join(ROOT, 'deploy/docker/Dockerfile.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

describe('deploy/docker/Dockerfile (static checks; no docker engine here)', () => {
  it('has the build, kmod-loader and broker stages, broker last (the default target)', () => {
    expect(stages).toEqual(expect.arrayContaining(['build', 'kmod-prebuilt', 'kmod-loader', 'broker']));
    expect(stages.at(-1)).toBe('broker');
  });

  it('every COPY --from names an earlier stage', () => {
    for (const i of instrs.filter((x) => x.op === 'COPY')) {
      const from = /--from=(\S+)/.exec(i.args)?.[1];
      if (!from) continue;
      expect(stages.slice(0, stages.indexOf(i.stage)), i.args).toContain(from);
    }
  });

  it('every COPY from the context names a file that exists and is not dockerignored', () => {
    const ignored = ignorePatterns();
    let n = 0;
    for (const i of instrs.filter((x) => x.op === 'COPY' && !/--from=/.test(x.args))) {
      for (const src of copyParts(i.args).srcs) {
        n++;
        expect(fs.existsSync(path.join(ROOT, src)), `${src} exists`).toBe(true);
        const top = src.split('/')[0]!;
        expect(ignored, `${src} is not ignored`).not.toContain(src);
        expect(ignored, `${src} is not ignored`).not.toContain(top);
      }
    }
    expect(n).toBeGreaterThan(5);
  });

  it('the broker image is the repository layout under /opt/shmbroker, has no npm, and runs `shmbroker serve`', () => {
    const broker = instrs.filter((i) => i.stage === 'broker');
    const dests = broker.filter((i) => i.op === 'COPY').map((i) => copyParts(i.args).dest);
    expect(dests).toEqual(expect.arrayContaining(['dist', 'node_modules', 'proto', 'bin', 'build/Release/shmbroker_native.node', './']));
    expect(broker.find((i) => i.op === 'WORKDIR')?.args).toBe('/opt/shmbroker');
    expect(broker.find((i) => i.op === 'ENTRYPOINT')?.args).toBe('["/opt/shmbroker/bin/shmbroker"]');
    expect(JSON.parse(broker.find((i) => i.op === 'CMD')!.args)[0]).toBe('serve');
    expect(broker.some((i) => i.op === 'RUN' && /rm -rf .*npm/.test(i.args))).toBe(true);
    // No toolchain in the broker: nothing is apt-installed there.
    expect(broker.some((i) => i.op === 'RUN' && /apt-get install/.test(i.args))).toBe(false);
  });

  it('the paths the DaemonSet execs exist in the images', () => {
    const ds = YAML.parse(fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/daemonset.yaml'), 'utf8'));
    const spec = ds.spec.template.spec;
    // The broker container execs nothing for its probes (HTTP GETs); its entry point is the image's.
    expect(spec.containers[0].livenessProbe.exec).toBeUndefined();
    const brokerDests = instrs.filter((i) => i.stage === 'broker' && i.op === 'COPY').map((i) => copyParts(i.args).dest);
    expect(instrs.find((i) => i.stage === 'broker' && i.op === 'ENTRYPOINT')?.args).toBe('["/opt/shmbroker/bin/shmbroker"]');
    expect(brokerDests).toContain('bin'); // relative to WORKDIR /opt/shmbroker
    expect(fs.existsSync(path.join(ROOT, 'bin/shmbroker'))).toBe(true);
    const initCmd = spec.initContainers[0].command[0] as string;
    const loaderDests = instrs.filter((i) => i.stage === 'kmod-loader' && i.op === 'COPY').map((i) => copyParts(i.args).dest);
    expect(loaderDests).toContain(initCmd);
    expect(loaderDests).toContain('/opt/shmbroker/kmod-src');
    expect(loaderDests).toContain('/opt/shmbroker/kmod');
  });

  it('HEALTHCHECK is a plain HTTP GET of /readyz on the metrics address CMD serves (not the CLI)', () => {
    const broker = instrs.filter((i) => i.stage === 'broker');
    const hc = broker.find((i) => i.op === 'HEALTHCHECK')!;
    const cmd = JSON.parse(hc.args.slice(hc.args.indexOf('CMD ') + 4)) as string[];
    expect(cmd[0]).toBe('node');
    expect(cmd.join(' ')).not.toMatch(/shmbroker status/);
    const url = /http:\/\/([0-9.]+:\d+)\/readyz/.exec(cmd.join(' '))?.[1];
    expect(url).toBeDefined();
    const serveArgs = JSON.parse(broker.find((i) => i.op === 'CMD')!.args) as string[];
    expect(serveArgs).toContain(`--metrics-addr=${url}`);
  });

  it('the example client requires the SDK where the image puts it', () => {
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/examples/client-pod.yaml'), 'utf8')).map((d) => d.toJS());
    const pod = docs.find((d) => d.kind === 'Pod');
    expect(pod.spec.containers[0].args[0]).toContain("require('/opt/shmbroker/dist/clients/sdk')");
    expect(fs.existsSync(path.join(ROOT, 'clients/sdk/index.ts'))).toBe(true);
  });

  it('the Node major matches the one the repository is built and tested with', () => {
    const arg = instrs.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_VERSION='))!.args.split('=')[1]!;
    expect(arg.split('.')[0]).toBe(process.versions.node.split('.')[0]);
  });
});
