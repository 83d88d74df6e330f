// deploy/docker/kmod-loader.sh, the init container's script, run for real
// with stub modprobe/insmod/make (this host's kernel takes no modules, and a
// test must not load any): the memfd fallback says so in a log line, a status
// file and a Kubernetes event that validates as a v1 Event.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Event } from 'kubernetes-models/v1/Event';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const SCRIPT = path.resolve(__dirname, '../../deploy/docker/kmod-loader.sh');
// The loader image installs curl for the event; a machine without it skips the event checks.
const HAS_CURL = (process.env['PATH'] ?? '').split(':').some((d) => fs.existsSync(path.join(d, 'curl')));
const KVER = '6.1.0-99-test';

let tmp: string;
let server: http.Server | undefined;
let posted: Array<{ url: string; auth: string | undefined; body: Record<string, unknown> }> = [];
let answer = 201;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kmod-loader-'));
  for (const d of ['sys/module', `lib/modules/${KVER}`, 'run', 'sa', 'bin', 'prebuilt', 'src']) fs.mkdirSync(path.join(tmp, d), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'lib/modules', KVER, 'modules.dep'), '');
  fs.writeFileSync(path.join(tmp, 'sa/token'), 'sa-token');
  fs.writeFileSync(path.join(tmp, 'src/Makefile'), 'obj-m := shmbroker.o\n');
  posted = [];
  answer = 201;
});

afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = undefined;
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A stub tool: appends its argv to calls.log, prints `out` to stderr, exits with `code`; `extra` runs first. */
function stub(name: string, code: number, out = '', extra = ''): string {
  const p = path.join(tmp, 'bin', name);
  fs.writeFileSync(p, `#!/bin/sh\necho "${name} $*" >> "${tmp}/calls.log"\n${extra}\n${out ? `echo "${out}" >&2\n` : ''}exit ${code}\n`);
  fs.chmodSync(p, 0o755);
  return p;
}

async function apiServer(): Promise<string> {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      posted.push({ url: req.url ?? '', auth: req.headers.authorization, body: JSON.parse(body) as Record<string, unknown> });
      res.writeHead(answer, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function run(env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', [SCRIPT], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        KVER,
        SHMBROKER_SYS_MODULE_DIR: path.join(tmp, 'sys/module'),
        SHMBROKER_LIB_MODULES: path.join(tmp, 'lib/modules'),
        SHMBROKER_PREBUILT_DIR: path.join(tmp, 'prebuilt'),
        SHMBROKER_KMOD_SRC: path.join(tmp, 'src'),
        SHMBROKER_BUILD_DIR: path.join(tmp, 'build'),
        SHMBROKER_STATUS_FILE: path.join(tmp, 'run/kmod-status'),
        SHMBROKER_SA_DIR: path.join(tmp, 'sa'),
        MODPROBE: env['MODPROBE'] ?? stub('modprobe', 1, 'modprobe: FATAL: Module shmbroker not found in directory /lib/modules/' + KVER),
        INSMOD: env['INSMOD'] ?? stub('insmod', 1, 'insmod: ERROR: could not insert module: Operation not permitted'),
        MAKE: env['MAKE'] ?? stub('make', 2, 'make: *** No rule to make target'),
        ...env,
      },
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code: code ?? -1, out }));
  });
}

const k8sEnv = (url: string): Record<string, string> => ({
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  KUBERNETES_SERVICE_PORT: '443',
  SHMBROKER_API_URL: url,
  POD_NAME: 'shmbroker-x7k2p',
  POD_NAMESPACE: 'shmbroker-system',
  POD_UID: '0f6f2f1e-9c1b-4a47-8d7e-3b9a2c1d4e5f',
  NODE_NAME: 'node-a',
});

