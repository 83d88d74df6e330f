// The one place where errors become gRPC statuses: a BrokerError keeps its
// code, message and reason (trailing metadata "shmbroker-reason"); anything
// else is an INTERNAL error whose details stay in the broker's log.
import * as grpc from '@grpc/grpc-js';
import { BrokerError, REASON_METADATA_KEY } from '../errors';
import type { Logger } from '../logger';

export function toServiceError(err: unknown, log: Logger, method: string): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  if (err instanceof BrokerError) {
    metadata.set(REASON_METADATA_KEY, err.reason);
    return { code: err.code as number as grpc.status, details: err.message, metadata };
  }
  const sqliteCode = (err as { code?: unknown } | null)?.code;
  if (sqliteCode === 'SQLITE_FULL') {
    // The transaction rolled back: nothing was written. Say so, instead of a bare INTERNAL.
    log.error({ err, method }, 'state database cannot be written');
    metadata.set(REASON_METADATA_KEY, 'STATE_STORAGE_FULL');
    return { code: grpc.status.RESOURCE_EXHAUSTED, details: `the broker's state database cannot be written (${String((err as Error).message)}); nothing was changed`, metadata };
  }
  log.error({ err, method }, 'unexpected error in rpc handler');
  metadata.set(REASON_METADATA_KEY, 'INTERNAL');
  return { code: grpc.status.INTERNAL, details: `internal error in ${method}; see the broker log`, metadata };
}
