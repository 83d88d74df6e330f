// Canonical status codes (google.rpc.Code), by name and number. Both sides
// of the wire use this one table: the broker to build statuses (gRPC and the
// data plane's ErrorReply), the SDK and CLI to name what they received.
// Kept here rather than taken from grpc-js so the data plane and the SDK do
// not need to load grpc-js to name a code.

/** Canonical status codes (google.rpc.Code) by name. */
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

/** A canonical status name, e.g. 'PERMISSION_DENIED'. */
export type CodeName = keyof typeof Code;
export type CodeValue = (typeof Code)[CodeName];

const CODE_NAMES = new Map<number, string>(Object.entries(Code).map(([name, value]) => [value, name]));

/** 'PERMISSION_DENIED' for 7; 'CODE_n' for a number outside google.rpc.Code. */
export function codeName(code: number): string {
  return CODE_NAMES.get(code) ?? `CODE_${code}`;
}
