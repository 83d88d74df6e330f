// Planted symlinks and loose permissions on the runtime and state
// directories make the broker refuse to start, saying why.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FailedPreconditionError } from './errors';
import { ensureSecureDir, removeStaleSocket } from './secure-dirs';

describe('ensureSecureDir', () => {
  let base: string;
  beforeEach(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'secure-dirs-'));
  });
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

  it('creates a missing directory with the given mode', () => {
    const d = ensureSecureDir(path.join(base, 'run'), { createMode: 0o755, what: 'runtime directory' });
    expect(fs.statSync(d).mode & 0o777).toBe(0o755);
  });

  const refusals: Array<[string, (dir: string) => void, RegExp]> = [
    ['a planted symlink', (d) => fs.symlinkSync('/etc', d), /is a symbolic link/],
    ['a dangling symlink', (d) => fs.symlinkSync(path.join(base, 'nowhere'), d), /is a symbolic link/],
    ['a regular file', (d) => fs.writeFileSync(d, ''), /not a directory/],
    ['a world-writable directory', (d) => { fs.mkdirSync(d); fs.chmodSync(d, 0o777); }, /writable by group or others/],
    ['a group-writable directory', (d) => { fs.mkdirSync(d); fs.chmodSync(d, 0o775); }, /writable by group or others/],
    ['a directory owned by another uid', (d) => { fs.mkdirSync(d, { mode: 0o755 }); fs.chownSync(d, 1001, 1001); }, /owned by uid 1001/],
  ];
  for (const [name, plant, message] of refusals) {
    it(`refuses ${name}`, () => {
      const d = path.join(base, 'run');
      plant(d);
      const err = (() => {
        try {
          ensureSecureDir(d, { createMode: 0o755, what: 'runtime directory' });
        } catch (e) {
          return e;
        }
        return undefined;
      })() as FailedPreconditionError;
      expect(err).toBeInstanceOf(FailedPreconditionError);
      expect(err.reason).toBe('UNSAFE_DIRECTORY');
      expect(err.message).toMatch(message);
    });
  }

  it('refuses a parent another uid can swap out', () => {
    const parent = path.join(base, 'p');
    fs.mkdirSync(parent, { mode: 0o755 });
    fs.chownSync(parent, 1001, 1001);
    expect(() => ensureSecureDir(path.join(parent, 'run'), { createMode: 0o755, what: 'state directory' })).toThrow(/parent .* owned by uid 1001/);
    fs.chownSync(parent, 0, 0);
    fs.chmodSync(parent, 0o777);
    expect(() => ensureSecureDir(path.join(parent, 'run'), { createMode: 0o755, what: 'state directory' })).toThrow(/world-writable without the sticky bit/);
  });

  it('removes a stale socket but never a planted file or symlink', async () => {
    const net = await import('node:net');
    const sock = path.join(base, 's.sock');
    const server = net.createServer().listen(sock);
    await new Promise((r) => server.once('listening', r));
    server.close();
    fs.writeFileSync(sock + '.x', ''); // placeholder so the dir has other entries
    if (fs.existsSync(sock)) {
      removeStaleSocket(sock);
      expect(fs.existsSync(sock)).toBe(false);
    }
    const file = path.join(base, 'file');
    fs.writeFileSync(file, 'keep');
    expect(() => removeStaleSocket(file)).toThrow(/not a socket/);
    fs.symlinkSync(file, path.join(base, 'link'));
    expect(() => removeStaleSocket(path.join(base, 'link'))).toThrow(/not a socket/);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep');
  });
});
