// docs/ARCHITECTURE.md's error-reason tables are the registry, row by row:
// same reasons, same order, same code, origin and message (regenerate the
// rows with `npm run build && node scripts/gen-reason-table.js` when a reason is added).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EVENT_REASONS, REASONS } from './reasons';

const DOC = fs.readFileSync(path.resolve(__dirname, '..', '..', 'docs', 'ARCHITECTURE.md'), 'utf8');

function rows(begin: string, end: string): string[][] {
  const a = DOC.indexOf(`<!-- ${begin} -->`);
  const b = DOC.indexOf(`<!-- ${end} -->`);
  expect(a).toBeGreaterThan(0);
  expect(b).toBeGreaterThan(a);
  return DOC.slice(a, b)
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) =>
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim().replace(/\\\|/g, '|')),
    );
}

describe('docs/ARCHITECTURE.md error reasons', () => {
  const table = rows('reasons:begin', 'reasons:end');
  it('lists every reason of the registry, in its order, and nothing else (node scripts/gen-reason-table.js rewrites it)', () => {
    expect(table.map((r) => r[0]!.replace(/`/g, ''))).toEqual(Object.keys(REASONS));
  });
  it.each(Object.entries(REASONS))('%s: code, origin and message as in the registry', (reason, info) => {
    const row = table.find((r) => r[0] === `\`${reason}\``);
    expect(row).toEqual([`\`${reason}\``, info.code, info.origin, info.message]);
  });
  it('lists every event reason with its meaning', () => {
    const events = rows('event-reasons:begin', 'event-reasons:end');
    expect(events).toEqual(Object.entries(EVENT_REASONS).map(([r, t]) => [`\`${r}\``, t]));
  });
});
