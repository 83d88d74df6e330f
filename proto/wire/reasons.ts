// The error-reason registry: every reason an error can carry, with the
// canonical code it always travels with and the shape of its message. One
// table for the broker (which may only throw a reason with the code listed
// here: service/errors.ts checks it at compile time), the SDK, the CLI, the
// C and Python clients (which switch on the reason strings), and the docs
// (docs/ARCHITECTURE.md's table is checked against this one by a test).
//
// Reasons are stable UPPER_SNAKE_CASE strings: a client may compare them
// forever, so never rename one; add a new one instead. Over gRPC they travel
// as google.rpc.ErrorInfo.reason (domain ERROR_DOMAIN, proto/status-details.ts);
// on the data plane in ErrorReply.reason.
//
// origin says who raises it: 'broker' (a status from the broker, over gRPC
// or the data plane), 'start' (the broker refuses to start: printed by
// `shmbroker serve`), 'sdk' (the client library, locally), 'cli' (the
// command line, locally). Message templates name their variable parts in
// braces; the text after the template is free.
import type { CodeName } from './codes';

export interface ReasonInfo {
  code: CodeName;
  origin: 'broker' | 'start' | 'sdk' | 'cli';
  message: string;
}

/** The error-reason registry: every reason, with the code it always travels with, who raises it and its message template. */
export const REASONS = {
  // Requests that cannot be right, whoever sends them.
  INVALID_REGION_NAME: { code: 'INVALID_ARGUMENT', origin: 'broker', message: '{field} {name} is not a valid region name: use 1-63 characters of [a-z0-9._-], starting with a letter or digit' },
  INVALID_RESOURCE_NAME: { code: 'INVALID_ARGUMENT', origin: 'broker', message: '{field} must look like "regions/{region}" (or ".../grants/{grant}"), got {name}' },
  INVALID_SIZE: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'size_bytes must be a positive number of bytes, got {size}' },
  SIZE_NOT_ALIGNED: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'size_bytes {size} must be a multiple of {unit}' },
  SIZE_OUT_OF_RANGE: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'size_bytes {size} is outside the allowed range {min}..{max}' },
  INVALID_NUMA_NODE: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'numa_node must be -1 or a node number, got {node}' },
  NUMA_UNSUPPORTED: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'the {backend} backend cannot place a region on a NUMA node' },
  INVALID_GRANTEE: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'grant must name one uid, gid, kubernetes_namespace or kubernetes_service_account: {problem}' },
  INVALID_MODE: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'mode must be ACCESS_MODE_READ_ONLY or ACCESS_MODE_READ_WRITE' },
  INVALID_TTL: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'ttl must be between 0 and 10 years, got {ttl}' },
  INVALID_PAGE_SIZE: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'page_size must be between 0 and {max}, got {size}' },
  INVALID_PAGE_TOKEN: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'page_token is not a token this list returned' },
  INVALID_LIST_FILTER: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'invalid filter: {what} (at character {at})' },
  INVALID_QUOTA: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'quota {field} must be a whole number >= 0, got {value}' },
  INVALID_QUOTA_NAME: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'invalid quota name {name}: expected quotas/uid:N or quotas/gid:N' },
  INVALID_QUOTA_SUBJECT: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'invalid quota subject {subject}' },
  MISSING_QUOTA: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'quota is required' },
  INVALID_UPDATE_MASK: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'update_mask path {path} is not one of {fields}' },
  QUOTA_ALREADY_CHARGED: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'region {region} is already charged against a quota' },
  INVALID_TIME: { code: 'INVALID_ARGUMENT', origin: 'broker', message: '{field} must be an RFC 3339 time (or a timestamp in range), got {time}' },
  INVALID_RESULT: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'invalid result {result}' },
  INVALID_AUDIT_EVENT: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'invalid audit event: {problem}' },
  BACKEND_REFUSED: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'the kernel module refused the region: {error}' },

  // WatchRegions: a resume point the broker no longer keeps (Kubernetes' 410 Gone).
  WATCH_VERSION_EXPIRED: { code: 'OUT_OF_RANGE', origin: 'broker', message: 'resource_version {version} is no longer kept (current {current}): watch again without one' },
  INVALID_RESOURCE_VERSION: { code: 'INVALID_ARGUMENT', origin: 'broker', message: 'resource_version must be one from a WatchRegionsResponse, got {version}' },

  // Not there, or not visible to this caller (the two look the same).
  REGION_NOT_FOUND: { code: 'NOT_FOUND', origin: 'broker', message: 'region {region} does not exist (or is not visible to uid {uid})' },
  GRANT_NOT_FOUND: { code: 'NOT_FOUND', origin: 'broker', message: 'grant {grant} does not exist (or is not visible to uid {uid})' },
  LEASE_NOT_FOUND: { code: 'NOT_FOUND', origin: 'broker', message: 'lease {lease} is not held by this client' },
  // Names are global: a taken name (also one of a DELETING region, or of a
  // region the caller may not see) cannot be hidden from a create.
  REGION_EXISTS: { code: 'ALREADY_EXISTS', origin: 'broker', message: 'region {region} already exists' },

  // Policy refusals.
  ADMIN_ONLY: { code: 'PERMISSION_DENIED', origin: 'broker', message: 'only an admin may {action}' },
  // Only to a caller who may see the region (a grantee); anyone else gets REGION_NOT_FOUND.
  NOT_OWNER: { code: 'PERMISSION_DENIED', origin: 'broker', message: 'uid {uid} does not own {region} and is not an admin' },
  NOT_YOUR_QUOTA: { code: 'PERMISSION_DENIED', origin: 'broker', message: 'uid {uid} may not read {quota}' },
  CREATE_NOT_ALLOWED: { code: 'PERMISSION_DENIED', origin: 'broker', message: 'uid {uid} may not create regions on this broker' },
  // No longer raised: without a grant the region is not visible, so the
  // broker answers REGION_NOT_FOUND (issue 16 item 6). Kept (reasons are
  // never removed) for clients that still test for it.
  NO_GRANT: { code: 'PERMISSION_DENIED', origin: 'broker', message: 'uid {uid} has no grant on {region}' },
  GRANT_READ_ONLY: { code: 'PERMISSION_DENIED', origin: 'broker', message: 'uid {uid} has only a read-only grant on {region}' },

  // Limits.
  QUOTA_BYTES: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'quota of {subject} exceeded: {used} + {size} bytes > {limit}' },
  QUOTA_REGIONS: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'quota of {subject} exceeded: {count} regions, the most allowed is {limit}' },
  QUOTA_GRANTS: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'quota of {subject} allows {limit} grants per region' },
  RATE_LIMITED: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'uid {uid} exceeds {rate} data-plane requests per second' },
  TOO_MANY_LEASES: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'uid {uid} holds {limit} leases, the most allowed (dataPlane.maxLeasesPerUid); release some first' },
  STATE_LOW_SPACE: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'the state filesystem has {free} bytes free, below the low-water mark {lowWater}: only admins are served' },
  BACKEND_EXHAUSTED: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: 'cannot allocate {size} bytes (or open another grant): {error}' },
  FD_LIMIT_REACHED: {
    code: 'RESOURCE_EXHAUSTED',
    origin: 'broker',
    message: 'the memfd backend holds one file descriptor per region and is at its ceiling of {ceiling} regions (RLIMIT_NOFILE {limit}, less {reserved} kept for connections)',
  },
  STATE_STORAGE_FULL: { code: 'RESOURCE_EXHAUSTED', origin: 'broker', message: "the broker's state database cannot be written ({error}); nothing was changed" },

  // The request is fine but the state is not.
  TOO_MANY_GRANTS: { code: 'FAILED_PRECONDITION', origin: 'broker', message: '{region} already has {count} grants (the most allowed is {limit})' },
  REGION_LOST: { code: 'FAILED_PRECONDITION', origin: 'broker', message: 'region {region} lost its memory in a broker restart; delete it' },
  HUGEPAGES_UNAVAILABLE: { code: 'FAILED_PRECONDITION', origin: 'broker', message: 'hugepages requested but this host has {free} bytes of free 2 MiB huge pages' },
  BACKEND_UNSUPPORTED: { code: 'FAILED_PRECONDITION', origin: 'broker', message: 'the kernel module cannot do this here: {error}' },

  // The broker's own failures (details in its log).
  INTERNAL: { code: 'INTERNAL', origin: 'broker', message: 'internal error in {method}; see the broker log' },
  UNKNOWN_PEER: { code: 'INTERNAL', origin: 'broker', message: 'the broker has no credentials for this connection' },

  // `shmbroker serve` refuses to start.
  ALREADY_RUNNING: { code: 'FAILED_PRECONDITION', origin: 'start', message: 'another broker is serving on {socket}' },
  KMOD_UNAVAILABLE: { code: 'FAILED_PRECONDITION', origin: 'start', message: '--backend kmod: cannot open {device}: {error} (is shmbroker.ko loaded?)' },
  UNSAFE_DIRECTORY: { code: 'FAILED_PRECONDITION', origin: 'start', message: '{what} {dir} is not a directory owned by the broker and writable only by it: {problem}' },
  UNSAFE_SOCKET_PATH: { code: 'FAILED_PRECONDITION', origin: 'start', message: '{path} exists and is not a socket; refusing to replace it' },
  UNSAFE_STATE_FILE: { code: 'FAILED_PRECONDITION', origin: 'start', message: 'state file {file} is owned by uid {uid}, not by the broker (uid {brokerUid})' },
  STATE_DATABASE_UNUSABLE: { code: 'FAILED_PRECONDITION', origin: 'start', message: 'state database {file} is unusable ({error}); restore it from a backup or move it away to start empty' },
  INVALID_CONFIG: { code: 'INVALID_ARGUMENT', origin: 'start', message: 'invalid configuration: {file}:{line}: {key}: {problem}; ...' },

  // The SDK, locally.
  BROKER_UNREACHABLE: { code: 'UNAVAILABLE', origin: 'sdk', message: 'cannot connect to the broker at {socket}: {error}' },
  BROKER_DISCONNECTED: { code: 'UNAVAILABLE', origin: 'sdk', message: 'lost the connection to the broker: {error}' },
  BROKER_NOT_TRUSTED: { code: 'UNAUTHENTICATED', origin: 'sdk', message: 'the broker at {socket} is not run by root or SHMBROKER_BROKER_UID: {problem}' },
  CLIENT_CLOSED: { code: 'UNAVAILABLE', origin: 'sdk', message: 'the client is closed' },
  MALFORMED_REPLY: { code: 'INTERNAL', origin: 'sdk', message: 'malformed reply from the broker: {problem}' },
  SIZE_MISMATCH: { code: 'INTERNAL', origin: 'sdk', message: 'region {region}: the broker said {size} bytes, the fd has {fdSize}' },
  MAP_FAILED: { code: 'INTERNAL', origin: 'sdk', message: 'cannot map region {region}: {error}' },
  NOTIFY_NOT_ALLOWED: { code: 'PERMISSION_DENIED', origin: 'sdk', message: 'this lease may wait but not notify (acquire it read-write)' },
  EVENTS_NOT_ACQUIRED: { code: 'FAILED_PRECONDITION', origin: 'sdk', message: 'acquire the region with the events option to notify or wait' },
  LEASE_ENDED: { code: 'FAILED_PRECONDITION', origin: 'sdk', message: 'this lease was {how} (released, or revoked with its reason): acquire the region again to notify' },

  // The command line, locally.
  USAGE: { code: 'INVALID_ARGUMENT', origin: 'cli', message: '{problem} (USAGE; see --help)' },
  INVALID_SUBJECT: { code: 'INVALID_ARGUMENT', origin: 'cli', message: 'give exactly one of --uid and --gid' },
  INVALID_NUMBER: { code: 'INVALID_ARGUMENT', origin: 'cli', message: '{flag} must be an integer between 0 and {max}, got {text}' },
  INVALID_FILTER: { code: 'INVALID_ARGUMENT', origin: 'cli', message: 'give only one of --region and --resource' },
  NOTHING_TO_SET: { code: 'INVALID_ARGUMENT', origin: 'cli', message: 'give at least one of --bytes, --regions, --grants-per-region' },
  OUT_OF_RANGE: { code: 'INVALID_ARGUMENT', origin: 'cli', message: 'offset {offset} + length {length} is beyond region {region} of {size} bytes' },
  BINARY_TO_TERMINAL: { code: 'INVALID_ARGUMENT', origin: 'cli', message: 'refusing to write raw region bytes to a terminal: redirect or pipe stdout, or give --file PATH' },
  AUDIT_TRAIL_TAMPERED: { code: 'FAILED_PRECONDITION', origin: 'cli', message: 'audit trail verification failed: {problem}' },
} as const satisfies Record<string, ReasonInfo>;

