import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors';
import { grantName, parseGrantName, parseRegionName, validateRegionId } from './names';

describe('region ids', () => {
  const good = ['a', '0', 'frames', 'cam-0.left_1', 'a'.repeat(63)];
  const bad = ['', 'A', '-x', '.x', '_x', 'a'.repeat(64), 'a/b', 'a b', 'é', 'a\u0000', 'a\n', '\u202ea'];
  for (const id of good) it(`accepts ${JSON.stringify(id.slice(0, 20))}`, () => expect(validateRegionId(id)).toBe(id));
  for (const id of bad) {
    it(`rejects ${JSON.stringify(id.slice(0, 20))}`, () => {
      expect(() => validateRegionId(id)).toThrow(InvalidArgumentError);
    });
  }
  it('rejects non-strings', () => expect(() => validateRegionId(5 as never)).toThrow(/required/));
});

describe('resource names', () => {
  it('parses regions/{id}', () => expect(parseRegionName('regions/x')).toBe('x'));
  it.each(['x', 'regions/', 'regions/X', 'region/x', 'regions/x/grants/1'])('rejects region name %s', (n) => {
    expect(() => parseRegionName(n)).toThrow(/regions\/\{region\}|not a valid|required/);
  });
  it.each([
    ['regions/x/grants/5', { region: 'x', id: 5 }],
    ['regions/-/grants/5', { id: 5 }],
    ['grants/12', { id: 12 }],
  ])('parses grant name %s', (n, want) => expect(parseGrantName(n)).toEqual(want));
  it.each(['grants/0', 'grants/-1', 'grants/x', 'grants/1234567890123456', 'regions/X/grants/1', 'regions/x/grant/1', ''])('rejects grant name %s', (n) => {
    expect(() => parseGrantName(n)).toThrow(InvalidArgumentError);
  });
  it('formats grant names', () => expect(grantName('x', 3)).toBe('regions/x/grants/3'));
});
