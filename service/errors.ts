// One error class per canonical code the broker reports, each carrying a
// stable `reason` from the registry (proto/wire/reasons.ts). A class only
// accepts the reasons the registry lists under its code, so the code a
// reason travels with is checked at compile time. Handlers throw these;
// rpc/grpc-status.ts turns them into a gRPC status in one place, and the
// data plane turns them into an ErrorReply.
import { Code, type CodeName, type CodeValue, type ReasonWithCode } from '../proto/wire';

export { Code, codeName, type CodeValue, type Reason } from '../proto/wire';

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

/** The error class of canonical code C: its constructor takes only C's reasons. */
function errorClass<C extends CodeName>(code: C) {
  return class extends BrokerError {
    readonly code = Code[code];
    constructor(reason: ReasonWithCode<C>, message: string, details: ErrorDetails = {}) {
      super(reason, message, details);
    }
  };
}

export class InvalidArgumentError extends errorClass('INVALID_ARGUMENT') {}
export class NotFoundError extends errorClass('NOT_FOUND') {}
export class AlreadyExistsError extends errorClass('ALREADY_EXISTS') {}
export class PermissionDeniedError extends errorClass('PERMISSION_DENIED') {}
export class ResourceExhaustedError extends errorClass('RESOURCE_EXHAUSTED') {}
export class FailedPreconditionError extends errorClass('FAILED_PRECONDITION') {}
export class OutOfRangeError extends errorClass('OUT_OF_RANGE') {}
export class UnavailableError extends errorClass('UNAVAILABLE') {}
export class InternalError extends errorClass('INTERNAL') {}

/**
 * Marks an error as already in the audit trail, so the control server's
 * last-resort refusal audit (rpc/control-server.ts) does not record it twice.
 */
const AUDITED = Symbol('audited');
export function markAudited<E>(err: E): E {
  if (err && typeof err === 'object') (err as { [AUDITED]?: true })[AUDITED] = true;
  return err;
}
export function isAudited(err: unknown): boolean {
  return !!err && typeof err === 'object' && (err as { [AUDITED]?: true })[AUDITED] === true;
}
