// Handlers of shmbroker.v1.AuditService (proto/shmbroker/v1/audit.proto),
// as plain functions over proto-loader plain objects (keepCase false, longs
// Number, enums String, defaults, oneofs).
//
// Access (also documented in audit.proto):
// - Admins list, watch and verify everything.
// - A non-admin sees only events whose actor is their own uid: without
//   filter.actor_uid the filter is narrowed to it; with another uid it is
//   PERMISSION_DENIED 'ADMIN_ONLY'. (Events about their regions caused by
//   others are not shown: an actor's pid, uid and pod are not theirs to see.)
// - VerifyAuditTrail is admin only: its problems name events of everyone.
//
// With `record` on (the default when `audit` is given), List and Verify are
// themselves audit events ("ListAuditEvents", resource "audit"), as is the
// start of each Watch; denials are recorded too.
import type { AuditEvent, AuditFilter, AuditTrail } from '../audit/audit-trail';
import { Auditor } from '../audit/audited-operation';
import { InvalidArgumentError, PermissionDeniedError } from '../errors';
import { pageSize } from '../store/paging';
import type { RpcCaller } from './quota-rpc';
import type { Database } from 'better-sqlite3';

export interface AuditRpcDeps {
  audit: AuditTrail;
  /** Records the calls themselves (the broker passes its own). */
  auditor?: Auditor;
  /** Or: the database the trail lives in, to build one from. */
  db?: Database;
  /** Defaults to caller.isAdmin. */
  isAdmin?: (caller: RpcCaller) => boolean;
  /** Record List/Watch/Verify calls as audit events; default true when db is given. */
  record?: boolean;
}

interface TimestampJson {
  seconds: number;
  nanos: number;
}

interface FilterJson {
  resource?: string;
  startTime?: TimestampJson | null;
  endTime?: TimestampJson | null;
  actorUid?: number;
  result?: string;
  action?: string;
}

export interface AuditEventJson {
  seq: number;
  time: TimestampJson;
  actor: { pid: number; uid: number; gid: number; pod: { namespace: string; name: string; serviceAccount: string } | null };
  action: string;
  resource: string;
  result: string;
  reason: string;
  detailsJson: string;
  prevHash: string;
  hash: string;
}

export function toAuditEventJson(ev: AuditEvent): AuditEventJson {
  const ms = Date.parse(ev.time);
  return {
    seq: ev.seq,
    time: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
    actor: { pid: ev.actor.pid, uid: ev.actor.uid, gid: ev.actor.gid, pod: ev.actor.pod ?? null },
    action: ev.action,
    resource: ev.resource,
    result: `AUDIT_RESULT_${ev.result}`,
    reason: ev.reason ?? '',
    detailsJson: ev.details !== undefined ? JSON.stringify(ev.details) : '',
    prevHash: ev.prevHash,
    hash: ev.hash,
  };
}

function timeOf(ts: TimestampJson | null | undefined): string | undefined {
  if (!ts) return undefined;
  const ms = Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
  // A Date holds +-8.64e15 ms; beyond that toISOString throws a RangeError (an INTERNAL to the caller).
  if (!Number.isFinite(ms) || Number.isNaN(new Date(ms).getTime())) {
    throw new InvalidArgumentError('INVALID_TIME', `invalid timestamp (seconds ${String(ts.seconds)}, nanos ${String(ts.nanos)}): out of range`);
  }
  return new Date(ms).toISOString();
}

/** The AuditTrail filter for a request, narrowed to what the caller may see. */
export function filterFor(caller: RpcCaller, admin: boolean, f: FilterJson | null | undefined): AuditFilter {
  const out: AuditFilter = {};
  if (f?.resource) out.resource = f.resource;
  const since = timeOf(f?.startTime);
  const until = timeOf(f?.endTime);
  if (since) out.since = since;
  if (until) out.until = until;
  if (f?.action) out.action = f.action;
  if (f?.result && f.result !== 'AUDIT_RESULT_UNSPECIFIED') {
    // An enum number this broker does not know arrives as a number, not a name.
    const r = String(f.result).replace(/^AUDIT_RESULT_/, '');
    if (!['ALLOWED', 'DENIED', 'ERROR'].includes(r)) throw new InvalidArgumentError('INVALID_RESULT', `invalid result ${f.result}`);
    out.result = r;
  }
  if (f?.actorUid !== undefined && f.actorUid !== null) out.actorUid = f.actorUid;
  if (!admin) {
    if (out.actorUid === undefined) out.actorUid = caller.uid;
    else if (out.actorUid !== caller.uid) {
      throw new PermissionDeniedError('ADMIN_ONLY', `only an admin may read the audit events of uid ${out.actorUid}`);
    }
  }
  return out;
}

