// The state directory belongs to one broker, and nobody else reads it.
//  - lockStateDir: an exclusive flock on STATE_DIR/broker.lock for the
//    broker's whole life (the kernel drops it however the process ends, so
//    there is no stale lock to clean up). A second broker on the same state
//    directory, whatever its runtime directory, is refused with the holder's
//    pid instead of re-adopting and marking live regions LOST.
//  - privatizeStateFiles: every file in the directory (database, -wal, -shm,
//    audit key, anchor, lock) is 0600 and the broker's own; an older or
//    hand-made looser mode is fixed, a file of another uid is refused. New
//    files are born private because `serve` sets umask 077 before anything
//    is opened; this catches what existed before.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import { FailedPreconditionError } from '../errors';

export const LOCK_FILE = 'broker.lock';

export interface StateLock {
  /** Releases the lock (closing the fd); the process exiting does the same. */
  release(): void;
}

export function lockStateDir(stateDir: string): StateLock {
  const file = path.join(stateDir, LOCK_FILE);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600); // libuv opens close-on-exec
  let held = false;
  try {
    held = native.flockExclusive(fd);
    if (!held) {
      const holder = fs.readFileSync(file, 'utf8').trim() || 'unknown';
      throw new FailedPreconditionError(
        'ALREADY_RUNNING',
        `state directory ${stateDir} is in use by another broker (pid ${holder}, holding ${file}); stop it first`,
      );
    }
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`, 0);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  let open = true;
  return {
    release(): void {
      if (!open) return;
      open = false;
      fs.closeSync(fd);
    },
  };
}

/** Makes every file in `stateDir` 0600; returns the files whose mode was fixed (for the log). */
export function privatizeStateFiles(stateDir: string): string[] {
  const uid = process.geteuid?.() ?? 0;
  const fixed: string[] = [];
  for (const name of fs.readdirSync(stateDir)) {
    const file = path.join(stateDir, name);
    const st = fs.lstatSync(file);
    if (st.isDirectory()) continue; // e.g. backups: not the broker's to judge
    if (st.uid !== uid) {
      throw new FailedPreconditionError('UNSAFE_STATE_FILE', `state file ${file} is owned by uid ${st.uid}, not by the broker (uid ${uid})`);
    }
    if (st.isFile() && (st.mode & 0o077) !== 0) {
      fs.chmodSync(file, 0o600);
      fixed.push(`${name} (was ${(st.mode & 0o7777).toString(8)})`);
    }
  }
  return fixed;
}
