// AIP-160 `filter` for List methods: the one parser every filtered List uses
// (docs/ARCHITECTURE.md, "Paging and filters"). A documented subset:
//
//   filter     := expression
//   expression := sequence { "AND" sequence }
//   sequence   := factor { factor }          (juxtaposition is AND, as in AIP-160)
//   factor     := term { "OR" term }         (OR binds tighter than AND, as in AIP-160)
//   term       := [ "NOT" | "-" ] simple
//   simple     := restriction | "(" expression ")"
//   restriction:= FIELD COMPARATOR VALUE     (COMPARATOR: = != < <= > >=)
//
// VALUE is a number, true/false, an enum value name (short, "ACTIVE", or
// full, "REGION_STATE_ACTIVE"), or a string in double quotes; a string
// compared with = or != may hold `*` wildcards ("regions/team-a.*"). Times
// are RFC 3339 strings. A filter the parser does not accept, a field the
// resource does not have, or a value of the wrong type is INVALID_ARGUMENT
// INVALID_LIST_FILTER naming what and where; an empty filter matches everything.
// Filtering happens after visibility: a filter can only narrow what the
// caller may see, never widen it.
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors';

export type FieldValue = string | number | boolean | null | undefined;

export type FieldSpec<R> =
  | { kind: 'string'; get: (r: R) => FieldValue }
  | { kind: 'number'; get: (r: R) => FieldValue }
  | { kind: 'bool'; get: (r: R) => FieldValue }
  | { kind: 'time'; get: (r: R) => FieldValue /* ms since the epoch */ }
  | { kind: 'enum'; get: (r: R) => FieldValue /* the short name */; prefix: string; values: readonly string[] };

/** The fields a resource can be filtered on, by their proto field names. */
export type FilterSchema<R> = Record<string, FieldSpec<R>>;

export interface ListFilter<R> {
  test(r: R): boolean;
  /** Short stable digest of the filter text (empty for none): page tokens are bound to it (AIP-158). */
  readonly key: string;
}

/** Longest filter accepted: a filter is a query, not a payload. */
export const MAX_FILTER_LENGTH = 2048;

type Op = '=' | '!=' | '<' | '<=' | '>' | '>=';
type Token = { t: 'word' | 'string' | 'op' | '(' | ')' | '-'; v: string; at: number };
type Node<R> = (r: R) => boolean;

function bad(what: string, at?: number): never {
  throw new InvalidArgumentError('INVALID_LIST_FILTER', `invalid filter: ${what}${at === undefined ? '' : ` (at character ${at + 1})`}`);
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ t: c, v: c, at: i++ });
    } else if (c === '"') {
      const start = i++;
      let v = '';
      for (;;) {
        if (i >= text.length) bad('unterminated string', start);
        const d = text[i++]!;
        if (d === '"') break;
        if (d === '\\') {
          if (i >= text.length) bad('unterminated string', start);
          v += text[i++]!;
        } else v += d;
      }
      out.push({ t: 'string', v, at: start });
    } else if ('=!<>'.includes(c)) {
      const two = text.slice(i, i + 2);
      const op = ['!=', '<=', '>='].includes(two) ? two : c;
      if (op === '!') bad('"!" must be "!="', i);
      out.push({ t: 'op', v: op, at: i });
      i += op.length;
    } else if (c === '-' && (out.length === 0 || ['(', 'word', 'string', ')'].includes(out[out.length - 1]!.t)) && !/[0-9]/.test(text[i + 1] ?? '')) {
      // A leading "-" negates (AIP-160); "-5" after a comparator is a number.
      out.push({ t: '-', v: '-', at: i++ });
    } else if (/[A-Za-z0-9_.\-+:*]/.test(c)) {
      const start = i;
      while (i < text.length && /[A-Za-z0-9_.\-+:*]/.test(text[i]!)) i++;
      out.push({ t: 'word', v: text.slice(start, i), at: start });
    } else {
      bad(`unexpected ${JSON.stringify(c)}`, i);
    }
  }
  return out;
}

function globRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
}

function compare(a: number | string, op: Op, b: number | string): boolean {
  switch (op) {
    case '=':
      return a === b;
    case '!=':
      return a !== b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '>=':
      return a >= b;
  }
}

