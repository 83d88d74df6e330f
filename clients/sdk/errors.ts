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
export class RevokedError extends ShmbrokerError {}

const CODE_NAMES: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};

export function codeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

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
