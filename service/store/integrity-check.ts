// The state database's integrity check (PRAGMA quick_check) on a worker
// thread, so a restart does not wait for it on the event loop (issue 19:
// restart to answering ≤ 30 µs per region on record). At 17,000 regions and
// 100,000 grants the check reads every page: ~80-160 ms, the largest single
// item of a restart. The broker reads what re-adoption needs while it runs and
// writes nothing until it passed (state-db.ts keeps the connection
// query_only meanwhile), so a corrupt database is refused exactly as before:
// byte for byte untouched, no socket opened.
//
// A worker thread takes ~40-50 ms to boot (Node's bootstrap, the driver) before
// it can open anything. `shmbroker serve` boots it first thing
// (prepareIntegrityCheck), while the main thread is still loading the
// configuration and the broker's modules; the check itself starts only once
// the broker has opened the database, as before, so nothing about what it
// checks or when the file is touched changes.
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
parentPort.once('message', (file) => {
  let db;
  try {
    // Read-only: this connection can never change the file it checks.
    db = new Database(file, { readonly: true, fileMustExist: true });
    parentPort.postMessage({ report: String(db.pragma('quick_check', { simple: true })) });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message ? err.message : err) });
  } finally {
    if (db) db.close();
    parentPort.close();
  }
});
`;

function bootWorker(): Worker {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver: require.resolve('better-sqlite3') },
    // Small: the thread runs one statement.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  });
  // Booted ahead and never asked (a fresh database, --print-config): it must
  // not keep the process alive. Referenced again while it checks.
  worker.unref();
  return worker;
}

let booted: Worker | undefined;

/** Boots the next check's worker thread now, ahead of quickCheckInBackground (idempotent). */
export function prepareIntegrityCheck(): void {
  booted ??= bootWorker();
}

/** Ends a booted worker no check used (a new or migrated database is checked inline). */
export function discardPreparedIntegrityCheck(): void {
  void booted?.terminate();
  booted = undefined;
}

/**
 * Runs SQLite's quick_check on `file` on a worker thread (the one
 * prepareIntegrityCheck booted, or a new one), through its own read-only
 * connection. Resolves with SQLite's report ('ok' when sound); rejects only
 * if the check could not run at all.
 */
export function quickCheckInBackground(file: string): Promise<string> {
  const worker = booted ?? bootWorker();
  booted = undefined;
  return new Promise((resolve, reject) => {
    let answered = false;
    worker.ref();
    worker.once('message', (m: { report?: string; error?: string }) => {
      answered = true;
      if (m.report !== undefined) resolve(m.report);
      else reject(new Error(m.error));
    });
    worker.once('error', (err) => {
      answered = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`integrity check worker exited (${code}) without a result`));
    });
    worker.postMessage(file);
  });
}
