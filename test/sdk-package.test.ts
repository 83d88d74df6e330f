// The client SDK as an installable package (issue 17, step 7): `npm pack` of
// packages/sdk (@shmbroker/sdk), installed into an empty project outside the
// repository the way a user would (from the tarball, its dependencies from the
// npm registry or cache, its install script not run), then
// strict TypeScript programs that import it type-check against what it ships
// (declarations included, no skipLibCheck) and run, as uid 1001, against a
// real broker: README.md's example verbatim, and test/fixtures/sdk-consumer.ts.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, REPO, makeTempDir, run } from './support/broker-process';
import { expectConsumerRuns } from './support/sdk-consumer-run';

/** npm as a user runs it: none of the npm_* variables of an `npm test` around this run leak in. */
function npm(args: string[], o: SpawnSyncOptions & { cwd: string }) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return spawnSync('npm', args, { encoding: 'utf8', env, maxBuffer: 64 << 20, ...o });
}

/** Every package name in an `npm ls --all --json` tree. */
function names(tree: { dependencies?: Record<string, unknown> }): string[] {
  const out: string[] = [];
  for (const [name, sub] of Object.entries(tree.dependencies ?? {})) out.push(name, ...names(sub as typeof tree));
  return out;
}

/** README.md's TypeScript example, verbatim. */
function readmeExample(): string {
  const m = /```ts\n([\s\S]*?)```/.exec(fs.readFileSync(path.join(REPO, 'README.md'), 'utf8'));
  if (!m) throw new Error('README.md has no ```ts block');
  return m[1]!;
}

