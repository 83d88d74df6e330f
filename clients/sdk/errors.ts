// Canonical code names come from the one table the broker uses too.
import { codeName } from '../../service/errors';

// Errors the SDK raises: one class per condition, each with a stable `code`
// (the canonical status name) and the broker's machine-readable `reason`.
export class ShmbrokerError extends Error {
  /** Canonical status name, e.g. 'PERMISSION_DENIED'. */
  readonly code: string;
  /** Broker reason, e.g. 'NO_GRANT'. */
  readonly reason: string;
  constructor(code: string, reason: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
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
export function errorFromStatus(code: number, reason: string, message: string): ShmbrokerError {
  const name = codeName(code);
  switch (code) {
    case 3:
      return new InvalidArgumentError(name, reason, message);
    case 5:
      return new NotFoundError(name, reason, message);
    case 7:
      return new PermissionDeniedError(name, reason, message);
    case 8:
      return new ResourceExhaustedError(name, reason, message);
    case 9:
      return new FailedPreconditionError(name, reason, message);
    case 14:
      return new UnavailableError(name, reason, message);
    default:
      return new ShmbrokerError(name, reason, message);
  }
}
