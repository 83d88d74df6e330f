// Handlers of shmbroker.v1.QuotaService (proto/shmbroker/v1/quota.proto),
// as plain functions (caller, request) => response over proto-loader plain
// objects (keepCase false, longs Number, enums String, defaults, oneofs).
//
// Standard methods (AIP-131/132/134/135): Get, Update and Delete return the
// Quota itself.
//
// Access: UpdateQuota and DeleteQuota are admin only (PERMISSION_DENIED
// 'ADMIN_ONLY'). GetQuota: admins any subject; others their own uid and the
// gids they belong to (primary or supplementary), else PERMISSION_DENIED
// 'NOT_YOUR_QUOTA'. ListQuotas: admins everything; others only their own
// uid and gids.
//
// With `audit` (and `db`) given, every call is an audit event (resource
// "quotas/uid:N", or "quotas" for ListQuotas); UpdateQuota and DeleteQuota
// write their change and their event in one transaction, and refusals are
// recorded as DENIED. Without them the handlers audit nothing and the caller
// is expected to.
import type { Database } from 'better-sqlite3';
import type { AuditTrail } from '../audit/audit-trail';
import { Auditor } from '../audit/audited-operation';
import type { Caller } from '../identity/caller';
import { InvalidArgumentError, PermissionDeniedError } from '../errors';
import { decodePageToken, encodePageToken, pageSize } from '../store/paging';
import { parseSubjectName, subjectName, type QuotaInfo, type QuotaLimits, type QuotaStore, type Subject } from '../store/quota-store';

/** The caller as the control server hands it to every handler. */
export type RpcCaller = Caller;

export interface QuotaJson {
  name: string;
  maxBytes?: number;
  maxRegions?: number;
  maxGrantsPerRegion?: number;
  usage: { bytes: number; regions: number };
  explicitlySet: boolean;
}

export interface QuotaRpcDeps {
  quotas: QuotaStore;
  /** Defaults to caller.isAdmin. */
  isAdmin?: (caller: RpcCaller) => boolean;
  /** Records every call (the broker passes its own). */
  auditor?: Auditor;
  /** Or: the trail (and its database, default the quota store's) to build one from. */
  audit?: AuditTrail;
  db?: Database;
}

const LIMIT_FIELDS = {
  max_bytes: 'bytes',
  maxBytes: 'bytes',
  max_regions: 'regions',
  maxRegions: 'regions',
  max_grants_per_region: 'grantsPerRegion',
  maxGrantsPerRegion: 'grantsPerRegion',
} as const satisfies Record<string, keyof QuotaLimits>;

export function toQuotaJson(info: QuotaInfo): QuotaJson {
  const q: QuotaJson = { name: subjectName(info.subject), usage: { ...info.usage }, explicitlySet: info.explicit };
  if (info.limits.bytes !== undefined) q.maxBytes = info.limits.bytes;
  if (info.limits.regions !== undefined) q.maxRegions = info.limits.regions;
  if (info.limits.grantsPerRegion !== undefined) q.maxGrantsPerRegion = info.limits.grantsPerRegion;
  return q;
}

function ownsSubject(caller: RpcCaller, s: Subject): boolean {
  return s.kind === 'uid' ? s.id === caller.uid : s.id === caller.gid || caller.groups.includes(s.id);
}

function present(obj: Record<string, unknown>, field: string): boolean {
  return obj[field] !== undefined && obj[field] !== null;
}

