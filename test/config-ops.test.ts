// Configuration habits (issue 18): `config check` (exit 0/78, one problem a
// line), `serve --print-config`, the example file in the repository, and
// SIGHUP reload of a real broker (reloadable keys applied, restart keys
// reported, a bad file refused whole).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as YAML from 'yaml';
import { DEFAULT_CONFIG, loadConfig } from '../service/config';
import { RELOADABLE_KEYS, RESTART_KEYS } from '../service/reload';
import { BIN, BrokerProcess, makeTempDir, REPO, run } from './support/broker-process';

const EXAMPLE = path.join(REPO, 'deploy/broker.example.yaml');
const cli = (args: string[]) => run(process.execPath, [BIN, ...args]);

describe('the example configuration', () => {
  it('loads, and names every top-level key, each marked [reload] or [restart] as reload.ts says', () => {
    const cfg = loadConfig(EXAMPLE);
    const text = fs.readFileSync(EXAMPLE, 'utf8');
    const keys = Object.keys(YAML.parse(text) as object).sort();
    expect(keys).toEqual([...RELOADABLE_KEYS, ...RESTART_KEYS].sort());
    for (const k of keys) {
      // The comment block right above the key says how it takes effect.
      const block = text.split(new RegExp(`^${k}:`, 'm'))[0]!.split(/\n\s*\n/).pop()!;
      const mark = (RESTART_KEYS as readonly string[]).includes(k) ? '[restart]' : '[reload]';
      expect(block, k).toContain(mark);
    }
    expect(cfg.defaultQuota.uid).toEqual({ bytes: 1024 ** 3, regions: 64, grantsPerRegion: 32 });
  });
});

describe('shmbroker config check', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('exit 0 and "ok" for a good file', async () => {
    const r = await cli(['config', 'check', EXAMPLE]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe(`${EXAMPLE}: ok\n`);
  });

  it('exit 78 with every problem on its own line (file:line: field: problem), then one summary line', async () => {
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, 'adminUids: [x]\nregionSize: { min: 0 }\nbogus: 1\nlogLevel: loud\n');
    const r = await cli(['config', 'check', bad]);
    expect(r.code).toBe(78);
    expect(r.stdout.length).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe(`${bad}:1: adminUids[0]: expected an integer, got the string "x"`);
    expect(lines[1]).toMatch(new RegExp(`^${bad}:2: regionSize\\.min: `));
    expect(lines[2]).toMatch(new RegExp(`^${bad}:3: bogus: unknown key`));
    expect(lines[3]).toMatch(new RegExp(`^${bad}:4: logLevel: expected one of fatal, error, warn, info, debug, trace, silent`));
    expect(lines[4]).toBe(`shmbroker: ${bad}: 4 problem(s) (INVALID_CONFIG)`);
    const j = await cli(['config', 'check', bad, '-o', 'json']);
    expect(j.code).toBe(78);
    expect(JSON.parse(j.stdout.toString()).problems.map((p: any) => [p.line, p.field])).toEqual([
      [1, 'adminUids[0]'],
      [2, 'regionSize.min'],
      [3, 'bogus'],
      [4, 'logLevel'],
    ]);
  });

  it('exit 78 for a missing file', async () => {
    const r = await cli(['config', 'check', path.join(dir, 'nope.yaml')]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/nope\.yaml:0: \(document\): cannot read the file/);
  });
});

describe('shmbroker serve --print-config', () => {
  it('prints the defaults when there is no file, as a file the broker loads back to the same configuration', async () => {
    const r = await cli(['serve', '--print-config']);
    expect(r.code).toBe(0);
    expect(YAML.parse(r.stdout.toString())).toEqual(JSON.parse(JSON.stringify(DEFAULT_CONFIG)));
  });

  it('the example file with flags applied over it; the output round-trips through the loader', async () => {
    const dir = makeTempDir();
    try {
      const r = await cli(['serve', '--config', EXAMPLE, '--metrics-addr', '127.0.0.1:9999', '--log-level', 'debug', '--print-config']);
      expect(r.code).toBe(0);
      const printed = path.join(dir, 'printed.yaml');
      fs.writeFileSync(printed, r.stdout);
      expect(loadConfig(printed)).toEqual({ ...loadConfig(EXAMPLE), metricsAddr: '127.0.0.1:9999', logLevel: 'debug' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SIGHUP reload (real broker)', () => {
  let broker: BrokerProcess;
  let file: string;
  const U1 = { uid: 1001, gid: 1001 };
  const write = (extra: string) =>
    fs.writeFileSync(file, `defaultQuota: { uid: { regions: 1 } }\nmetricsAddr: 127.0.0.1:0\nlogLevel: info\n${extra}`);

  beforeAll(async () => {
    const dir = makeTempDir();
    file = path.join(dir, 'broker.yaml');
    write('');
    broker = await BrokerProcess.start({ backend: 'memfd', dir, config: file });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  async function hup(expectMsg: RegExp): Promise<string> {
    const mark = broker.log.length;
    process.kill(broker.pid, 'SIGHUP');
    for (let i = 0; i < 200 && !expectMsg.test(broker.log.slice(mark)); i++) await new Promise((r) => setTimeout(r, 25));
    const added = broker.log.slice(mark);
    expect(added).toMatch(expectMsg);
    return added;
  }

  it('applies reloadable keys at once and reports the restart-only ones without applying them', async () => {
    expect((await broker.cli(['region', 'create', 'u1-a', '--size', '4KiB'], U1)).code).toBe(0);
    expect((await broker.cli(['region', 'create', 'u1-b', '--size', '4KiB'], U1)).stderr).toMatch(/QUOTA_REGIONS/);
    fs.writeFileSync(file, 'defaultQuota: { uid: { regions: 3 } }\nmetricsAddr: 127.0.0.1:1\nlogLevel: debug\n');
    const line = JSON.parse((await hup(/configuration reloaded/)).split('\n').find((l) => l.includes('configuration reloaded'))!);
    expect(line.applied).toEqual(['defaultQuota', 'logLevel']);
    expect(line.needRestart).toEqual(['metricsAddr']);
    expect((await broker.cli(['region', 'create', 'u1-b', '--size', '4KiB'], U1)).code).toBe(0);
    // logLevel debug is in force: an acquire (data-plane traffic) now logs at debug.
    const mark = broker.log.length;
    expect((await broker.cli(['region', 'read', 'u1-a', '--length', '1'])).code).toBe(0);
    for (let i = 0; i < 100 && !/"msg":"Acquire /.test(broker.log.slice(mark)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(broker.log.slice(mark)).toMatch(/"level":20,.*"msg":"Acquire regions\/u1-a: ALLOWED"/);
  });

  it('a file with a problem is refused whole: nothing changes', async () => {
    fs.writeFileSync(file, 'defaultQuota: { uid: { regions: 100 } }\nlogLevel: loud\n');
    const added = await hup(/configuration reload refused/);
    expect(added).toMatch(/logLevel: expected one of/);
    expect((await broker.cli(['region', 'create', 'u1-c', '--size', '4KiB'], U1)).code).toBe(0);
    expect((await broker.cli(['region', 'create', 'u1-d', '--size', '4KiB'], U1)).stderr).toMatch(/QUOTA_REGIONS/); // still 3
  });
});
