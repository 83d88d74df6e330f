// The first part of a broker's start, the part that needs neither the
// configuration's components nor the RPC stack: the runtime and state
// directories checked, the state directory locked, no live broker on the
// control socket, and the state database opened with its integrity check
// (PRAGMA quick_check) started on a worker thread.
//
// Broker.start runs it itself; `shmbroker serve` runs it before it loads the
// rest of the broker (grpc-js, the protos, the metrics: ~100 ms of modules),
// so the integrity check, which reads every page (~80 ms of CPU at 17,000
// regions + 100,000 grants, more as the audit trail grows), runs beside that
// loading instead of after it (issue 19: restart to answering). Nothing is
// written before the check passed either way (store/state-db.ts).
import * as net from 'node:net';
import { controlSocketPath, dataSocketPath } from '../proto/wire';
import { FailedPreconditionError } from './errors';
import { ensureSecureDir } from './secure-dirs';
import { openStateDbCheckingInBackground, type Db } from './store/state-db';
import { lockStateDir, type StateLock } from './store/state-dir';

export interface StartState {
  runtimeDir: string;
  stateDir: string;
  controlPath: string;
  dataPath: string;
  stateLock: StateLock;
  db: Db;
  /** Resolves once the integrity check passed; rejects with STATE_DATABASE_UNUSABLE. */
  checked: Promise<void>;
  /** Closes the database and releases the lock (a start that fails after this). */
  close(): void;
}

/** True if something already accepts connections on the socket. */
function socketIsLive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function openStartState(runtimeDirOption: string, stateDirOption: string): Promise<StartState> {
  const runtimeDir = ensureSecureDir(runtimeDirOption, { createMode: 0o755, what: 'runtime directory' });
  // 0700 enforced: the database, its WAL and the audit key are nobody else's business.
  const stateDir = ensureSecureDir(stateDirOption, { createMode: 0o700, enforceMode: 0o700, what: 'state directory' });
  const stateLock = lockStateDir(stateDir);
  try {
    const controlPath = controlSocketPath(runtimeDir);
    if (await socketIsLive(controlPath)) {
      throw new FailedPreconditionError('ALREADY_RUNNING', `another broker is serving on ${controlPath}`);
    }
    const { db, checked } = openStateDbCheckingInBackground(stateDir);
    let closed = false;
    return {
      runtimeDir,
      stateDir,
      controlPath,
      dataPath: dataSocketPath(runtimeDir),
      stateLock,
      db,
      checked,
      close: () => {
        if (closed) return;
        closed = true;
        db.close();
        stateLock.release();
      },
    };
  } catch (err) {
    stateLock.release();
    throw err;
  }
}
