import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseListFilter, type FilterSchema } from './list-filter';

interface Row {
  name: string;
  size: number;
  owner: number;
  on: boolean;
  state: 'ACTIVE' | 'LOST' | 'DELETING';
  time: number | null;
}

const SCHEMA: FilterSchema<Row> = {
  name: { kind: 'string', get: (r) => r.name },
  size_bytes: { kind: 'number', get: (r) => r.size },
  owner_uid: { kind: 'number', get: (r) => r.owner },
  hugepages: { kind: 'bool', get: (r) => r.on },
  state: { kind: 'enum', prefix: 'REGION_STATE_', values: ['ACTIVE', 'LOST', 'DELETING'], get: (r) => r.state },
  create_time: { kind: 'time', get: (r) => r.time },
};

const T0 = Date.parse('2026-12-02T10:00:00Z');
const ROWS: Row[] = [
  { name: 'regions/team-a.frames', size: 4096, owner: 1001, on: false, state: 'ACTIVE', time: T0 },
  { name: 'regions/team-a.tensors', size: 64 << 20, owner: 1001, on: true, state: 'DELETING', time: T0 + 60_000 },
  { name: 'regions/team-b.frames', size: 4096, owner: 1002, on: false, state: 'LOST', time: null },
];

function names(filter: string): string[] {
  const f = parseListFilter(filter, SCHEMA, 'Region');
  return ROWS.filter((r) => f.test(r)).map((r) => r.name.slice(8));
}

