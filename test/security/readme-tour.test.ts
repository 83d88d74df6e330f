// Issue 16 item 1: README.md's quick tour, run verbatim: root's broker on the
// default /run/shmbroker and /var/lib/shmbroker, and uid 1001, with nothing
// in its environment but PATH, reads the 1 MiB through the default runtime
// directory (no --runtime-dir, no SHMBROKER_RUNTIME_DIR).
//
// The tour runs in private mount and pid namespaces with tmpfs over /run and
// /var/lib, so the real /run/shmbroker and /var/lib/shmbroker of this host
// are neither used nor touched and no other test can collide with it (this
// is what serialises it); when the pid namespace's first process exits, the
// tour's background broker goes with it. `sudo` is a shell function that
// runs its arguments: the test already is root (CI has no sudo). The test is
// never skipped: without unshare or setpriv it fails.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { REPO } from '../support/broker-process';

function tourBlock(): string {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const m = /## Quick tour\n\n```sh\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error('README.md has no "## Quick tour" sh block');
  return m[1]!;
}

it('README quick tour, verbatim: uid 1001 with an empty environment reads the 1 MiB from root\'s broker on /run/shmbroker', async () => {
  const tour = tourBlock();
  expect(tour).toContain('setpriv --reuid 1001');
  expect(tour).not.toContain('--runtime-dir');
  const script = [
    'set -e',
    'sudo() { "$@"; }',
    'mount -t tmpfs -o mode=0755 tmpfs /run',
    'mount -t tmpfs -o mode=0755 tmpfs /var/lib',
    `cd ${JSON.stringify(REPO)}`,
    tour,
  ].join('\n');
  const env = ['-i', `PATH=${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`];
  const child = spawn('unshare', ['--mount', '--pid', '--fork', '--mount-proc', '--propagation', 'private', '--', 'env', ...env, 'bash', '-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  clearTimeout(timer);
  expect(code, `tour failed:\n${out}\n${err}`).toBe(0);
  expect(out.split('\n').map((l) => l.trim())).toContain('1048576');
  expect(out).toMatch(/memfd/); // status names the backend
}, 120_000);