export function quotaServiceHandlers(deps: QuotaRpcDeps) {
  const { quotas } = deps;
  const auditor = deps.auditor ?? (deps.audit ? new Auditor({ db: deps.db ?? quotas.database, audit: deps.audit }) : undefined);
  const isAdmin = (c: RpcCaller) => (deps.isAdmin ? deps.isAdmin(c) : c.isAdmin);

  /** Runs fn as one audited operation when auditing is on. */
  function audited<T>(caller: RpcCaller, action: string, resource: string, fn: () => T, details?: Record<string, unknown>): T {
    if (!auditor) return fn();
    return auditor.run({ actor: caller, action, resource, ...(details ? { details } : {}) }, fn);
  }

  function nameOf(request: { name?: string; quota?: { name?: string } | null }): string {
    const name = request.quota ? request.quota.name : request.name;
    return typeof name === 'string' && name ? name : 'quotas/-';
  }

  return {
    UpdateQuota(caller: RpcCaller, request: { quota: (Partial<QuotaJson> & Record<string, unknown>) | null; updateMask: { paths: string[] } | null }) {
      const resource = nameOf(request);
      return audited(
        caller,
        'UpdateQuota',
        resource,
        () => {
          if (!isAdmin(caller)) throw new PermissionDeniedError('ADMIN_ONLY', 'only an admin may set quotas');
          if (!request.quota) throw new InvalidArgumentError('MISSING_QUOTA', 'quota is required');
          const subject = parseSubjectName(String(request.quota.name ?? ''));
          const paths = request.updateMask?.paths ?? [];
          const fields = new Set<keyof QuotaLimits>();
          for (const p of paths) {
            const f = LIMIT_FIELDS[p as keyof typeof LIMIT_FIELDS];
            if (!f) {
              throw new InvalidArgumentError(
                'INVALID_UPDATE_MASK',
                `update_mask path ${JSON.stringify(p)} is not one of max_bytes, max_regions, max_grants_per_region`,
              );
            }
            fields.add(f);
          }
          if (fields.size === 0) for (const f of ['bytes', 'regions', 'grantsPerRegion'] as const) fields.add(f);
          // Fields outside the mask keep the limits in force now (explicit or default).
          const limits: QuotaLimits = { ...quotas.effective(subject).limits };
          const q = request.quota;
          const from: Record<keyof QuotaLimits, string> = { bytes: 'maxBytes', regions: 'maxRegions', grantsPerRegion: 'maxGrantsPerRegion' };
          for (const f of fields) {
            if (present(q, from[f])) limits[f] = Number(q[from[f]]);
            else delete limits[f];
          }
          quotas.set(subject, limits);
          return toQuotaJson(quotas.get(subject));
        },
        { updateMask: request.updateMask?.paths ?? [], maxBytes: request.quota?.maxBytes ?? null, maxRegions: request.quota?.maxRegions ?? null },
      );
    },

    GetQuota(caller: RpcCaller, request: { name: string }) {
      return audited(caller, 'GetQuota', nameOf(request), () => {
        const subject = parseSubjectName(request.name);
        if (!isAdmin(caller) && !ownsSubject(caller, subject)) {
          throw new PermissionDeniedError('NOT_YOUR_QUOTA', `uid ${caller.uid} may not read ${subjectName(subject)}`);
        }
        return toQuotaJson(quotas.get(subject));
      });
    },

    ListQuotas(caller: RpcCaller, request: { pageSize: number; pageToken: string }) {
      return audited(caller, 'ListQuotas', 'quotas', () => {
        const size = pageSize(request.pageSize);
        let all = quotas.list();
        if (!isAdmin(caller)) {
          // Their own uid and gids, listed even when they hold nothing, so a user always sees their limits.
          const own: Subject[] = [{ kind: 'uid', id: caller.uid }, ...[...new Set([caller.gid, ...caller.groups])].sort((a, b) => a - b).map((id) => ({ kind: 'gid' as const, id }))];
          all = own.map((s) => quotas.get(s));
        }
        const names = all.map((q) => subjectName(q.subject));
        let start = 0;
        const after = decodePageToken<string>('quotas', request.pageToken, 'string');
        if (after !== undefined) {
          const i = names.indexOf(after);
          if (i < 0) {
            // The subject may have gone since (no usage, quota cleared): restart after its position in order.
            const next = all.findIndex((q) => compareSubjects(q.subject, safeSubject(after)) > 0);
            start = next < 0 ? all.length : next;
          } else start = i + 1;
        }
        const page = all.slice(start, start + size);
        const more = start + size < all.length;
        return {
          quotas: page.map(toQuotaJson),
          nextPageToken: more ? encodePageToken('quotas', subjectName(page[page.length - 1]!.subject)) : '',
        };
      });
    },

    DeleteQuota(caller: RpcCaller, request: { name: string }) {
      return audited(caller, 'DeleteQuota', nameOf(request), () => {
        if (!isAdmin(caller)) throw new PermissionDeniedError('ADMIN_ONLY', 'only an admin may delete quotas');
        const subject = parseSubjectName(request.name);
        quotas.clear(subject);
        return toQuotaJson(quotas.get(subject));
      });
    },
  };
}

function safeSubject(name: string): Subject {
  try {
    return parseSubjectName(name);
  } catch {
    throw new InvalidArgumentError('INVALID_PAGE_TOKEN', 'invalid page token');
  }
}

function compareSubjects(a: Subject, b: Subject): number {
  if (a.kind !== b.kind) return a.kind === 'uid' ? -1 : 1;
  return a.id - b.id;
}
