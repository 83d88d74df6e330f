// WAL checkpoints off the event loop (issue 19). SQLite checkpoints the WAL
// into the database inside the commit that crosses wal_autocheckpoint pages:
// on the broker's event loop, copying every page the WAL holds, with two
// fsyncs (WAL, then database). Here a second connection in a worker thread
// runs PASSIVE checkpoints shortly after commits, so the copying and the
// fsyncs happen on that thread while the event loop keeps answering.
//
// What stays as it was:
// - durability: the worker's connection uses synchronous=NORMAL, so its
//   checkpoint syncs the WAL before it copies and the database before the WAL
//   may be reused, exactly like the inline checkpoint; a PASSIVE checkpoint
//   never takes the writer's lock and never waits, so the broker's commits
//   (group commit, audit batches) are never blocked by it;
// - the bound on the WAL: the broker's own connection keeps
//   wal_autocheckpoint (state-db.ts), which now finds the pages already
//   copied (it copies only what came since, usually nothing) and lets the
//   next write start the WAL over. If the worker stops or cannot start, the
//   broker checkpoints inline as before (a warning says so).
//
// SQLite starts the WAL over only when a write begins after a checkpoint
// copied everything: the worker repeats a PASSIVE checkpoint while commits
// land during it (a few rounds, each shorter than the one before), so under
// steady writes the WAL is reset between two commits and stays small.
import { Worker } from 'node:worker_threads';

/** Shortest pause between two checkpoint runs, ms: a run copies what the WAL gained meanwhile, once. */
export const CHECKPOINT_INTERVAL_MS = 50;
/** WAL frames past which a run ends with a RESTART checkpoint (under the broker's own wal_autocheckpoint). */
export const RESTART_FRAMES = 3000;
/** PASSIVE rounds per run while commits land during it. */
const ROUNDS = 4;

// Int32 slots shared with the worker.
const POKE = 0; // 1: commits since the last run
const STOP = 1; // 1: close and exit
const CLOSED = 2; // 1: the worker closed its connection
const RUNS = 3; // checkpoint runs done (for tests and the bench)
const RESTARTS = 4; // RESTART checkpoints that copied the whole WAL

const WORKER_SOURCE = `
'use strict';
const { workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const s = new Int32Array(workerData.shared);
let db;
try {
  db = new Database(workerData.file, { fileMustExist: true });
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 0');
  // Only the broker's connection checkpoints by itself (the bound on the WAL).
  db.pragma('wal_autocheckpoint = 0');
  const ckpt = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
  const restart = db.prepare('PRAGMA wal_checkpoint(RESTART)');
  for (;;) {
    Atomics.wait(s, ${POKE}, 0);
    if (Atomics.load(s, ${STOP})) break;
    // Let the WAL gather a few commits: copying a hot page once per run, not once per commit.
    Atomics.wait(s, ${STOP}, 0, workerData.intervalMs);
    if (Atomics.load(s, ${STOP})) break;
    let r;
    for (let i = 0; i < ${ROUNDS}; i++) {
      Atomics.store(s, ${POKE}, 0);
      try {
        r = ckpt.get();
      } catch {
        r = undefined;
        break; // SQLITE_BUSY and the like: the next poke tries again
      }
      // Done when everything in the WAL is in the database (the next write starts it over).
      if (r.busy !== 0 || r.log <= 0 || r.checkpointed >= r.log) break;
      if (Atomics.load(s, ${STOP})) break;
    }
    // Steady writes: commits landed during every round, so no write ever
    // found the WAL fully copied and started it over. Copy the rest holding
    // the writer's lock (a commit waits for it: a few pages and two fsyncs),
    // never waiting for it (busy_timeout 0: a writer in its transaction
    // makes this a PASSIVE round again).
    if (r && r.busy === 0 && r.log >= workerData.restartFrames && !Atomics.load(s, ${STOP})) {
      let done = false;
      try {
        // Everything copied under the writer's lock: the next write starts the WAL over (busy
        // only says a reader was still in it at the end, which a write after it will not be).
        const rr = restart.get();
        done = rr.log >= 0 && rr.checkpointed === rr.log;
      } catch {
        // the next run tries again
      }
      if (done) Atomics.add(s, ${RESTARTS}, 1);
    }
    Atomics.add(s, ${RUNS}, 1);
  }
} catch (err) {
  // A SqliteError loses its message on the way to the parent: send a plain Error.
  throw new Error(String(err && err.code ? err.code + ': ' : '') + String(err && err.message));
} finally {
  try {
    if (db) db.close();
  } finally {
    Atomics.store(s, ${CLOSED}, 1);
    Atomics.notify(s, ${CLOSED});
  }
}
`;

export class WalCheckpointer {
  private readonly shared = new Int32Array(new SharedArrayBuffer(32));
  private worker: Worker | undefined;
  private alive = false;

  /**
   * Starts the worker on the database file (already in WAL mode). `onFailure`
   * hears why it stopped, if it stops by itself.
   */
  constructor(file: string, options: { intervalMs?: number; onFailure?: (err: Error) => void } = {}) {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { file, driver: require.resolve('better-sqlite3'), shared: this.shared.buffer, intervalMs: options.intervalMs ?? CHECKPOINT_INTERVAL_MS, restartFrames: RESTART_FRAMES },
      // Small: the thread runs one prepared statement.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
    });
    worker.unref();
    this.alive = true;
    worker.on('error', (err) => {
      this.alive = false;
      options.onFailure?.(err);
    });
    worker.on('exit', (code) => {
      if (this.alive && !Atomics.load(this.shared, STOP)) options.onFailure?.(new Error(`WAL checkpoint worker exited (${code})`));
      this.alive = false;
    });
    this.worker = worker;
  }

  /** Tells the worker that commits landed: it checkpoints within CHECKPOINT_INTERVAL_MS. Cheap. */
  poke(): void {
    if (this.shared[POKE] === 0) {
      Atomics.store(this.shared, POKE, 1);
      Atomics.notify(this.shared, POKE);
    }
  }

  /** Checkpoint runs the worker finished. */
  get runs(): number {
    return Atomics.load(this.shared, RUNS);
  }

  /** RESTART checkpoints that copied the whole WAL (steady writes). */
  get restarts(): number {
    return Atomics.load(this.shared, RESTARTS);
  }

  get running(): boolean {
    return this.alive;
  }

  /**
   * Stops the worker and waits (blocking, at most `timeoutMs`: one
   * checkpoint) until it closed its connection, so the broker's own close is
   * the last one and leaves no WAL behind.
   */
  close(timeoutMs = 5000): void {
    if (!this.worker) return;
    Atomics.store(this.shared, STOP, 1);
    Atomics.store(this.shared, POKE, 1);
    Atomics.notify(this.shared, POKE);
    Atomics.notify(this.shared, STOP);
    if (this.alive) Atomics.wait(this.shared, CLOSED, 0, timeoutMs);
    this.alive = false;
    void this.worker.terminate();
    this.worker = undefined;
  }
}