function matches(ev: AuditEvent, f: AuditFilter): boolean {
  if (f.resource) {
    const p = f.resource.replace(/\/+$/, '');
    if (ev.resource !== p && !ev.resource.startsWith(`${p}/`)) return false;
  }
  if (f.since && ev.time < f.since) return false;
  if (f.until && ev.time >= f.until) return false;
  if (f.actorUid !== undefined && ev.actor.uid !== f.actorUid) return false;
  if (f.result && ev.result !== f.result) return false;
  if (f.action && ev.action !== f.action) return false;
  return true;
}

export function auditServiceHandlers(deps: AuditRpcDeps) {
  const { audit } = deps;
  const isAdmin = (c: RpcCaller) => (deps.isAdmin ? deps.isAdmin(c) : c.isAdmin);
  const auditor = deps.auditor ?? (deps.db ? new Auditor({ db: deps.db, audit }) : undefined);
  const record = deps.record ?? auditor !== undefined;

  function audited<T>(caller: RpcCaller, action: string, fn: () => T, details?: Record<string, unknown>): T {
    if (!record || !auditor) return fn();
    return auditor.run({ actor: caller, action, resource: 'audit', ...(details ? { details } : {}) }, fn);
  }

  return {
    ListAuditEvents(caller: RpcCaller, request: { filter: FilterJson | null; pageSize: number; pageToken: string; newestFirst: boolean }) {
      return audited(caller, 'ListAuditEvents', () => {
        const filter = filterFor(caller, isAdmin(caller), request.filter);
        const page = audit.list({
          ...filter,
          limit: pageSize(request.pageSize),
          ...(request.pageToken ? { pageToken: request.pageToken } : {}),
          ...(request.newestFirst ? { newestFirst: true } : {}),
        });
        return { events: page.events.map(toAuditEventJson), nextPageToken: page.nextPageToken };
      });
    },

    VerifyAuditTrail(caller: RpcCaller, _request: object) {
      return audited(caller, 'VerifyAuditTrail', () => {
        if (!isAdmin(caller)) throw new PermissionDeniedError('ADMIN_ONLY', 'only an admin may verify the audit trail');
        const v = audit.verify();
        return { ok: v.ok, checked: v.checked, problems: v.problems };
      });
    },

    /**
     * Streams matching events as they commit, after replaying stored ones
     * when start_after_seq is set. Resolves when the signal aborts.
     */
    WatchAuditEvents(
      caller: RpcCaller,
      request: { filter: FilterJson | null; startAfterSeq?: number },
      emit: (response: { event: AuditEventJson }) => void,
      signal: AbortSignal,
    ): Promise<void> {
      const filter = audited(caller, 'WatchAuditEvents', () => filterFor(caller, isAdmin(caller), request.filter));
      let lastSent = 0;
      const send = (ev: AuditEvent) => {
        if (ev.seq <= lastSent || !matches(ev, filter)) return;
        lastSent = ev.seq;
        emit({ event: toAuditEventJson(ev) });
      };
      // Replay and subscribe in the same turn of the event loop: nothing can
      // commit in between, and lastSent drops what the replay already sent.
      if (request.startAfterSeq !== undefined && request.startAfterSeq !== null) {
        let pageToken = '';
        const base = { ...filter, afterSeq: request.startAfterSeq, limit: 1000 };
        do {
          const page = audit.list(pageToken ? { ...base, pageToken } : base);
          for (const ev of page.events) send(ev);
          pageToken = page.nextPageToken;
        } while (pageToken && !signal.aborted);
      }
      return new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        audit.on('event', send);
        signal.addEventListener(
          'abort',
          () => {
            audit.off('event', send);
            resolve();
          },
          { once: true },
        );
      });
    },
  };
}
