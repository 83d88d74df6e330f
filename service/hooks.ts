// The shapes the broker core needs from the quota store and the audit trail.
// Both are called inside the transaction of the change they account for, so
// a change and its charge and its audit event commit (or roll back) together.
export interface AuditActor {
  pid: number;
  uid: number;
  gid: number;
  pod?: { namespace: string; name: string; serviceAccount: string };
}

export interface AuditEventInput {
  actor: AuditActor;
  action: string;
  resource: string;
  result: 'ALLOWED' | 'DENIED' | 'ERROR';
  reason?: string;
  details?: Record<string, unknown>;
}

export interface AuditSink {
  append(input: AuditEventInput): unknown;
  /** 'strict': acknowledgements wait for whenDurable() (audit/group-commit.ts). */
  readonly sync?: 'batch' | 'strict';
  /** Resolves once every event appended so far is on disk. */
  whenDurable?(): Promise<void>;
}

export interface QuotaCharger {
  precheckRegion(owner: { uid: number; gids: number[]; admin?: boolean }, bytes: number): void;
  chargeRegion(region: string, owner: { uid: number; gids: number[]; admin?: boolean }, bytes: number): void;
  refundRegion(region: string): void;
  checkGrant(region: string, currentGrantCount: number, owner: { uid: number }): void;
}
