// The audit trail's public types: what an event is, how to filter and what
// verify() reports. Moved out of audit-trail.ts unchanged (issue 14).
import type { GroupCommitOptions } from './group-commit';

export interface AuditActor {
  pid: number;
  uid: number;
  gid: number;
  pod?: { namespace: string; name: string; serviceAccount: string };
}

export type AuditResult = 'ALLOWED' | 'DENIED' | 'ERROR';

export interface AuditEventInput {
  actor: AuditActor;
  /** e.g. 'CreateRegion', 'Acquire', 'Release', 'RevokeGrant', 'DataPlaneProtocolError'. */
  action: string;
  /** e.g. 'regions/x', 'regions/x/grants/3', 'quotas/uid:1001'. */
  resource: string;
  result: AuditResult;
  reason?: string;
  details?: Record<string, unknown>;
}

export interface AuditEvent extends AuditEventInput {
  seq: number;
  /** RFC 3339, UTC, milliseconds. */
  time: string;
  prevHash: string;
  hash: string;
}

export interface AuditFilter {
  /** Resource prefix by path segments: 'regions/x' matches 'regions/x' and 'regions/x/grants/3', not 'regions/xy'. */
  resource?: string;
  /** Events at or after this RFC 3339 time. */
  since?: string;
  /** Events before this RFC 3339 time. */
  until?: string;
  actorUid?: number;
  result?: string;
  action?: string;
  /** Only events with seq greater than this. */
  afterSeq?: number;
  /** Page size, 1..1000; default 100. */
  limit?: number;
  pageToken?: string;
  /** Newest first instead of oldest first. */
  newestFirst?: boolean;
}

export interface AuditVerifyResult {
  ok: boolean;
  /** Events examined. */
  checked: number;
  /** seq 0 for problems of the trail as a whole (head, checkpoint, key). */
  problems: Array<{ seq: number; problem: string }>;
}

export interface AuditTrailOptions {
  /** HMAC key (>= 16 bytes). Without it the chain is plain SHA-256; see the header. */
  key?: Buffer;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * A file outside the database recording the newest committed head (seq,
   * hash, signed). Written at start and after commits, at most every
   * anchorIntervalMs (default 1000). verify() then also catches a database
   * that was wiped or rolled back to an older copy behind the anchor. Put it
   * where the database's editors cannot write (with the key, for example).
   */
  anchorFile?: string;
  anchorIntervalMs?: number;
  /** Group commit: the window, the batch size and batch/strict (group-commit.ts). */
  groupCommit?: GroupCommitOptions;
}
