// AIP-158 paging, the one module every List method uses: page_size 0 means
// the default, above the maximum is coerced to the maximum, negative is
// INVALID_PAGE_SIZE; page tokens are opaque base64url of the last key
// returned, bound to the list (and order) they came from, so a token cannot
// be replayed against another list.
import { InvalidArgumentError } from '../errors';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function pageSize(requested: number | undefined): number {
  const n = requested ?? 0;
  if (!Number.isInteger(n) || n < 0) {
    throw new InvalidArgumentError('INVALID_PAGE_SIZE', `page_size must be between 0 and ${MAX_PAGE_SIZE}, got ${n}`);
  }
  if (n === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(n, MAX_PAGE_SIZE);
}

export function encodePageToken(list: string, after: string | number): string {
  return Buffer.from(JSON.stringify({ l: list, a: after })).toString('base64url');
}

export function decodePageToken<T extends string | number>(list: string, token: string | undefined, kind: 'string' | 'number'): T | undefined {
  if (!token) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const p = parsed as { l?: unknown; a?: unknown } | undefined;
  if (!p || p.l !== list || typeof p.a !== kind) {
    const why = p && typeof p.l === 'string' && p.l !== list ? `it pages ${p.l.slice(0, 80)}` : 'a page token is only good for the list that returned it';
    throw new InvalidArgumentError('INVALID_PAGE_TOKEN', `page_token is not a token this list returned (${why})`);
  }
  return p.a as T;
}

/**
 * One page of a list whose rows the caller filters (visibility, AIP-160):
 * reads the store in batches of limit + 1 after `after` and keeps what
 * `keep` accepts, until `limit` rows are kept or the store ends. The token
 * of the next page holds the key of the last row returned; '' at the end.
 */
export function filteredPage<T, K extends string | number>(
  list: string,
  limit: number,
  after: K,
  read: (after: K, count: number) => T[],
  keyOf: (row: T) => K,
  keep: (row: T) => boolean,
): { items: T[]; next: string } {
  const out: T[] = [];
  for (;;) {
    const batch = read(after, limit + 1);
    for (const row of batch) {
      if (keep(row)) out.push(row);
      if (out.length > limit) break;
    }
    if (out.length > limit || batch.length <= limit) break;
    after = keyOf(batch[batch.length - 1]!);
  }
  if (out.length <= limit) return { items: out, next: '' };
  out.length = limit;
  return { items: out, next: encodePageToken(list, keyOf(out[limit - 1]!)) };
}
