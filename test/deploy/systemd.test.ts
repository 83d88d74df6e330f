// deploy/systemd: the unit checked by `systemd-analyze verify` and scored by
// `systemd-analyze security --offline` where systemd is installed (it is on
// the CI image); the tmpfiles.d entry applied for real under a scratch root
// with `systemd-tmpfiles --root`; plus parse-level checks that run anywhere.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const UNIT = path.join(ROOT, 'deploy/systemd/shmbroker.service');
const TMPFILES = path.join(ROOT, 'deploy/systemd/shmbroker.tmpfiles.conf');

function which(cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

const ANALYZE = which('systemd-analyze');
const TMPFILES_BIN = which('systemd-tmpfiles');

/** [section, key, value] triples; values of repeated keys are kept in order. */
function parseUnit(text: string): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = [];
  let section = '';
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[([A-Za-z]+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv) throw new Error(`not a unit file line: ${line}`);
    if (!section) throw new Error(`key outside a section: ${line}`);
    out.push([section, kv[1]!, kv[2]!]);
  }
  return out;
}

const unit = parseUnit(fs.readFileSync(UNIT, 'utf8'));
const get = (section: string, key: string): string[] => unit.filter(([s, k]) => s === section && k === key).map(([, , v]) => v);
const one = (section: string, key: string): string | undefined => get(section, key).at(-1);

/** The unit with ExecStart pointing at this checkout's bin/shmbroker (verify checks the binary exists). */
function unitForThisCheckout(dir: string): string {
  const p = path.join(dir, 'shmbroker.service');
  fs.writeFileSync(p, fs.readFileSync(UNIT, 'utf8').replaceAll('/opt/shmbroker/bin/shmbroker', path.join(ROOT, 'bin/shmbroker')));
  return p;
}

describe('deploy/systemd/shmbroker.service', () => {
  it('parses: sections and the broker command line of the CLI contract', () => {
    expect(new Set(unit.map(([s]) => s))).toEqual(new Set(['Unit', 'Service', 'Install']));
    const exec = one('Service', 'ExecStart')!.split(/\s+/);
    expect(exec[0]).toBe('/opt/shmbroker/bin/shmbroker');
    expect(exec.slice(1)).toEqual([
      'serve',
      '--runtime-dir=/run/shmbroker',
      '--state-dir=/var/lib/shmbroker',
      '--backend=auto',
      '--config=/etc/shmbroker/broker.yaml',
    ]);
    expect(one('Install', 'WantedBy')).toBe('multi-user.target');
  });

  it('hardening: only CAP_IPC_LOCK (the module checks it at open), no new privileges, read-only system, only its own directories writable', () => {
    expect(one('Service', 'CapabilityBoundingSet')).toBe('CAP_IPC_LOCK');
    expect(one('Service', 'AmbientCapabilities')).toBe('CAP_IPC_LOCK');
    expect(one('Service', 'NoNewPrivileges')).toBe('yes');
    expect(one('Service', 'ProtectSystem')).toBe('strict');
    expect(one('Service', 'ReadWritePaths')!.split(/\s+/).sort()).toEqual(['/run/shmbroker', '/var/lib/shmbroker']);
    for (const k of ['ProtectHome', 'PrivateTmp', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'RestrictNamespaces', 'LockPersonality', 'RestrictRealtime', 'RestrictSUIDSGID']) {
      expect(one('Service', k), k).toBe('yes');
    }
    expect(one('Service', 'DevicePolicy')).toBe('closed');
    expect(get('Service', 'DeviceAllow')).toEqual(['/dev/shmbroker rw']);
    expect(get('Service', 'SystemCallFilter')[0]).toBe('@system-service');
    expect(one('Service', 'SystemCallArchitectures')).toBe('native');
    // Peers must stay visible in /proc (SO_PEERCRED pid -> groups, pod identity).
    expect(one('Service', 'ProtectProc') ?? 'default').toBe('default');
    // Node's JIT: MemoryDenyWriteExecute must not be on.
    expect(one('Service', 'MemoryDenyWriteExecute') ?? 'no').toBe('no');
    // No RuntimeDirectory=: it would delete /run/shmbroker on every restart.
    expect(get('Service', 'RuntimeDirectory')).toEqual([]);
  });

  it.skipIf(!ANALYZE)('systemd-analyze verify: no errors, no warnings', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unit-'));
    try {
      const r = spawnSync(ANALYZE!, ['verify', unitForThisCheckout(dir)], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr.trim()).toBe('');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!ANALYZE)('systemd-analyze verify does catch a broken unit (sanity check of the check)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unit-'));
    try {
      const p = unitForThisCheckout(dir);
      fs.writeFileSync(p, fs.readFileSync(p, 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=strictest'));
      const r = spawnSync(ANALYZE!, ['verify', p], { encoding: 'utf8' });
      expect(r.stderr).toMatch(/protect ?system.*strictest/i);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!ANALYZE)('systemd-analyze security --offline: exposure at most 2.5 ("OK")', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unit-'));
    try {
      const r = spawnSync(ANALYZE!, ['security', '--offline=yes', '--threshold=25', '--no-pager', unitForThisCheckout(dir)], {
        encoding: 'utf8',
      });
      const score = /Overall exposure level for shmbroker\.service: ([\d.]+)/.exec(r.stdout)?.[1];
      if (score === undefined && /unrecognized option|Unknown option/.test(r.stderr)) {
        console.warn('systemd-analyze security --offline is not supported by this systemd; skipped');
        return;
      }
      expect(Number(score), r.stdout.split('\n').filter((l) => l.includes('✗')).join('\n')).toBeLessThanOrEqual(2.5);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/systemd/shmbroker.tmpfiles.conf', () => {
  it('declares the socket and state directories with the modes the broker accepts', () => {
    const lines = fs
      .readFileSync(TMPFILES, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(/\s+/));
    expect(lines).toEqual([
      ['d', '/run/shmbroker', '0755', 'root', 'root', '-'],
      ['d', '/var/lib/shmbroker', '0700', 'root', 'root', '-'],
      ['d', '/etc/shmbroker', '0755', 'root', 'root', '-'],
    ]);
  });

  it.skipIf(!TMPFILES_BIN || process.getuid?.() !== 0)('systemd-tmpfiles --create under a scratch root makes them, owned by root, not group/other-writable', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tmpfiles-root-'));
    try {
      const r = spawnSync(TMPFILES_BIN!, ['--create', `--root=${root}`, TMPFILES], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const mode = (p: string): string => (fs.statSync(path.join(root, p)).mode & 0o7777).toString(8);
      expect(mode('run/shmbroker')).toBe('755');
      expect(mode('var/lib/shmbroker')).toBe('700');
      expect(fs.statSync(path.join(root, 'var/lib/shmbroker')).uid).toBe(0);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('deploy/systemd/modules-load.d', () => {
  it('loads exactly the shmbroker module', () => {
    const names = fs
      .readFileSync(path.join(ROOT, 'deploy/systemd/modules-load.d/shmbroker.conf'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#') && !l.startsWith(';'));
    expect(names).toEqual(['shmbroker']);
  });
});