const status = (): Record<string, string> =>
  Object.fromEntries(
    fs
      .readFileSync(path.join(tmp, 'run/kmod-status'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
const calls = (): string[] => (fs.existsSync(path.join(tmp, 'calls.log')) ? fs.readFileSync(path.join(tmp, 'calls.log'), 'utf8').trim().split('\n') : []);

describe('kmod-loader.sh', () => {
  it('without curl: still falls back, and says the event was not posted', async () => {
    const url = await apiServer();
    const { code, out } = await run({ ...k8sEnv(url), CURL: 'curl-is-not-installed' });
    expect(code).toBe(0);
    expect(out).toMatch(/WARNING: could not load/);
    expect(out).toMatch(/curl not found: event not posted/);
  });

  it.skipIf(!HAS_CURL)('cannot load: lets the broker start (exit 0) and says so in a log line, the status file and a Warning event', async () => {
    const url = await apiServer();
    const { code, out } = await run(k8sEnv(url));
    expect(code).toBe(0);
    expect(out).toMatch(/shmbroker-kmod: WARNING: could not load shmbroker on kernel 6\.1\.0-99-test: .*modprobe: FATAL.*memfd backend/);
    expect(status()).toMatchObject({ module: 'unavailable', kernel: KVER });
    expect(status()['reason']).toMatch(/no prebuilt module .* no kernel headers/);
    expect(posted).toHaveLength(1);
    const ev = posted[0]!;
    expect(ev.url).toBe('/api/v1/namespaces/shmbroker-system/events');
    expect(ev.auth).toBe('Bearer sa-token');
    expect(() => new Event(ev.body as never).validate()).not.toThrow();
    expect(ev.body).toMatchObject({
      type: 'Warning',
      reason: 'KmodUnavailable',
      involvedObject: { kind: 'Pod', name: 'shmbroker-x7k2p', namespace: 'shmbroker-system', uid: '0f6f2f1e-9c1b-4a47-8d7e-3b9a2c1d4e5f' },
      source: { component: 'shmbroker-kmod-loader', host: 'node-a' },
    });
    expect(String(ev.body['message'])).toMatch(/memfd backend: regions do not survive a broker restart/);
  });

  it.skipIf(!HAS_CURL)('SHMBROKER_REQUIRE_KMOD=true: fails the pod instead', async () => {
    const url = await apiServer();
    const { code, out } = await run({ ...k8sEnv(url), SHMBROKER_REQUIRE_KMOD: 'true' });
    expect(code).toBe(1);
    expect(out).toMatch(/ERROR: could not load/);
    expect(status()['module']).toBe('failed');
    expect(posted[0]!.body).toMatchObject({ type: 'Warning', reason: 'KmodRequired' });
  });

  it('already loaded: keeps it, touches nothing (regions live in it)', async () => {
    fs.mkdirSync(path.join(tmp, 'sys/module/shmbroker'));
    fs.writeFileSync(path.join(tmp, 'sys/module/shmbroker/version'), '0.1.0\n');
    fs.writeFileSync(path.join(tmp, 'src/dkms.conf'), 'PACKAGE_NAME="shmbroker"\nPACKAGE_VERSION="0.2.0"\n');
    const { code, out } = await run({});
    expect(code).toBe(0);
    expect(out).toMatch(/already loaded on kernel .* \(version 0\.1\.0\)/);
    expect(out).toMatch(/WARNING: loaded shmbroker 0\.1\.0 differs from this image's 0\.2\.0; keeping the loaded one/);
    expect(status()['module']).toBe('loaded');
    expect(calls()).toEqual([]);
  });

  it("reads the image's module version from the real kmod/dkms.conf", async () => {
    const real = path.resolve(__dirname, '../../kmod');
    const want = /^PACKAGE_VERSION="?([^"\n]+)"?$/m.exec(fs.readFileSync(path.join(real, 'dkms.conf'), 'utf8'))![1]!;
    fs.mkdirSync(path.join(tmp, 'sys/module/shmbroker'));
    fs.writeFileSync(path.join(tmp, 'sys/module/shmbroker/version'), '0.0.0-old\n');
    const { code, out } = await run({ SHMBROKER_KMOD_SRC: real });
    expect(code).toBe(0);
    expect(out).toContain(`loaded shmbroker 0.0.0-old differs from this image's ${want}`);
  });

  it('host install: modprobe', async () => {
    const { code, out } = await run({ MODPROBE: stub('modprobe', 0) });
    expect(code).toBe(0);
    expect(out).toMatch(/loaded with modprobe/);
    expect(calls()).toEqual(['modprobe shmbroker']);
  });

  it('prebuilt for this kernel: insmod', async () => {
    fs.mkdirSync(path.join(tmp, 'prebuilt', KVER));
    fs.writeFileSync(path.join(tmp, 'prebuilt', KVER, 'shmbroker.ko'), '');
    const { code, out } = await run({ INSMOD: stub('insmod', 0) });
    expect(code).toBe(0);
    expect(out).toMatch(/prebuilt for 6\.1\.0-99-test/);
    expect(calls().at(-1)).toBe(`insmod ${path.join(tmp, 'prebuilt', KVER, 'shmbroker.ko')}`);
  });

  it('builds against the node headers, in the writable build dir, then insmods the result', async () => {
    fs.mkdirSync(path.join(tmp, 'lib/modules', KVER, 'build'));
    fs.writeFileSync(path.join(tmp, 'lib/modules', KVER, 'build/Makefile'), '');
    const make = stub('make', 0, '', 'for a in "$@"; do case "$a" in M=*) touch "${a#M=}/shmbroker.ko";; esac; done');
    const { code, out } = await run({ MAKE: make, INSMOD: stub('insmod', 0) });
    expect(code, out).toBe(0);
    expect(out).toMatch(/built and loaded for 6\.1\.0-99-test/);
    const build = path.join(tmp, 'build');
    expect(calls()).toContain(`make -C ${path.join(tmp, 'lib/modules', KVER, 'build')} M=${build} modules`);
    expect(calls().at(-1)).toBe(`insmod ${build}/shmbroker.ko`);
    expect(fs.existsSync(path.join(build, 'Makefile'))).toBe(true); // sources copied, image untouched
  });

  it('a headers link that does not resolve in the container is named as such', async () => {
    fs.symlinkSync('/usr/src/linux-headers-does-not-exist', path.join(tmp, 'lib/modules', KVER, 'build'));
    const { code } = await run({});
    expect(code).toBe(0);
    expect(status()['reason']).toMatch(/does not resolve in this container .*kmod-build/);
  });

  it.skipIf(!HAS_CURL)('outside Kubernetes, or when the API refuses the event, it still falls back cleanly', async () => {
    let r = await run({});
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/WARNING: could not load/);
    const url = await apiServer();
    answer = 403;
    r = await run(k8sEnv(url));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/the API server refused the event: HTTP 403/);
  });

  it.skipIf(!HAS_CURL)('a message with quotes and backslashes still makes valid JSON', async () => {
    const url = await apiServer();
    const { code } = await run({ ...k8sEnv(url), MODPROBE: stub('modprobe', 1, 'weird \\"quoted\\" \\\\ text') });
    expect(code).toBe(0);
    expect(String(posted[0]!.body['message'])).toContain('weird "quoted"');
  });
});
