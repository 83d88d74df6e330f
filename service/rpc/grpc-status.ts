// The one place where errors become gRPC statuses (AIP-193): a BrokerError
// keeps its code and message, and its reason travels as google.rpc.ErrorInfo
// inside a google.rpc.Status in the `grpc-status-details-bin` trailer, with
// the detail types that fit: BadRequest for an invalid argument, QuotaFailure
// for a quota refusal, RetryInfo for rate limiting, ResourceInfo for the
// region, grant or quota a refusal is about. Anything else is an INTERNAL
// error whose details stay in the broker's log.
import * as grpc from '@grpc/grpc-js';
import { ERROR_DOMAIN, STATUS_DETAILS_KEY, encodeStatus, type RichStatus } from '../../proto/status-details';
import { BrokerError, Code } from '../errors';
import type { Logger } from '../logger';
import { isSqliteError, reportWriteFailure } from '../write-failures';

/** The request field each INVALID_ARGUMENT reason is about, when the thrower did not say (BadRequest.field). */
const FIELD_OF_REASON: Record<string, string> = {
  INVALID_REGION_NAME: 'region_id',
  INVALID_RESOURCE_NAME: 'name',
  INVALID_SIZE: 'region.size_bytes',
  SIZE_OUT_OF_RANGE: 'region.size_bytes',
  SIZE_NOT_ALIGNED: 'region.size_bytes',
  INVALID_NUMA_NODE: 'region.numa_node',
  NUMA_UNSUPPORTED: 'region.numa_node',
  INVALID_GRANTEE: 'grant.grantee',
  INVALID_MODE: 'grant.mode',
  INVALID_TTL: 'grant.ttl',
  INVALID_PAGE_SIZE: 'page_size',
  INVALID_PAGE_TOKEN: 'page_token',
  INVALID_TIME: 'filter',
  INVALID_RESULT: 'filter.result',
  MISSING_QUOTA: 'quota',
  INVALID_QUOTA: 'quota',
  INVALID_QUOTA_NAME: 'name',
  INVALID_QUOTA_SUBJECT: 'name',
  INVALID_UPDATE_MASK: 'update_mask',
  INVALID_RESOURCE_VERSION: 'resource_version',
};

/** Default RetryInfo delay of a rate-limit refusal that did not say how long to wait. */
const DEFAULT_RETRY_DELAY_MS = 1000;

/** ErrorInfo metadata naming the resource: {region} or {region, grant} or {quota}. */
function resourceMetadata(resource: string | undefined): Record<string, string> {
  if (!resource) return {};
  const grant = /^(regions\/[^/]+)\/grants\/[^/]+$/.exec(resource);
  if (grant) return { region: grant[1]!, grant: resource };
  if (/^regions\/[^/]+$/.test(resource)) return { region: resource };
  if (resource.startsWith('quotas/')) return { quota: resource };
  return { resource };
}

function resourceType(resource: string): string {
  if (/\/grants\//.test(resource)) return 'shmbroker.v1.Grant';
  if (resource.startsWith('regions/')) return 'shmbroker.v1.Region';
  if (resource.startsWith('quotas/')) return 'shmbroker.v1.Quota';
  return '';
}

/** The rich status of a BrokerError (exported for the reason-table test). */
export function richStatusOf(err: BrokerError): RichStatus {
  const status: RichStatus = {
    code: err.code,
    message: err.message,
    errorInfo: { reason: err.reason, domain: ERROR_DOMAIN, metadata: { ...resourceMetadata(err.resource), ...err.details.metadata } },
  };
  if (err.code === Code.INVALID_ARGUMENT) {
    status.badRequest = { fieldViolations: [{ field: err.details.field ?? FIELD_OF_REASON[err.reason] ?? '', description: err.message }] };
  }
  if (err.details.quotaSubject !== undefined) {
    status.quotaFailure = { violations: [{ subject: err.details.quotaSubject, description: err.message }] };
  }
  if (err.details.retryDelayMs !== undefined || err.reason === 'RATE_LIMITED') {
    status.retryInfo = { retryDelayMs: err.details.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS };
  }
  const aboutResource = err.code === Code.NOT_FOUND || err.code === Code.ALREADY_EXISTS || err.code === Code.PERMISSION_DENIED || err.code === Code.FAILED_PRECONDITION;
  if (aboutResource && err.resource && resourceType(err.resource)) {
    status.resourceInfo = { resourceType: resourceType(err.resource), resourceName: err.resource, owner: '', description: err.message };
  }
  return status;
}

function withDetails(status: RichStatus): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, encodeStatus(status));
  return { code: status.code as grpc.status, details: status.message, metadata };
}

function plain(code: number, reason: string, message: string): RichStatus {
  return { code, message, errorInfo: { reason, domain: ERROR_DOMAIN, metadata: {} } };
}

export function toServiceError(err: unknown, log: Logger, method: string): Partial<grpc.StatusObject> {
  if (err instanceof BrokerError) return withDetails(richStatusOf(err));
  if (isSqliteError(err)) reportWriteFailure('state', err);
  const sqliteCode = (err as { code?: unknown } | null)?.code;
  if (sqliteCode === 'SQLITE_FULL') {
    // The transaction rolled back: nothing was written. Say so, instead of a bare INTERNAL.
    log.error({ err, method }, 'state database cannot be written');
    return withDetails(
      plain(Code.RESOURCE_EXHAUSTED, 'STATE_STORAGE_FULL', `the broker's state database cannot be written (${String((err as Error).message)}); nothing was changed`),
    );
  }
  log.error({ err, method }, 'unexpected error in rpc handler');
  return withDetails(plain(Code.INTERNAL, 'INTERNAL', `internal error in ${method}; see the broker log`));
}
