// The runtime directory holds the sockets every local uid connects to; the
// state directory holds the database. Both must be what they claim: a real
// directory (not a planted symlink), owned by the broker's uid, and writable
// by nobody else. The broker refuses to start otherwise and says why, rather
// than repairing a directory somebody else may control.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailedPreconditionError } from './errors';

export interface SecureDirOptions {
  /** Mode given to the directory when the broker creates it. */
  createMode: number;
  /** What the directory is, for messages ("runtime directory"). */
  what: string;
  /**
   * Mode the directory must have (the state directory: 0700). An existing
   * directory of the broker's with another mode is chmod'ed to it, and the
   * fix logged by the caller; one of another uid was refused already.
   */
  enforceMode?: number;
}

export function ensureSecureDir(dir: string, options: SecureDirOptions): string {
  const abs = path.resolve(dir);
  checkAncestors(abs, options.what);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    // mkdir does not follow a symlink planted at the last component: it fails with EEXIST.
    fs.mkdirSync(abs, { mode: options.createMode });
    fs.chmodSync(abs, options.createMode); // umask may have removed bits clients need
    st = fs.lstatSync(abs);
  }
  checkDirStat(abs, st, options.what);
  if (options.enforceMode !== undefined && (st.mode & 0o7777) !== options.enforceMode) {
    fs.chmodSync(abs, options.enforceMode);
  }
  return abs;
}

function checkDirStat(abs: string, st: fs.Stats, what: string): void {
  const uid = process.geteuid?.() ?? 0;
  if (st.isSymbolicLink()) {
    throw new FailedPreconditionError('UNSAFE_DIRECTORY', `${what} ${abs} is a symbolic link; refusing to follow it`);
  }
  if (!st.isDirectory()) {
    throw new FailedPreconditionError('UNSAFE_DIRECTORY', `${what} ${abs} exists and is not a directory`);
  }
  if (st.uid !== uid) {
    throw new FailedPreconditionError('UNSAFE_DIRECTORY', `${what} ${abs} is owned by uid ${st.uid}, not by the broker (uid ${uid})`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new FailedPreconditionError(
      'UNSAFE_DIRECTORY',
      `${what} ${abs} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}); chmod go-w it or remove it`,
    );
  }
}

// A directory is only as safe as the path to it: a parent that another uid
// can write (without the sticky bit) lets that uid swap the directory out.
// Parents are lstat'ed, never followed: a symlinked parent is refused, since
// whoever controls the link (or the directory holding it) could point it
// elsewhere after this check. Checked from the top down would be the same
// verdict; any order works because the check refuses on the first problem.
function checkAncestors(abs: string, what: string): void {
  const uid = process.geteuid?.() ?? 0;
  let dir = path.dirname(abs);
  for (;;) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(dir);
    } catch {
      throw new FailedPreconditionError('UNSAFE_DIRECTORY', `${what} ${abs}: parent ${dir} does not exist`);
    }
    if (st.isSymbolicLink()) {
      throw new FailedPreconditionError('UNSAFE_DIRECTORY', `${what} ${abs}: parent ${dir} is a symbolic link; give the real path`);
    }
    const foreignOwner = st.uid !== 0 && st.uid !== uid;
    const openlyWritable = (st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0;
    if (foreignOwner || openlyWritable) {
      throw new FailedPreconditionError(
        'UNSAFE_DIRECTORY',
        `${what} ${abs}: parent ${dir} is ${foreignOwner ? `owned by uid ${st.uid}` : 'world-writable without the sticky bit'}`,
      );
    }
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

/**
 * Removes a stale socket file before bind. Only a socket is removed: a
 * planted symlink or regular file is an error, not something to delete.
 */
export function removeStaleSocket(socketPath: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new FailedPreconditionError('UNSAFE_SOCKET_PATH', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  fs.unlinkSync(socketPath);
}
