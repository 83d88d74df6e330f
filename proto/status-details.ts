// The rich error model (AIP-193): a google.rpc.Status with typed details,
// carried in the `grpc-status-details-bin` trailer that every gRPC library
// knows. The broker encodes it (service/rpc/grpc-status.ts); the SDK and the
// CLI decode it. The google.rpc types come from the descriptor set built at
// build time (scripts/build-descriptor-set.js), the same files reflection
// serves, so both ends use Google's definitions and nothing hand-copied.
import * as fs from 'node:fs';
import * as protobuf from 'protobufjs';
import * as descriptor from 'protobufjs/ext/descriptor';
import { DESCRIPTOR_SET_PATH } from './load';

/** The trailer gRPC reserves for a serialized google.rpc.Status. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
/** ErrorInfo.domain of every reason the broker sends. */
export const ERROR_DOMAIN = 'shmbroker';

const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** google.rpc.ErrorInfo: why, machine-readably (AIP-193). */
export interface ErrorInfo {
  /** The registry's reason, e.g. 'NO_GRANT'. */
  reason: string;
  /** 'shmbroker' for every reason the broker sends. */
  domain: string;
  /** The resource names and figures of the refusal, e.g. `region`. */
  metadata: Record<string, string>;
}
/** google.rpc.BadRequest.FieldViolation: which request field is wrong. */
export interface FieldViolation {
  /** The field's path in the request, e.g. 'region.size_bytes'. */
  field: string;
  /** What is wrong with it. */
  description: string;
}
/** google.rpc.QuotaFailure.Violation: which quota a request would exceed. */
export interface QuotaViolation {
  /** The quota's subject, e.g. 'uid:1001'. */
  subject: string;
  /** The limit and the figures. */
  description: string;
}
/** google.rpc.ResourceInfo: the resource a refusal is about. */
export interface ResourceInfo {
  /** The resource's type, e.g. 'shmbroker.v1.Region'. */
  resourceType: string;
  /** Its name, e.g. 'regions/frames'. */
  resourceName: string;
  /** Its owner, when the caller may know it. */
  owner: string;
  /** What about it. */
  description: string;
}

/** A google.rpc.Status with the detail types the broker uses, decoded. */
export interface RichStatus {
  /** The canonical code number (google.rpc.Code). */
  code: number;
  /** The error message. */
  message: string;
  /** Why, machine-readably: present on every broker error. */
  errorInfo?: ErrorInfo;
  /** google.rpc.BadRequest: the wrong fields, on INVALID_ARGUMENT. */
  badRequest?: { fieldViolations: FieldViolation[] };
  /** google.rpc.QuotaFailure: the quotas exceeded, on quota refusals. */
  quotaFailure?: { violations: QuotaViolation[] };
  /** google.rpc.RetryInfo: when to retry, on RATE_LIMITED. */
  retryInfo?: { retryDelayMs: number };
  /** google.rpc.ResourceInfo: the region, grant or quota refused. */
  resourceInfo?: ResourceInfo;
}

interface Types {
  status: protobuf.Type;
  errorInfo: protobuf.Type;
  badRequest: protobuf.Type;
  quotaFailure: protobuf.Type;
  retryInfo: protobuf.Type;
  resourceInfo: protobuf.Type;
}
let types: Types | undefined;
function load(): Types {
  if (!types) {
    const set = descriptor.FileDescriptorSet.decode(fs.readFileSync(DESCRIPTOR_SET_PATH));
    const root = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor(set);
    // Field names as in the .proto (snake_case): fromDescriptor keeps them.
    const t = (name: string) => root.lookupType(`google.rpc.${name}`);
    types = {
      status: t('Status'),
      errorInfo: t('ErrorInfo'),
      badRequest: t('BadRequest'),
      quotaFailure: t('QuotaFailure'),
      retryInfo: t('RetryInfo'),
      resourceInfo: t('ResourceInfo'),
    };
  }
  return types;
}

function any(type: protobuf.Type, value: object): { type_url: string; value: Uint8Array } {
  return { type_url: TYPE_URL_PREFIX + type.fullName.replace(/^\./, ''), value: type.encode(type.fromObject(value)).finish() };
}

// Root.fromDescriptor leaves a map field as what the descriptor says it is
// on the wire: a repeated MetadataEntry{key, value}.
const toEntries = (m: Record<string, string>) => Object.entries(m).map(([key, value]) => ({ key, value }));
const fromEntries = (e: { key: string; value: string }[] | Record<string, string>) =>
  Array.isArray(e) ? Object.fromEntries(e.map(({ key, value }) => [key, value])) : e;

export function encodeStatus(s: RichStatus): Buffer {
  const t = load();
  const details = [];
  if (s.errorInfo) details.push(any(t.errorInfo, { ...s.errorInfo, metadata: toEntries(s.errorInfo.metadata) }));
  if (s.badRequest) {
    details.push(any(t.badRequest, { field_violations: s.badRequest.fieldViolations }));
  }
  if (s.quotaFailure) details.push(any(t.quotaFailure, s.quotaFailure));
  if (s.retryInfo) {
    const ms = Math.max(0, Math.round(s.retryInfo.retryDelayMs));
    details.push(any(t.retryInfo, { retry_delay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 } }));
  }
  if (s.resourceInfo) {
    const r = s.resourceInfo;
    details.push(any(t.resourceInfo, { resource_type: r.resourceType, resource_name: r.resourceName, owner: r.owner, description: r.description }));
  }
  return Buffer.from(t.status.encode(t.status.fromObject({ code: s.code, message: s.message, details })).finish());
}

/** Decodes the trailer; detail types it does not know are skipped, as AIP-193 asks of clients. */
export function decodeStatus(bytes: Uint8Array): RichStatus {
  const t = load();
  const raw = t.status.toObject(t.status.decode(bytes), { longs: Number, defaults: true }) as {
    code: number;
    message: string;
    details: { type_url: string; value: Uint8Array }[];
  };
  const out: RichStatus = { code: raw.code, message: raw.message };
  for (const d of raw.details) {
    const name = d.type_url.slice(d.type_url.lastIndexOf('/') + 1);
    const as = (type: protobuf.Type) => type.toObject(type.decode(d.value), { longs: Number, defaults: true }) as any;
    switch (name) {
      case 'google.rpc.ErrorInfo': {
        const e = as(t.errorInfo);
        out.errorInfo = { reason: e.reason, domain: e.domain, metadata: fromEntries(e.metadata ?? []) };
        break;
      }
      case 'google.rpc.BadRequest':
        out.badRequest = { fieldViolations: (as(t.badRequest).field_violations as FieldViolation[]).map(({ field, description }) => ({ field, description })) };
        break;
      case 'google.rpc.QuotaFailure':
        out.quotaFailure = { violations: (as(t.quotaFailure).violations as QuotaViolation[]).map(({ subject, description }) => ({ subject, description })) };
        break;
      case 'google.rpc.RetryInfo': {
        const delay = as(t.retryInfo).retry_delay ?? { seconds: 0, nanos: 0 };
        out.retryInfo = { retryDelayMs: Number(delay.seconds) * 1000 + Math.round(Number(delay.nanos) / 1e6) };
        break;
      }
      case 'google.rpc.ResourceInfo': {
        const r = as(t.resourceInfo);
        out.resourceInfo = { resourceType: r.resource_type, resourceName: r.resource_name, owner: r.owner, description: r.description };
        break;
      }
      default:
        break;
    }
  }
  return out;
}
