// What the data plane's socket side and request side share: the limits and
// dependencies, one peer connection, the per-uid token buckets, closing
// received fds. Moved out of data-plane.ts unchanged (issue 14).
import * as fs from 'node:fs';
import type * as native from '../../native';
import type { Caller } from '../identity/caller';
import type { BrokerCore } from '../core';
import type { ProcessIdentity } from '../leases/process-liveness';
import type { StateSpace } from '../store/state-space';

export interface DataPlaneLimits {
  maxConnectionsPerUid: number;
  maxRequestsPerSecondPerUid: number;
  maxLeasesPerUid: number;
  maxConnectsPerSecondPerUid: number;
  /** Token bucket of malformed packets (protocol errors) per non-admin uid; empty: its connections are closed at accept. */
  maxMalformedPerSecondPerUid: number;
  refusalAuditIntervalSeconds: number;
}

export type DataPlaneDeps = BrokerCore & {
  limits: DataPlaneLimits;
  identify: (cred: native.PeerCred) => Caller;
  observe?: (type: string, seconds: number, result: string, reason: string) => void;
  /** Free space on the state filesystem; below its low-water mark non-admins are refused. */
  stateSpace?: StateSpace;
};

export interface Connection {
  id: number;
  sock: native.SeqpacketSocket;
  caller: Caller;
  process: ProcessIdentity;
  leases: Set<number>;
  closed: boolean;
  /**
   * Revocation notices that were queued (the socket buffer was full) since
   * the queue last emptied. They are the broker's own burst, not replies the
   * peer left unread, so the slow-reader bound does not count them.
   */
  noticesQueued: number;
}

export interface RateBucket {
  tokens: number;
  last: number;
}

/** One token from uid's bucket (rate per second, burst = rate). */
export function takeToken(buckets: Map<number, RateBucket>, uid: number, rate: number): boolean {
  const now = performance.now();
  const b = buckets.get(uid) ?? { tokens: rate, last: now };
  b.tokens = Math.min(rate, b.tokens + ((now - b.last) / 1000) * rate);
  b.last = now;
  buckets.set(uid, b);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

/** Whether the uid's bucket has a token now, without taking it. */
export function hasToken(buckets: Map<number, RateBucket>, uid: number, rate: number): boolean {
  const b = buckets.get(uid);
  if (!b) return true;
  return Math.min(rate, b.tokens + ((performance.now() - b.last) / 1000) * rate) >= 1;
}

export function closeAll(fds: number[]): void {
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }
}

