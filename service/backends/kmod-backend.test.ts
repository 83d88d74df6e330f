// Who owns the kernel module's regions: the pid that holds the flock on the
// device node, read from /proc/locks (the refusal of a second kmod broker
// names it; the refusal itself runs in the VM suite, test/vm/kmod-broker.vm-test.js).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lockHolder } from './kmod-backend';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-lock-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('lockHolder', () => {
  it('names the process holding a flock on the file, and nobody for a file nobody locks', async () => {
    const file = path.join(dir, 'device');
    const free = path.join(dir, 'free');
    fs.writeFileSync(file, '');
    fs.writeFileSync(free, '');
    const native = path.resolve(__dirname, '..', '..', 'dist', 'native', 'index.js');
    const child = spawn(process.execPath, ['-e', `
      const fs = require('node:fs');
      const fd = fs.openSync(${JSON.stringify(file)}, 'r');
      if (!require(${JSON.stringify(native)}).flockExclusive(fd)) process.exit(2);
      process.stdout.write('locked\\n');
      setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      expect(lockHolder(file)).toBe(child.pid);
      expect(lockHolder(free)).toBeNull();
      expect(lockHolder(path.join(dir, 'missing'))).toBeNull();
    } finally {
      child.kill('SIGKILL');
    }
  });
});
