// Reading the trail: list (filters, AIP-158 page tokens) and the JSON-lines
// export. Moved out of audit-trail.ts unchanged (issue 14).
import type { Database } from 'better-sqlite3';
import { InvalidArgumentError } from '../errors';
import { decodePageToken, encodePageToken } from '../store/paging';
import { rowToEvent, type Row } from './audit-chain';
import type { AuditEvent, AuditFilter } from './audit-types';

export function listAuditEvents(db: Database, filter: AuditFilter = {}): { events: AuditEvent[]; nextPageToken: string } {
  const limit = filter.limit === undefined || filter.limit === 0 ? 100 : filter.limit;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new InvalidArgumentError('INVALID_PAGE_SIZE', `page size must be 1..1000, got ${filter.limit}`);
  }
  const desc = filter.newestFirst === true;
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.resource) {
    const prefix = filter.resource.replace(/\/+$/, '');
    // "prefix" itself or anything under "prefix/": a range ('0' follows '/'), so the index serves it.
    where.push('(resource = ? OR (resource >= ? AND resource < ?))');
    params.push(prefix, `${prefix}/`, `${prefix}0`);
  }
  if (filter.since) {
    where.push('time >= ?');
    params.push(normalizeTime(filter.since, 'since'));
  }
  if (filter.until) {
    where.push('time < ?');
    params.push(normalizeTime(filter.until, 'until'));
  }
  if (filter.actorUid !== undefined) {
    where.push('actor_uid = ?');
    params.push(filter.actorUid);
  }
  if (filter.result) {
    where.push('result = ?');
    params.push(filter.result);
  }
  if (filter.action) {
    where.push('action = ?');
    params.push(filter.action);
  }
  if (filter.afterSeq !== undefined) {
    where.push('seq > ?');
    params.push(filter.afterSeq);
  }
  const afterToken = decodePageToken<number>(auditList(desc), filter.pageToken, 'number');
  if (afterToken !== undefined) {
    where.push(desc ? 'seq < ?' : 'seq > ?');
    params.push(afterToken);
  }
  const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
               ORDER BY seq ${desc ? 'DESC' : 'ASC'} LIMIT ?`;
  const rows = db.prepare<unknown[], Row>(sql).all(...params, limit + 1);
  const more = rows.length > limit;
  const events = rows.slice(0, limit).map(rowToEvent);
  const last = events[events.length - 1];
  return { events, nextPageToken: more && last ? encodePageToken(auditList(desc), last.seq) : '' };
}

/** Writes the matching events as JSON lines (all of them without a filter), oldest first. Resolves to the count. */
export async function exportAuditJsonLines(
  list: (filter: AuditFilter) => { events: AuditEvent[]; nextPageToken: string },
  out: NodeJS.WritableStream,
  filter: Omit<AuditFilter, 'limit' | 'pageToken' | 'newestFirst'> = {},
): Promise<number> {
  let count = 0;
  let pageToken = '';
  for (;;) {
    const page = list({ ...filter, limit: 1000, pageToken });
    for (const ev of page.events) {
      count++;
      if (!out.write(`${JSON.stringify(ev)}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
    if (!page.nextPageToken) break;
    pageToken = page.nextPageToken;
  }
  return count;
}

function normalizeTime(text: string, field: string): string {
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new InvalidArgumentError('INVALID_TIME', `${field} must be an RFC 3339 time, got ${JSON.stringify(text)}`);
  return new Date(t).toISOString();
}

/** The list a page token of the audit trail is bound to: one per sort order. */
function auditList(desc: boolean): string {
  return `audit events, sort order ${desc ? 'newest' : 'oldest'} first`;
}
