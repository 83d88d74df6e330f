// The error-reason registry, row by row: every reason is a well-formed
// stable string with a real canonical code and a message template, every
// row is used by the side its origin names (no stale rows), and every error
// thrown in service/ and clients/ names a registered reason with the code
// the registry gives it (no reason outside the registry).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Code, codeName } from './codes';
import { EVENT_REASONS, isReason, REASONS, type ReasonInfo } from './reasons';

const REPO = path.resolve(__dirname, '..', '..');

function sources(dir: string): string {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(path.join(REPO, d), { withFileTypes: true })) {
      const rel = path.join(d, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(fs.readFileSync(path.join(REPO, rel), 'utf8'));
    }
  };
  walk(dir);
  return out.join('\n');
}

const SERVICE = sources('service');
const CLIENTS = sources('clients');
const ROWS = Object.entries(REASONS) as Array<[string, ReasonInfo]>;

/** Error class name -> canonical code name, for both sides' classes. */
const CLASS_CODE: Record<string, string> = {
  InvalidArgument: 'INVALID_ARGUMENT',
  NotFound: 'NOT_FOUND',
  AlreadyExists: 'ALREADY_EXISTS',
  PermissionDenied: 'PERMISSION_DENIED',
  ResourceExhausted: 'RESOURCE_EXHAUSTED',
  FailedPrecondition: 'FAILED_PRECONDITION',
  Unavailable: 'UNAVAILABLE',
  Internal: 'INTERNAL',
  OutOfRange: 'OUT_OF_RANGE',
};

describe('error-reason registry', () => {
  it.each(ROWS)('%s: stable name, real code, message template', (reason, info) => {
    // google.rpc.ErrorInfo.reason: UPPER_SNAKE_CASE, at most 63 characters.
    expect(reason).toMatch(/^[A-Z][A-Z0-9_]{0,61}[A-Z0-9]$/);
    expect(Object.keys(Code)).toContain(info.code);
    expect(info.code).not.toBe('OK');
    expect(codeName(Code[info.code])).toBe(info.code);
    expect(['broker', 'start', 'sdk', 'cli']).toContain(info.origin);
    expect(info.message.length).toBeGreaterThan(5);
    // Placeholders are {lowerCamel}; braces balance.
    expect(info.message.replace(/\{[a-zA-Z]+\}/g, '')).not.toMatch(/[{}]/);
    expect(isReason(reason)).toBe(true);
  });

  it.each(ROWS)('%s is raised where its origin says', (reason, info) => {
    const where = info.origin === 'sdk' || info.origin === 'cli' ? CLIENTS : SERVICE;
    // USAGE is commander's usage error, printed by clients/cli/main.ts as "(USAGE; see --help)".
    if (reason === 'USAGE') return expect(CLIENTS).toContain('(USAGE; see --help)');
    expect(where).toContain(`'${reason}'`);
  });

  it('every error the broker throws names a registered reason of its class code', () => {
    const thrown = [...SERVICE.matchAll(/new (\w+)Error\(\s*'([A-Z0-9_]+)'/g)].map((m) => [m[1]!, m[2]!] as const);
    expect(thrown.length).toBeGreaterThan(50);
    for (const [cls, reason] of thrown) {
      expect(isReason(reason), `${cls}Error('${reason}')`).toBe(true);
      expect(REASONS[reason as keyof typeof REASONS].code, `${cls}Error('${reason}')`).toBe(CLASS_CODE[cls]);
    }
  });

  it('every error the SDK and CLI raise names a registered reason with its code', () => {
    const thrown = [...CLIENTS.matchAll(/(?:new \w+Error|super)\(\s*'([A-Z_]+)',\s*'([A-Z0-9_]+)'/g)].map((m) => [m[1]!, m[2]!] as const);
    expect(thrown.length).toBeGreaterThan(15);
    for (const [code, reason] of thrown) {
      expect(isReason(reason), reason).toBe(true);
      expect(REASONS[reason as keyof typeof REASONS].code, reason).toBe(code);
    }
  });

  it.each(Object.entries(EVENT_REASONS))('event reason %s is used by the broker and is no error reason', (reason, text) => {
    expect(reason).toMatch(/^[A-Z][A-Z0-9_]{0,61}[A-Z0-9]$/);
    expect(text.length).toBeGreaterThan(5);
    expect(isReason(reason)).toBe(false);
    expect(SERVICE).toContain(`'${reason}'`);
  });

  it('isReason refuses what is not a row', () => {
    expect(isReason('NO_SUCH_REASON')).toBe(false);
    expect(isReason('toString')).toBe(false);
    expect(isReason(7)).toBe(false);
  });
});