/** A reason of the registry, e.g. 'NO_GRANT': a string-literal union, so a misspelled comparison does not compile. */
export type Reason = keyof typeof REASONS;

/** The reasons that travel with canonical code C (e.g. ReasonWithCode<'NOT_FOUND'>). */
export type ReasonWithCode<C extends CodeName> = { [R in Reason]: (typeof REASONS)[R]['code'] extends C ? R : never }[Reason];

export function isReason(text: unknown): text is Reason {
  return typeof text === 'string' && Object.prototype.hasOwnProperty.call(REASONS, text);
}

/**
 * Reasons that never come back as an error status: they name why the data
 * plane closed a connection, or why something ended, in audit events and
 * revocation notices. Stable strings too.
 */
export const EVENT_REASONS = {
  PACKET_TOO_LARGE: 'a data-plane packet exceeded the largest request; connection closed',
  TOO_MANY_FDS: 'a data-plane packet carried more file descriptors than allowed; connection closed',
  SOCKET_ERROR: 'the data-plane socket failed (the errno is in the event details); connection closed',
  SLOW_READER: 'the peer stopped reading its replies; connection closed',
  MALFORMED_PACKET: 'a data-plane packet was not a DataRequest; connection closed',
  UNKNOWN_REQUEST: 'a DataRequest named no request this broker knows; connection closed',
  UNEXPECTED_FDS: 'file descriptors came with a request that takes none (or the wrong number); connection closed',
  TOO_MANY_CONNECTIONS: 'the uid holds the most data-plane connections allowed; connection refused',
  CONNECTION_RATE_LIMITED: 'the uid opened data-plane connections faster than dataPlane.maxConnectsPerSecondPerUid; connection refused',
  MALFORMED_RATE_LIMITED: 'the uid sent malformed data-plane packets faster than dataPlane.maxMalformedPerSecondPerUid; connection refused until its bucket refills',
  OFFER_REFUSED: 'a client offered back an fd the broker cannot match to its lease',
  HOLDER_EXITED: 'the process holding a lease exited; the lease ended',
  GRANT_REVOKED: 'the grant was revoked (revocation notice)',
  GRANT_EXPIRED: 'the grant reached its TTL (revocation notice, ExpireGrant event)',
  REGION_DELETED: 'the region was deleted (revocation notice)',
} as const;

/** A reason of an audit event or revocation notice, e.g. 'GRANT_REVOKED'. */
export type EventReason = keyof typeof EVENT_REASONS;
