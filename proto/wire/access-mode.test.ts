import { describe, expect, it } from 'vitest';
import { fromAccessMode, parseGrantMode, toAccessMode } from './access-mode';

describe('ro/rw <-> AccessMode', () => {
  it.each([
    ['ro', 'ACCESS_MODE_READ_ONLY'],
    ['rw', 'ACCESS_MODE_READ_WRITE'],
  ] as const)('%s <-> %s', (mode, wire) => {
    expect(toAccessMode(mode)).toBe(wire);
    expect(fromAccessMode(wire)).toBe(mode);
    expect(parseGrantMode(mode)).toBe(mode);
  });

  it.each(['ACCESS_MODE_UNSPECIFIED', 0, 1, 2, 99, -1, '', undefined, null, 'ro', 'READ_ONLY'])('%j is no AccessMode', (v) => {
    expect(fromAccessMode(v)).toBeUndefined();
  });

  it.each(['RO', 'r', 'read-only', '', undefined, 1, 'ACCESS_MODE_READ_ONLY'])('%j is not ro or rw', (v) => {
    expect(parseGrantMode(v)).toBeUndefined();
  });
});