function restriction<R>(field: Token, op: Token, value: Token, schema: FilterSchema<R>, what: string): Node<R> {
  const spec = Object.prototype.hasOwnProperty.call(schema, field.v) ? schema[field.v] : undefined;
  if (!spec) bad(`${what} has no field ${JSON.stringify(field.v)} (fields: ${Object.keys(schema).join(', ')})`, field.at);
  const o = op.v as Op;
  const ordered = o !== '=' && o !== '!=';
  switch (spec.kind) {
    case 'string': {
      if (ordered) bad(`${field.v} is a string: use = or !=`, op.at);
      const match = value.v.includes('*') ? globRegExp(value.v) : undefined;
      return (r) => {
        const got = spec.get(r);
        const eq = typeof got === 'string' && (match ? match.test(got) : got === value.v);
        return o === '=' ? eq : !eq;
      };
    }
    case 'number': {
      if (value.t !== 'word' || !/^-?\d+$/.test(value.v)) bad(`${field.v} takes a whole number, got ${JSON.stringify(value.v)}`, value.at);
      const n = Number(value.v);
      return (r) => {
        const got = spec.get(r);
        return typeof got === 'number' && compare(got, o, n);
      };
    }
    case 'bool': {
      if (ordered) bad(`${field.v} is true or false: use = or !=`, op.at);
      if (value.t !== 'word' || (value.v !== 'true' && value.v !== 'false')) bad(`${field.v} takes true or false, got ${JSON.stringify(value.v)}`, value.at);
      const b = value.v === 'true';
      return (r) => (spec.get(r) === b) === (o === '=');
    }
    case 'time': {
      const ms = Date.parse(value.v);
      if (value.t !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value.v) || Number.isNaN(ms)) {
        bad(`${field.v} takes an RFC 3339 time in double quotes ("2026-12-02T10:00:00Z"), got ${JSON.stringify(value.v)}`, value.at);
      }
      return (r) => {
        const got = spec.get(r);
        return typeof got === 'number' && compare(got, o, ms);
      };
    }
    case 'enum': {
      if (ordered) bad(`${field.v} is an enum: use = or !=`, op.at);
      const short = value.v.startsWith(spec.prefix) ? value.v.slice(spec.prefix.length) : value.v;
      if (!spec.values.includes(short)) bad(`${field.v} is one of ${spec.values.join(', ')}, got ${JSON.stringify(value.v)}`, value.at);
      return (r) => (spec.get(r) === short) === (o === '=');
    }
  }
}

/** Parses `text` against `schema` (`what` names the resource in errors). */
export function parseListFilter<R>(text: string | undefined, schema: FilterSchema<R>, what: string): ListFilter<R> {
  const source = (text ?? '').trim();
  if (!source) return { test: () => true, key: '' };
  if (source.length > MAX_FILTER_LENGTH) bad(`longer than ${MAX_FILTER_LENGTH} characters`);
  const tokens = tokenize(source);
  let i = 0;
  const peek = (): Token | undefined => tokens[i];
  const isWord = (w: string): boolean => peek()?.t === 'word' && peek()!.v === w;
  const startsTerm = (): boolean => {
    const t = peek();
    return t !== undefined && (t.t === '(' || t.t === '-' || (t.t === 'word' && t.v !== 'AND' && t.v !== 'OR'));
  };

  function expression(depth: number): Node<R> {
    if (depth > 32) bad('nested too deeply', peek()?.at);
    const parts = [sequence(depth)];
    while (isWord('AND')) {
      i++;
      parts.push(sequence(depth));
    }
    return parts.length === 1 ? parts[0]! : (r) => parts.every((p) => p(r));
  }
  function sequence(depth: number): Node<R> {
    const parts = [factor(depth)];
    while (startsTerm()) parts.push(factor(depth));
    return parts.length === 1 ? parts[0]! : (r) => parts.every((p) => p(r));
  }
  function factor(depth: number): Node<R> {
    const parts = [term(depth)];
    while (isWord('OR')) {
      i++;
      parts.push(term(depth));
    }
    return parts.length === 1 ? parts[0]! : (r) => parts.some((p) => p(r));
  }
  function term(depth: number): Node<R> {
    if (isWord('NOT') || peek()?.t === '-') {
      i++;
      const inner = simple(depth);
      return (r) => !inner(r);
    }
    return simple(depth);
  }
  function simple(depth: number): Node<R> {
    const t = peek();
    if (!t) bad('ends where a comparison was expected');
    if (t.t === '(') {
      i++;
      const inner = expression(depth + 1);
      if (peek()?.t !== ')') bad('missing ")"', peek()?.at ?? source.length);
      i++;
      return inner;
    }
    if (t.t !== 'word' || ['AND', 'OR', 'NOT'].includes(t.v)) bad(`expected a field name, got ${JSON.stringify(t.v)}`, t.at);
    i++;
    const op = peek();
    if (!op || op.t !== 'op') bad(`expected a comparator (= != < <= > >=) after ${t.v}`, op?.at ?? source.length);
    i++;
    const value = peek();
    if (!value || (value.t !== 'word' && value.t !== 'string')) bad(`expected a value after ${t.v} ${op.v}`, value?.at ?? source.length);
    i++;
    return restriction(t, op, value, schema, what);
  }

  const root = expression(0);
  if (i < tokens.length) bad(`unexpected ${JSON.stringify(tokens[i]!.v)}`, tokens[i]!.at);
  return { test: root, key: createHash('sha256').update(source).digest('base64url').slice(0, 12) };
}
