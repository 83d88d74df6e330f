// One error class per condition the broker reports, each with a stable
// `reason` (machine-readable, UPPER_SNAKE_CASE) and the canonical gRPC code
// it maps to. Handlers throw these; grpc-status.ts turns them into a status
// in one place, and the data plane turns them into an ErrorReply.

/** Canonical codes (google.rpc.Code), duplicated here so the data plane and the SDK need not load grpc-js. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type CodeValue = (typeof Code)[keyof typeof Code];

const CODE_NAMES = new Map<number, string>(Object.entries(Code).map(([name, value]) => [value, name]));

/** 'PERMISSION_DENIED' for 7; 'CODE_n' for a number outside google.rpc.Code. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? `CODE_${code}`;
}

/** Facts a client can act on, sent as google.rpc error details (rpc/grpc-status.ts). */
export interface ErrorDetails {
  /** Extra ErrorInfo metadata (the resource names are added from `resource`). */
  metadata?: Record<string, string>;
  /** The request field at fault (BadRequest), e.g. "region.size_bytes". */
  field?: string;
  /** The quota subject refused (QuotaFailure), e.g. "uid:1001". */
  quotaSubject?: string;
  /** How long to wait before retrying (RetryInfo). */
  retryDelayMs?: number;
}

export abstract class BrokerError extends Error {
  abstract readonly code: CodeValue;
  readonly reason: string;
  readonly details: ErrorDetails;
  /**
   * The resource the refused call was about ("regions/x", "regions/x/grants/3",
   * "quotas/uid:1001"): set by the thrower or by the audited-operation helper,
   * which audits the refusal against the same name.
   */
  resource: string | undefined;
  constructor(reason: string, message: string, details: ErrorDetails = {}) {
    super(message);
    this.reason = reason;
    this.details = details;
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends BrokerError {
  readonly code = Code.INVALID_ARGUMENT;
}

export class NotFoundError extends BrokerError {
  readonly code = Code.NOT_FOUND;
}

export class AlreadyExistsError extends BrokerError {
  readonly code = Code.ALREADY_EXISTS;
}

export class PermissionDeniedError extends BrokerError {
  readonly code = Code.PERMISSION_DENIED;
}

export class ResourceExhaustedError extends BrokerError {
  readonly code = Code.RESOURCE_EXHAUSTED;
}

export class FailedPreconditionError extends BrokerError {
  readonly code = Code.FAILED_PRECONDITION;
}

export class UnavailableError extends BrokerError {
  readonly code = Code.UNAVAILABLE;
}

export class InternalError extends BrokerError {
  readonly code = Code.INTERNAL;
}
