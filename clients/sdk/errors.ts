// Canonical code names come from the wire vocabulary the broker uses too.
import { codeName } from '../../proto/wire';
import type { RichStatus } from '../../proto/status-details';

// Errors the SDK raises: one class per condition, each with a stable `code`
// (the canonical status name) and the broker's machine-readable `reason`.
export class ShmbrokerError extends Error {
  /** Canonical status name, e.g. 'PERMISSION_DENIED'. */
  readonly code: string;
  /** Broker reason, e.g. 'NO_GRANT'. */
  readonly reason: string;
  /** The broker's google.rpc.Status details (ErrorInfo metadata, BadRequest, QuotaFailure, RetryInfo, ResourceInfo), for control-plane errors. */
  readonly status: RichStatus | undefined;
  constructor(code: string, reason: string, message: string, status?: RichStatus) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
    this.status = status;
  }
}

export class InvalidArgumentError extends ShmbrokerError {}
export class NotFoundError extends ShmbrokerError {}
export class PermissionDeniedError extends ShmbrokerError {}
export class ResourceExhaustedError extends ShmbrokerError {}
export class FailedPreconditionError extends ShmbrokerError {}
export class UnavailableError extends ShmbrokerError {}
export class ProtocolError extends ShmbrokerError {}

export { codeName };

/** Builds the typed error for a broker status (data-plane ErrorReply or gRPC status). */
export function errorFromStatus(code: number, reason: string, message: string, status?: RichStatus): ShmbrokerError {
  const name = codeName(code);
  switch (code) {
    case 3:
      return new InvalidArgumentError(name, reason, message, status);
    case 5:
      return new NotFoundError(name, reason, message, status);
    case 7:
      return new PermissionDeniedError(name, reason, message, status);
    case 8:
      return new ResourceExhaustedError(name, reason, message, status);
    case 9:
      return new FailedPreconditionError(name, reason, message, status);
    case 14:
      return new UnavailableError(name, reason, message, status);
    default:
      return new ShmbrokerError(name, reason, message, status);
  }
}
