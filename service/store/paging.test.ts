import { describe, expect, it } from 'vitest';
import { decodePageToken, encodePageToken, pageSize } from './paging';

describe('page tokens', () => {
  it('round-trips and is bound to its list', () => {
    const t = encodePageToken('regions', 'abc');
    expect(decodePageToken('regions', t, 'string')).toBe('abc');
    expect(() => decodePageToken('grants:-', t, 'number')).toThrow(/page_token/);
  });
  it.each(['garbage', '!!!', Buffer.from('{"l":"regions"}').toString('base64url'), Buffer.from('[1]').toString('base64url')])('rejects %s', (t) => {
    expect(() => decodePageToken('regions', t, 'string')).toThrow(/page_token is not a token this list returned/);
  });
  it('empty token means the first page', () => expect(decodePageToken('regions', '', 'string')).toBeUndefined());
});

describe('page sizes', () => {
  it.each([
    [0, 100],
    [undefined, 100],
    [1, 1],
    [1000, 1000],
    [5000, 1000],
  ])('%s -> %s', (n, want) => expect(pageSize(n)).toBe(want));
  it.each([-1, 1.5])('rejects %s', (n) => expect(() => pageSize(n)).toThrow(/page_size/));
});
