// The chain itself: how an event becomes a row, and how rows, the head, the
// anchor and checkpoints are hashed or signed (SHA-256, or HMAC-SHA256 with
// the audit key). audit-trail.ts's header says what this detects and what it
// cannot. Moved out of audit-trail.ts unchanged (issue 14).
import { createHash, createHmac } from 'node:crypto';
import { InvalidArgumentError } from '../errors';
import { currentRequestId } from '../request-context';
import type { AuditActor, AuditEvent, AuditEventInput, AuditResult } from './audit-types';

export const GENESIS = '0'.repeat(64);

export interface ChainPoint {
  seq: number;
  hash: string;
}

const DOMAIN = 'shmbroker-audit-v1';

/** One row of audit_events, as stored. */
export interface Row {
  seq: number;
  time: string;
  actor_pid: number;
  actor_uid: number;
  actor_gid: number;
  actor_pod: string | null;
  action: string;
  resource: string;
  result: string;
  reason: string | null;
  details: string | null;
  prev_hash: string;
  hash: string;
}

/** Hashes (no key) or signs (with the key) everything the trail protects. */
export class ChainSigner {
  constructor(readonly key: Buffer | undefined) {}

  algorithm(): string {
    return this.key ? 'hmac-sha256' : 'sha256';
  }

  keyId(): string {
    return this.key ? createHash('sha256').update(this.key).digest('hex').slice(0, 16) : '';
  }

  mac(material: string): string {
    const data = `${DOMAIN}\n${material}`;
    return this.key ? createHmac('sha256', this.key).update(data).digest('hex') : createHash('sha256').update(data).digest('hex');
  }

  hashRow(r: Omit<Row, 'hash'>): string {
    return this.mac(
      `event\n${JSON.stringify([
        r.seq,
        r.time,
        r.actor_pid,
        r.actor_uid,
        r.actor_gid,
        r.actor_pod,
        r.action,
        r.resource,
        r.result,
        r.reason,
        r.details,
        r.prev_hash,
      ])}`,
    );
  }
}

export function checkpointMaterial(cp: { seq: number; hash: string; pruned: number; time: string }): string {
  return `checkpoint\n${JSON.stringify([cp.seq, cp.hash, cp.pruned, cp.time])}`;
}

export function validateInput(input: AuditEventInput): void {
  const { actor } = input;
  for (const k of ['pid', 'uid', 'gid'] as const) {
    if (!Number.isInteger(actor?.[k])) throw new InvalidArgumentError('INVALID_AUDIT_EVENT', `audit actor.${k} must be an integer`);
  }
  if (!input.action || !input.resource) throw new InvalidArgumentError('INVALID_AUDIT_EVENT', 'audit action and resource are required');
  if (!['ALLOWED', 'DENIED', 'ERROR'].includes(input.result)) {
    throw new InvalidArgumentError('INVALID_AUDIT_EVENT', `invalid audit result ${String(input.result)}`);
  }
}

export function rowToEvent(r: Row): AuditEvent {
  const actor: AuditActor = { pid: r.actor_pid, uid: r.actor_uid, gid: r.actor_gid };
  if (r.actor_pod !== null) actor.pod = JSON.parse(r.actor_pod) as AuditActor['pod'] & object;
  const ev: AuditEvent = {
    seq: r.seq,
    time: r.time,
    actor,
    action: r.action,
    resource: r.resource,
    result: r.result as AuditResult,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
  if (r.reason !== null) ev.reason = r.reason;
  if (r.details !== null) ev.details = JSON.parse(r.details) as Record<string, unknown>;
  return ev;
}

/** JSON with object keys sorted, so equal values always hash the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = sortKeys((value as Record<string, unknown>)[k]);
    return out;
  }
  return value;
}

/** The id of the request being handled goes into the event (details.requestId), to join it with the log lines. */
export function withRequestId(input: AuditEventInput): AuditEventInput {
  const requestId = currentRequestId();
  if (requestId === undefined || (input.details && 'requestId' in input.details)) return input;
  return { ...input, details: { ...input.details, requestId } };
}
