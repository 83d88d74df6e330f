// The shapes the broker core needs from the quota store and the audit trail.
// Both are called inside the transaction of the change they account for, so
// a change and its charge and its audit event commit (or roll back) together.
import type { AuditEventInput } from './audit/audit-types';

// The audit event's shape has one home, audit/audit-types.ts.
export type { AuditActor, AuditEventInput } from './audit/audit-types';

export interface AuditSink {
  append(input: AuditEventInput): unknown;
  /** 'strict': acknowledgements wait for whenDurable() (audit/group-commit.ts). */
  readonly sync?: 'batch' | 'strict';
  /** Resolves once every event appended so far is on disk. */
  whenDurable?(): Promise<void>;
  /**
   * Why the last group commit failed, while it keeps failing (a full or
   * broken state disk); undefined once events reach the disk again. The
   * data plane refuses what it would have to audit meanwhile (fail closed).
   */
  readonly failing?: Error | undefined;
}

export interface QuotaCharger {
  precheckRegion(owner: { uid: number; gids: number[]; admin?: boolean }, bytes: number): void;
  chargeRegion(region: string, owner: { uid: number; gids: number[]; admin?: boolean }, bytes: number): void;
  refundRegion(region: string): void;
  checkGrant(region: string, currentGrantCount: number, owner: { uid: number }): void;
}
