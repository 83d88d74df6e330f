// One id per request (a control-plane RPC or a data-plane packet), carried
// through everything the request does by AsyncLocalStorage: every log line
// written while handling it has `requestId` (logger.ts), and the audit event
// it appends has `details.requestId` (audit-trail.ts), so a log line and its
// audit row can be joined. Ids are random, 16 hex digits: unique enough to
// grep, and they tell a client nothing about the broker's traffic.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

const storage = new AsyncLocalStorage<{ requestId: string }>();

// Random bytes are drawn 4 KiB at a time (512 ids): one randomBytes call
// per request showed in the control-plane profile (~10 µs a call).
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let offset = POOL_BYTES;

export function newRequestId(): string {
  if (offset + 8 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  offset += 8;
  return pool.toString('hex', offset - 8, offset);
}

/** Runs `fn` as request `requestId` (a fresh id by default). */
export function withRequest<T>(fn: () => T, requestId: string = newRequestId()): T {
  return storage.run({ requestId }, fn);
}

/** The id of the request being handled, if any. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