describe('AIP-160 list filter', () => {
  it('comparisons on each kind of field', () => {
    expect(names('')).toEqual(['team-a.frames', 'team-a.tensors', 'team-b.frames']);
    expect(names('owner_uid = 1001')).toEqual(['team-a.frames', 'team-a.tensors']);
    expect(names('owner_uid != 1001')).toEqual(['team-b.frames']);
    expect(names('size_bytes > 4096')).toEqual(['team-a.tensors']);
    expect(names('size_bytes <= 4096')).toEqual(['team-a.frames', 'team-b.frames']);
    expect(names('hugepages = true')).toEqual(['team-a.tensors']);
    expect(names('state = ACTIVE')).toEqual(['team-a.frames']);
    expect(names('state = REGION_STATE_DELETING')).toEqual(['team-a.tensors']);
    expect(names('name = "regions/team-a.*"')).toEqual(['team-a.frames', 'team-a.tensors']);
    expect(names('name = "*.frames"')).toEqual(['team-a.frames', 'team-b.frames']);
    expect(names('name = "regions/team-a.frames"')).toEqual(['team-a.frames']);
    // "." in a pattern is a dot, not "any character".
    expect(names('name = "regions/team-a*frames"')).toEqual(['team-a.frames']);
    expect(names('name = "regions/team-aXframes"')).toEqual([]);
    expect(names('create_time >= "2026-12-02T10:00:30Z"')).toEqual(['team-a.tensors']);
    // A row without the field (no time) matches no comparison on it.
    expect(names('create_time < "2030-01-01T00:00:00+01:00"')).toEqual(['team-a.frames', 'team-a.tensors']);
  });

  it('AND, juxtaposition, OR (binding tighter than AND), NOT, "-" and parentheses', () => {
    expect(names('owner_uid = 1001 AND state = ACTIVE')).toEqual(['team-a.frames']);
    expect(names('owner_uid = 1001 state = ACTIVE')).toEqual(['team-a.frames']);
    expect(names('state = LOST OR state = DELETING')).toEqual(['team-a.tensors', 'team-b.frames']);
    // a AND b OR c is a AND (b OR c) in AIP-160.
    expect(names('owner_uid = 1001 AND state = LOST OR state = DELETING')).toEqual(['team-a.tensors']);
    expect(names('NOT state = ACTIVE')).toEqual(['team-a.tensors', 'team-b.frames']);
    expect(names('-state = ACTIVE')).toEqual(['team-a.tensors', 'team-b.frames']);
    expect(names('(owner_uid = 1002 OR hugepages = true) AND NOT (state = LOST)')).toEqual(['team-a.tensors']);
    expect(names('size_bytes > -1')).toHaveLength(3);
  });

  it('refuses what it does not understand, naming it and where', () => {
    const err = (f: string): string => {
      try {
        parseListFilter(f, SCHEMA, 'Region');
      } catch (e) {
        expect((e as { reason: string }).reason).toBe('INVALID_LIST_FILTER');
        return (e as Error).message;
      }
      throw new Error(`accepted ${f}`);
    };
    expect(err('colour = red')).toMatch(/Region has no field "colour" \(fields: name, size_bytes, .*\) \(at character 1\)/);
    expect(err('owner_uid = "x"')).toMatch(/owner_uid takes a whole number/);
    expect(err('owner_uid = 1.5')).toMatch(/owner_uid takes a whole number/);
    expect(err('state = GONE')).toMatch(/state is one of ACTIVE, LOST, DELETING, got "GONE"/);
    expect(err('state > ACTIVE')).toMatch(/state is an enum: use = or !=/);
    expect(err('name < "a"')).toMatch(/name is a string/);
    expect(err('hugepages = yes')).toMatch(/hugepages takes true or false/);
    expect(err('create_time > 2026')).toMatch(/RFC 3339/);
    expect(err('create_time > "yesterday"')).toMatch(/RFC 3339/);
    expect(err('owner_uid = 1 AND')).toMatch(/ends where a comparison was expected/);
    expect(err('(owner_uid = 1')).toMatch(/missing "\)"/);
    expect(err('owner_uid = 1)')).toMatch(/unexpected "\)" \(at character 14\)/);
    expect(err('name = "open')).toMatch(/unterminated string \(at character 8\)/);
    expect(err('owner_uid ! 1')).toMatch(/"!" must be "!="/);
    expect(err('owner_uid 1')).toMatch(/expected a comparator/);
    expect(err('owner_uid =')).toMatch(/expected a value/);
    expect(err('name = "x" ; drop')).toMatch(/unexpected ";"/);
    expect(err('a'.repeat(3000))).toMatch(/longer than 2048/);
    expect(err('('.repeat(40) + 'owner_uid = 1' + ')'.repeat(40))).toMatch(/nested too deeply/);
    expect(err('constructor = 1')).toMatch(/no field "constructor"/);
  });

  it('a page-token key per filter text, none without one', () => {
    expect(parseListFilter('  ', SCHEMA, 'Region').key).toBe('');
    const a = parseListFilter('owner_uid = 1', SCHEMA, 'Region').key;
    expect(a).toMatch(/^[\w-]{12}$/);
    expect(parseListFilter('owner_uid = 2', SCHEMA, 'Region').key).not.toBe(a);
  });

  it('agrees with evaluating the same expression tree directly (property)', () => {
    type Ast = { op: 'cmp'; text: string; eval: (r: Row) => boolean } | { op: 'and' | 'or'; a: Ast; b: Ast } | { op: 'not'; a: Ast };
    const leaf: fc.Arbitrary<Ast> = fc.oneof(
      fc.tuple(fc.constantFrom('=', '!=', '<', '<=', '>', '>=' as const), fc.integer({ min: 0, max: 70_000_000 })).map(([o, n]) => ({
        op: 'cmp' as const,
        text: `size_bytes ${o} ${n}`,
        eval: (r: Row) => ({ '=': r.size === n, '!=': r.size !== n, '<': r.size < n, '<=': r.size <= n, '>': r.size > n, '>=': r.size >= n })[o],
      })),
      fc.tuple(fc.constantFrom('=', '!='), fc.constantFrom('ACTIVE', 'LOST', 'DELETING')).map(([o, v]) => ({
        op: 'cmp' as const,
        text: `state ${o} ${v}`,
        eval: (r: Row) => (r.state === v) === (o === '='),
      })),
      fc.constantFrom('team-a.*', '*.frames', 'regions/*', 'team*').map((p) => ({
        op: 'cmp' as const,
        text: `name = "${p}"`,
        eval: (r: Row) => new RegExp(`^${p.replace(/\./g, '\\.').replace(/\*/g, '.*')}$`).test(r.name),
      })),
    );
    const tree = fc.letrec<{ t: Ast }>((tie) => ({
      t: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.record({ op: fc.constantFrom('and' as const, 'or' as const), a: tie('t'), b: tie('t') }),
        fc.record({ op: fc.constant('not' as const), a: tie('t') }),
      ),
    })).t;
    // Fully parenthesised, so precedence cannot differ between the two.
    const print = (t: Ast): string => (t.op === 'cmp' ? t.text : t.op === 'not' ? `NOT (${print(t.a)})` : `(${print(t.a)}) ${t.op.toUpperCase()} (${print(t.b)})`);
    const run = (t: Ast, r: Row): boolean => (t.op === 'cmp' ? t.eval(r) : t.op === 'not' ? !run(t.a, r) : t.op === 'and' ? run(t.a, r) && run(t.b, r) : run(t.a, r) || run(t.b, r));
    fc.assert(
      fc.property(tree, (t) => {
        const f = parseListFilter(print(t), SCHEMA, 'Region');
        for (const r of ROWS) expect(f.test(r)).toBe(run(t, r));
      }),
      { numRuns: 300 },
    );
  });
});