describe('@shmbroker/sdk installed from its tarball', () => {
  let broker: BrokerProcess;
  let dir: string;
  let consumer: string;
  let tarball: string;
  let files: string[];
  beforeAll(async () => {
    broker = await BrokerProcess.start();
    dir = makeTempDir('shmbroker-sdk-package-');
    consumer = path.join(dir, 'consumer');
  });
  afterAll(async () => {
    await broker?.cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('packs only what a client needs', () => {
    // prepack builds the package (scripts/build-sdk-package.js): its own tsc, the protos, the prebuilt addon;
    // postpack removes it all again.
    const r = npm(['pack', '-w', '@shmbroker/sdk', '--pack-destination', dir, '--json'], { cwd: REPO });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout)[0] as { filename: string; files: Array<{ path: string }> };
    tarball = path.join(dir, report.filename);
    files = report.files.map((f) => f.path).sort();

    // Nothing of the repository but the SDK: no tests, fixtures, benchmarks,
    // deployment, broker or CLI, and no build intermediates (TypeScript
    // sources, maps, object files, node-gyp's build tree).
    const unwanted = files.filter(
      (f) =>
        /(^|\/)(test|tests|fixtures|bench|deploy|build|service|cli|scripts|\.ci)\//.test(f) ||
        /\.test\.|\.vm-test\./.test(f) ||
        (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)) ||
        /\.(map|o|a|tsbuildinfo|mk|gypi|tgz)$/.test(f) ||
        /(^|\/)(Makefile|config\.gypi|tsconfig\.json)$/.test(f),
    );
    expect(unwanted).toEqual([]);
    // What it must have: the entry with its declarations, the protos it loads,
    // a prebuilt Node-API addon for this platform, and the addon's sources.
    for (const f of [
      'package.json',
      'README.md',
      'dist/clients/sdk/index.js',
      'dist/clients/sdk/index.d.ts',
      'dist/native/index.js',
      'dist/proto/load.js',
      'dist/protoset/descriptor-set.binpb',
      'proto/shmbroker/v1/dataplane.proto',
      'binding.gyp',
      'native/src/addon.cc',
      'kmod/include/uapi/linux/shmbroker.h',
    ]) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => new RegExp(`^prebuilds/linux-${process.arch}/.*\\.node$`).test(f))).toHaveLength(1);

    const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'packages', 'sdk', 'package.json'), 'utf8'));
    expect(manifest.private).toBeUndefined();
    expect(manifest.exports['.']).toEqual({ types: './dist/clients/sdk/index.d.ts', require: './dist/clients/sdk/index.js', default: './dist/clients/sdk/index.js' });
    expect(manifest.types).toBe('./dist/clients/sdk/index.d.ts');
    expect(manifest.engines.node).toMatch(/^>=20/);
  });

  it('the API report (packages/sdk/etc/sdk.api.md) is current, with every public member documented', () => {
    // API Extractor over the package's declarations (the pack cleaned up
    // after itself, so build them again); it writes what the report should be
    // to dist/api-extractor/ (and fails on any warning: an undocumented
    // member, a type the entry does not export).
    const build = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'build-sdk-package.js'), '--types-only'], { cwd: REPO, encoding: 'utf8' });
    expect(build.status, build.stderr).toBe(0);
    const extractor = path.join(REPO, 'node_modules', '@microsoft', 'api-extractor', 'bin', 'api-extractor');
    const r = spawnSync(process.execPath, [extractor, 'run', '-c', path.join(REPO, 'packages', 'sdk', 'api-extractor.json')], { cwd: REPO, encoding: 'utf8' });
    const fresh = fs.readFileSync(path.join(REPO, 'packages', 'sdk', 'dist', 'api-extractor', 'sdk.api.md'), 'utf8');
    const committed = fs.readFileSync(path.join(REPO, 'packages', 'sdk', 'etc', 'sdk.api.md'), 'utf8');
    expect(fresh === committed, 'packages/sdk/etc/sdk.api.md is stale: run `npm run api-report` and commit the file').toBe(true);
    expect(committed).not.toContain('(undocumented)');
    expect(committed).not.toContain('ae-forgotten-export');
    // The SDK's internals are not in it: a region's fd, revoke, its constructor.
    const region = /export class MappedRegion [^]*?\n}\n/.exec(committed)?.[0] ?? '';
    expect(region).toContain('release(): Promise<void>;');
    expect(region).not.toMatch(/\bfd\b|revoke\(|constructor|set leaseId/);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('installs into an empty project without the broker and without running a build', () => {
    fs.mkdirSync(consumer);
    // Install scripts not approved: npm 11 warns about unreviewed ones and
    // (with strict-allow-scripts, the coming default) skips them, as it does
    // for denied ones; deny them here so this install runs none (a tarball's
    // identity is its file: spec, the key `npm install-scripts deny` writes).
    const manifest = { name: 'sdk-consumer', version: '1.0.0', private: true, allowScripts: { [`file:${tarball}`]: false, protobufjs: false } };
    fs.writeFileSync(path.join(consumer, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    // Offline-safe: the tarball from disk, its dependencies (and the @types/node a
    // TypeScript user has) from the npm cache or registry.
    const types = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', '@types', 'node', 'package.json'), 'utf8')).version as string;
    const r = npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--save-exact', tarball, `@types/node@${types}`], { cwd: consumer });
    expect(r.status, r.stderr).toBe(0);

    const ls = npm(['ls', '--all', '--json'], { cwd: consumer });
    const installed = names(JSON.parse(ls.stdout));
    expect(installed).toContain('@shmbroker/sdk');
    expect(installed).toContain('@grpc/grpc-js');
    for (const broker of ['shmbroker', 'better-sqlite3', '@grpc/reflection', 'grpc-health-check', 'commander', 'pino', 'prom-client', 'yaml', '@bufbuild/protobuf']) {
      expect(installed).not.toContain(broker);
    }
    // npm did not run the package's install script: nothing was compiled, so
    // what loads below is the prebuilt binary.
    const pkg = path.join(consumer, 'node_modules', '@shmbroker', 'sdk');
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false);
    expect(fs.existsSync(path.join(pkg, 'prebuilds'))).toBe(true);
  });

  it('strict programs type-check against the shipped declarations (tsc --noEmit, module node16)', () => {
    fs.writeFileSync(path.join(consumer, 'readme.mts'), readmeExample());
    const fixture = fs.readFileSync(path.join(REPO, 'test', 'fixtures', 'sdk-consumer.ts'), 'utf8');
    expect(fixture).toContain("from '../../clients/sdk'");
    fs.writeFileSync(path.join(consumer, 'consumer.ts'), fixture.replace("from '../../clients/sdk'", "from '@shmbroker/sdk'"));
    const tsconfig = {
      compilerOptions: {
        strict: true,
        target: 'es2022',
        lib: ['es2022', 'esnext.disposable'],
        module: 'node16',
        moduleResolution: 'node16',
        types: ['node'],
        outDir: 'out',
      },
      files: ['readme.mts', 'consumer.ts'],
    };
    fs.writeFileSync(path.join(consumer, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const check = spawnSync(process.execPath, [tsc, '--noEmit', '-p', consumer], { cwd: consumer, encoding: 'utf8' });
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
    const emit = spawnSync(process.execPath, [tsc, '-p', consumer], { cwd: consumer, encoding: 'utf8' });
    expect(emit.stdout + emit.stderr).toBe('');
  });

  it("README's example acquires a region from a running broker, as uid 1001", async () => {
    expect((await broker.cli(['region', 'create', 'frames', '--size', '1MiB'])).code).toBe(0);
    expect((await broker.cli(['grant', 'create', 'frames', '--uid', '1001', '--mode', 'ro'])).code).toBe(0);
    const r = await run(process.execPath, [path.join(consumer, 'out', 'readme.mjs')], { uid: 1001, gid: 1001, env: { SHMBROKER_RUNTIME_DIR: broker.runtimeDir } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe('1048576\n');
    const events: Array<{ action: string; result: string; actor?: { uid?: number } }> = (await broker.json(['audit', 'list', '--region', 'frames'])).events ?? [];
    expect(events.filter((e) => e.action === 'Acquire' && e.result === 'AUDIT_RESULT_ALLOWED' && e.actor?.uid === 1001)).toHaveLength(1);
  });

  it('the consumer fixture runs: await using, abort, timeout, typed errors, as uid 1001', async () => {
    await expectConsumerRuns(broker, path.join(consumer, 'out', 'consumer.js'));
  });

  it('without a matching prebuilt binary, loading says what to approve', () => {
    const pkg = path.join(consumer, 'node_modules', '@shmbroker', 'sdk');
    fs.renameSync(path.join(pkg, 'prebuilds'), path.join(pkg, 'prebuilds.away'));
    try {
      const r = spawnSync(process.execPath, ['-e', "require('@shmbroker/sdk')"], { cwd: consumer, encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('npm install-scripts approve @shmbroker/sdk');
      expect(r.stderr).toContain('npm rebuild @shmbroker/sdk');
    } finally {
      fs.renameSync(path.join(pkg, 'prebuilds.away'), path.join(pkg, 'prebuilds'));
    }
  });
});
