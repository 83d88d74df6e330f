// Failed writes, reported from wherever they are caught (the RPC error
// mapper, the data plane's audit call, the audit anchor) to whoever counts
// them (BrokerMetrics: shmbroker_write_failures_total). A process-wide
// channel because the places that catch these errors are deep in layers that
// have no business holding the metrics object; a broker subscribes on start
// and unsubscribes on stop.
import { EventEmitter } from 'node:events';

export type WriteStore = 'audit' | 'state';

const channel = new EventEmitter();
channel.setMaxListeners(0);

export function reportWriteFailure(store: WriteStore, err: unknown): void {
  channel.emit('failure', store, err);
}

/** Calls `listener` for every failure; returns the unsubscribe function. */
export function onWriteFailure(listener: (store: WriteStore, err: unknown) => void): () => void {
  channel.on('failure', listener);
  return () => channel.off('failure', listener);
}

/** True for a better-sqlite3 error (code SQLITE_*): the database refused a read or write. */
export function isSqliteError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_');
}
