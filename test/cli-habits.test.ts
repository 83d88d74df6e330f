// The CLI habits operators bring from kubectl, systemctl and cat (issue 18),
// each run as a real subprocess against a real broker (memfd backend).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, BrokerProcess, REPO, run, runNode } from './support/broker-process';

const PKG = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
const cliNoBroker = (args: string[]) => run(process.execPath, [BIN, '--runtime-dir', '/nonexistent/shmbroker', ...args]);
const sh = (script: string, env: NodeJS.ProcessEnv = {}) => run('bash', ['-c', script], { env, timeoutMs: 60_000 });

describe('version', () => {
  for (const flag of ['--version', '-V']) {
    it(`${flag} prints one line with the package and API versions, without a broker`, async () => {
      const r = await cliNoBroker([flag]);
      expect(r.code).toBe(0);
      const out = r.stdout.toString();
      expect(out.split('\n').filter(Boolean)).toHaveLength(1);
      expect(out).toMatch(new RegExp(`^shmbroker ${PKG.version.replace(/\./g, '\\.')} \\(api shmbroker\\.v1; addon N-API \\d+; kmod (not loaded|\\S+); node v\\d+`));
    });
  }

  it('`version` without a broker: client versions, the broker unreachable, exit 0', async () => {
    const r = await cliNoBroker(['version', '-o', 'json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout.toString());
    expect(v.client.version).toBe(PKG.version);
    expect(v.client.apiVersions).toEqual(['shmbroker.v1']);
    expect(v.client.addon.file).toBe('build/Release/shmbroker_native.node');
    expect(v.server.unreachable).toMatch(/cannot reach the broker/);
  });
});

describe('help', () => {
  /** Every command path, from the Commands: lists of the help texts themselves. */
  async function commandPaths(prefix: string[] = []): Promise<string[][]> {
    const r = await cliNoBroker([...prefix, '--help']);
    const text = r.stdout.toString();
    const section = text.split(/^Commands:\n/m)[1]?.split(/\n\n/)[0] ?? '';
    const names = [...section.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!.split('|')[0]!).filter((n) => n !== 'help');
    const out: string[][] = [];
    for (const n of names) out.push([...prefix, n], ...(await commandPaths([...prefix, n])));
    return out;
  }

  it('every command and command group has an Examples: block with shmbroker command lines', async () => {
    const paths = await commandPaths();
    // The contract's commands are all there (and the walk found the leaves).
    for (const p of ['serve', 'status', 'version', 'completion', 'region create', 'region read', 'grant create', 'quota set', 'audit verify']) {
      expect(paths.map((x) => x.join(' '))).toContain(p);
    }
    for (const p of [[], ...paths]) {
      const r = await cliNoBroker([...p, '--help']);
      expect(r.code, p.join(' ')).toBe(0);
      expect(r.stdout.toString(), `shmbroker ${p.join(' ')} --help`).toMatch(/\nExamples:\n {2}# .+\n {2}.*shmbroker /);
    }
  });

  it('`help region create` is the help of region create, the same as `region create --help`', async () => {
    const a = await cliNoBroker(['help', 'region', 'create']);
    const b = await cliNoBroker(['region', 'create', '--help']);
    expect(a.code).toBe(0);
    expect(a.stdout.toString()).toBe(b.stdout.toString());
    expect(a.stdout.toString()).toMatch(/^Usage: shmbroker region create \[options\] <name>/);
    const c = await cliNoBroker(['help', 'region', 'nope']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/unknown command 'region nope'/);
  });

  it('required options are marked (required); optional ones are not', async () => {
    const text = (await cliNoBroker(['region', 'create', '--help'])).stdout.toString();
    expect(text).toMatch(/--size <size> .*\(required\)/);
    expect(text).not.toMatch(/--hugepages.*\(required\)/);
  });

  it('a typo keeps Commander\'s suggestion on the one error line', async () => {
    const r = await cliNoBroker(['regoin', 'list']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("shmbroker: unknown command 'regoin' (did you mean region?) (USAGE; see --help)\n");
    const o = await cliNoBroker(['region', 'create', 'x', '--size', '4KiB', '--hugepage']);
    expect(o.code).toBe(2);
    expect(o.stderr).toMatch(/^shmbroker: unknown option '--hugepage' \(did you mean --hugepages\?\) \(USAGE; see --help\)\n$/);
  });
});

describe('exit codes (the table in README.md)', () => {
  it('README documents 0, 1, 2, 3 and 78', () => {
    const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
    const section = readme.split(/^### Exit codes$/m)[1]?.split(/^#/m)[0] ?? '';
    for (const code of ['0', '1', '2', '3', '78']) expect(section, `exit code ${code}`).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
  });

  it('3 when no broker answers, for the control plane and the data plane alike', async () => {
    for (const args of [['status'], ['region', 'list'], ['region', 'read', 'x', '--file', '-']]) {
      const r = await cliNoBroker(args);
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr).toMatch(/\(BROKER_UNREACHABLE\)\n$/);
    }
  });

  it('2 for usage', async () => {
    expect((await cliNoBroker(['region', 'create', 'x'])).code).toBe(2);
    expect((await cliNoBroker(['completion', 'tcsh'])).code).toBe(2);
  });
});

describe('against a broker', () => {
  let broker: BrokerProcess;
  const cli = (args: string[], o = {}) => broker.cli(args, o);

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
    for (const [name, size] of [['big', '64MiB'], ['odd', '1536KiB'], ['small', '4KiB']]) {
      const r = await cli(['region', 'create', name!, '--size', size!]);
      expect(r.code, r.stderr).toBe(0);
    }
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('`version` shows the broker version and backend', async () => {
    const v = await broker.json(['version']);
    expect(v.server).toEqual({ version: PKG.version, backend: 'memfd' });
  });

  it('1 for other errors (a missing region)', async () => {
    const r = await cli(['region', 'show', 'missing']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\(REGION_NOT_FOUND\)\n$|NOT_FOUND/);
  });

  it('--ttl 60 is 60 seconds; a bare number is seconds, with a unit it is a duration', async () => {
    const sixty = await broker.json(['grant', 'create', 'small', '--uid', '1001', '--ttl', '60']);
    const span = (g: any) => Date.parse(g.expireTime?.seconds !== undefined ? new Date(Number(g.expireTime.seconds) * 1000).toISOString() : g.expireTime) - Date.parse(g.createTime?.seconds !== undefined ? new Date(Number(g.createTime.seconds) * 1000).toISOString() : g.createTime);
    expect(Math.round(span(sixty) / 1000)).toBe(60);
    const twoMin = await broker.json(['grant', 'create', 'small', '--uid', '1002', '--ttl', '2m']);
    expect(Math.round(span(twoMin) / 1000)).toBe(120);
    const zero = await cli(['grant', 'create', 'small', '--uid', '1001', '--ttl', '0']);
    expect(zero.code).toBe(1);
    expect(zero.stderr).toMatch(/--ttl must be at least 1 second \(INVALID_TTL\)/);
  });

  it('tables: AGE instead of timestamps, owner names where the host resolves them, exact sizes; -o wide keeps the timestamps', async () => {
    const text = (await cli(['region', 'list'])).stdout.toString();
    const [header, ...rows] = text.trim().split('\n');
    expect(header).toMatch(/^NAME +SIZE +OWNER +BACKEND +STATE +AGE$/);
    const root = spawnSync('getent', ['passwd', '0'], { encoding: 'utf8' }).stdout.split(':')[0] || '0';
    const odd = rows.find((r) => r.startsWith('odd '))!;
    expect(odd).toMatch(new RegExp(`^odd +1536 KiB +${root} +memfd +ACTIVE +(\\d+m)?\\d+s$`)); // AGE: seconds, or minutes and seconds on a slow run
    expect(rows.find((r) => r.startsWith('big '))).toMatch(/ 64 MiB /);
    const wide = (await cli(['region', 'list', '-o', 'wide'])).stdout.toString();
    expect(wide.split('\n')[0]).toMatch(/ AGE +OWNER UID +CREATED$/);
    expect(wide).toMatch(/ 0 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
    const grants = (await cli(['grant', 'list', '--region', 'small'])).stdout.toString();
    expect(grants.split('\n')[0]).toMatch(/^ID +REGION +GRANTEE +MODE +EXPIRES +AGE$/);
    expect(grants).toMatch(/uid:1001 +ro +in \d+s +\d+s/); // uid 1001 has no passwd entry on CI: the number stays
  });

  it('`region get` is `region show`', async () => {
    const a = await cli(['region', 'get', 'small']);
    expect(a.code).toBe(0);
    expect(a.stdout.toString()).toMatch(/^name: +regions\/small/);
  });

  it('a closed stdout ends quietly: region read | head -c 10, audit watch | head -n 1', async () => {
    const cmd = `"${process.execPath}" "${BIN}" --runtime-dir "${broker.runtimeDir}"`;
    const r = await sh(`set -o pipefail; ${cmd} region read big | head -c 10 | wc -c; echo "status \${PIPESTATUS[0]}"`);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toMatch(/^10\nstatus (0|141)\n$/);
    // watch prints the stored trail, head takes one line and leaves; the next
    // event makes watch write into the closed pipe.
    const watch = sh(`${cmd} audit watch --after 0 | head -n 1 > /dev/null; echo "status \${PIPESTATUS[0]}"`);
    for (let i = 0; i < 50; i++) {
      const done = await Promise.race([watch.then(() => true), new Promise((r) => setTimeout(() => r(false), 200))]);
      if (done) break;
      await cli(['region', 'show', 'small']); // an event for watch to write
    }
    const w = await watch;
    expect(w.stderr).toBe('');
    expect(w.stdout.toString()).toMatch(/^status (0|141)\n$/);
  });

  it('region read refuses to put raw bytes on a terminal; --file writes a file, --file - insists', async () => {
    const cmd = `"${process.execPath}" "${BIN}" --runtime-dir "${broker.runtimeDir}"`;
    // script(1) gives the command a real pseudo-terminal as stdout.
    const tty = await run('script', ['-qec', `${cmd} region read small`, '/dev/null']);
    expect(tty.stdout.toString()).toMatch(/refusing to write raw region bytes to a terminal.*\(BINARY_TO_TERMINAL\)/);
    expect(tty.code).toBe(1);
    const file = path.join(broker.dir, 'copy.bin');
    const viaFile = await run('script', ['-qec', `${cmd} region read small --file ${file}`, '/dev/null']);
    expect(viaFile.code).toBe(0);
    expect(fs.statSync(file).size).toBe(4096);
    const insist = await run('script', ['-qec', `${cmd} region read small --length 3 --file -`, '/dev/null']);
    expect(insist.code).toBe(0);
    expect(insist.stdout.length).toBeGreaterThanOrEqual(3);
  });

  it('completion bash: subcommands from the command tree, region names and grant ids from the broker', async () => {
    const script = (await cli(['completion', 'bash'])).stdout.toString();
    const complete = async (line: string[]): Promise<string[]> => {
      const words = ['shmbroker', '--runtime-dir', broker.runtimeDir, ...line].map((w) => `'${w}'`).join(' ');
      const r = await sh(
        `shmbroker() { "${process.execPath}" "${BIN}" "$@"; }\n${script}\nCOMP_WORDS=(${words}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _shmbroker; printf '%s\\n' "\${COMPREPLY[@]}"`,
      );
      expect(r.stderr).toBe('');
      return r.stdout.toString().split('\n').filter(Boolean).sort();
    };
    expect(await complete(['reg'])).toEqual(['region']);
    expect(await complete(['region', 's'])).toEqual(['show']);
    expect(await complete(['region', 'show', ''])).toEqual(['big', 'odd', 'small']);
    expect(await complete(['region', 'create', 'x', '--si'])).toEqual(['--size']);
    expect(await complete(['grant', 'list', '--region', 'o'])).toEqual(['odd']);
    const ids = (await broker.json(['grant', 'list'])).grants.map((g: any) => g.name.split('/').pop()).sort();
    expect(ids.length).toBeGreaterThan(0);
    expect(await complete(['grant', 'revoke', ''])).toEqual(ids);
    for (const shell of ['zsh', 'fish']) {
      const r = await cli(['completion', shell]);
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toMatch(/__complete/);
    }
  });

  it('region read and write leave no protocol error behind: the CLI waits for the release reply', async () => {
    const events = async (args: string[]): Promise<any[]> => (await broker.json(['audit', 'list', ...args])).events ?? [];
    const before = await events(['--action', 'DataPlaneProtocolError']);
    for (let i = 0; i < 15; i++) {
      const w = await cli(['region', 'write', 'small'], { input: Buffer.from(`round ${i}`) });
      expect(w.code, w.stderr).toBe(0);
      const r = await cli(['region', 'read', 'small', '--length', '8']);
      expect(r.code, r.stderr).toBe(0);
    }
    const after = await events(['--action', 'DataPlaneProtocolError']);
    expect(after).toEqual(before);
    expect(broker.log).not.toMatch(/data plane protocol error/);
  });

  it("the broker does not count a peer's close during its reply as a protocol error or a denial", async () => {
    // An SDK client that releases and closes at once, without drain(): the
    // broker's release reply meets a closed socket (EPIPE/ECONNRESET).
    const events = async (args: string[]): Promise<any[]> => (await broker.json(['audit', 'list', ...args])).events ?? [];
    const before = await events(['--action', 'DataPlaneProtocolError']);
    const deniedBefore = await events(['--result', 'denied']);
    const r = await runNode(
      `const { BrokerClient } = require(REPO + '/dist/clients/sdk/broker-client');
      (async () => {
        for (let i = 0; i < 30; i++) {
          const c = await BrokerClient.connect({ runtimeDir: process.argv[2], reconnect: false });
          const region = await c.acquire('small', { mode: 'ro' });
          await region.release();
          c.close();
        }
      })().catch((e) => { console.error(e); process.exit(1); });`,
      { args: [broker.runtimeDir] },
    );
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => setTimeout(res, 300));
    const after = await events(['--action', 'DataPlaneProtocolError']);
    expect(after.slice(before.length).map((e: any) => `${e.reason} ${e.detailsJson}`)).toEqual([]);
    const denied = await events(['--result', 'denied']);
    expect(denied.slice(deniedBefore.length).map((e: any) => `${e.action} ${e.reason}`)).toEqual([]);
    expect(broker.log).not.toMatch(/data plane protocol error/);
  });
});
