// One id per request (a control-plane RPC or a data-plane packet), carried
// through everything the request does by AsyncLocalStorage: every log line
// written while handling it has `requestId` (logger.ts), and the audit event
// it appends has `details.requestId` (audit-trail.ts), so a log line and its
// audit row can be joined. Ids are random, 16 hex digits: unique enough to
// grep, and they tell a client nothing about the broker's traffic.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

const storage = new AsyncLocalStorage<{ requestId: string }>();

export function newRequestId(): string {
  return randomBytes(8).toString('hex');
}

/** Runs `fn` as request `requestId` (a fresh id by default). */
export function withRequest<T>(fn: () => T, requestId: string = newRequestId()): T {
  return storage.run({ requestId }, fn);
}

/** The id of the request being handled, if any. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
