// Canonical code names come from the wire vocabulary the broker uses too.
import { codeName, type CodeName, type Reason } from '../../proto/wire';
import type { RichStatus } from '../../proto/status-details';

export type { CodeName, Reason };

/**
 * Every error the SDK raises: a stable `code` (the canonical status name) and
 * the broker's machine-readable `reason`; the subclasses below are per code.
 */
export class ShmbrokerError extends Error {
  /** Canonical status name, e.g. 'PERMISSION_DENIED'. */
  readonly code: CodeName;
  /**
   * Machine-readable reason from the registry (proto/wire/reasons.ts), e.g.
   * 'NO_GRANT': a string-literal union, so a misspelled comparison does not
   * compile. (A newer broker may send a reason this SDK's registry lacks; it
   * is passed through as it came.)
   */
  readonly reason: Reason;
  /** The broker's google.rpc.Status details (ErrorInfo metadata, BadRequest, QuotaFailure, RetryInfo, ResourceInfo), for control-plane errors. */
  readonly status: RichStatus | undefined;
  /**
   * @param code - canonical status name
   * @param reason - registry reason
   * @param message - one line for a person
   * @param status - the decoded google.rpc.Status of a control-plane error
   */
  constructor(code: CodeName, reason: Reason, message: string, status?: RichStatus) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
    this.status = status;
  }
}

/** INVALID_ARGUMENT: the request cannot be right (name, size, mode, ...). */
export class InvalidArgumentError extends ShmbrokerError {}
/** NOT_FOUND: no such region, grant or lease, or not visible to the caller. */
export class NotFoundError extends ShmbrokerError {}
/** PERMISSION_DENIED: policy refused it (NO_GRANT, NOT_OWNER, ADMIN_ONLY, ...). */
export class PermissionDeniedError extends ShmbrokerError {}
/** RESOURCE_EXHAUSTED: a quota, a rate limit or the backend ran out. */
export class ResourceExhaustedError extends ShmbrokerError {}
/** FAILED_PRECONDITION: the request is fine but the state is not (REGION_LOST, ...). */
export class FailedPreconditionError extends ShmbrokerError {}
/** UNAVAILABLE: the broker cannot be reached or the connection was lost. */
export class UnavailableError extends ShmbrokerError {}
/** The broker answered something this SDK cannot use. */
export class ProtocolError extends ShmbrokerError {}

export { codeName };

/** Builds the typed error for a broker status (data-plane ErrorReply or gRPC status). */
export function errorFromStatus(code: number, reason: string, message: string, status?: RichStatus): ShmbrokerError {
  // Off the wire: a code outside google.rpc.Code or a reason of a newer broker is kept as sent.
  const name = codeName(code) as CodeName;
  const r = reason as Reason;
  switch (code) {
    case 3:
      return new InvalidArgumentError(name, r, message, status);
    case 5:
      return new NotFoundError(name, r, message, status);
    case 7:
      return new PermissionDeniedError(name, r, message, status);
    case 8:
      return new ResourceExhaustedError(name, r, message, status);
    case 9:
      return new FailedPreconditionError(name, r, message, status);
    case 14:
      return new UnavailableError(name, r, message, status);
    default:
      return new ShmbrokerError(name, r, message, status);
  }
}
