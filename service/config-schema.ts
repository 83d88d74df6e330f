// The configuration file's schema (zod): every key, its type, its range, its
// default and whether a SIGHUP reloads it, in one place. config.ts reads the
// file and turns zod's issues into FILE:LINE: FIELD: PROBLEM messages;
// reload.ts takes its key lists from RELOAD below; DEFAULT_CONFIG is this
// schema applied to an empty file. Add a key here and every one of them
// follows (the compiler insists that RELOAD names it).
//
// Why zod: the file's values are not JSON Schema's types (sizes like 64KiB
// and durations like 5s are parsed into numbers), the broker wants the parsed
// type inferred rather than written twice, and zod 4 has no dependencies of
// its own (a small surface for a privileged process).
import { z } from 'zod';
import { GiB, KiB, MAX_REVOCATION_GRACE_MS, parseDuration, parseSize } from '../proto/wire';
import { LOG_LEVELS } from './logger';

/** How the messages name a value the file gave: 'the string "x"', 'a list', 'number 5'. */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

/** Splits "HOST:PORT" ("[::1]:9464", "0.0.0.0:9464", ":9464" for all interfaces). */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new RangeError(`invalid address ${JSON.stringify(text)}: expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464`);
  const port = Number(m[3]);
  if (port > 65535) throw new RangeError(`invalid port ${port} in ${JSON.stringify(text)}: expected 0..65535`);
  return { host: m[1] ?? m[2] ?? '', port };
}

const expected = (what: string) => (iss: { input?: unknown }) => `expected ${what}, got ${describe(iss.input)}`;

function int(min: number, max: number) {
  const range = (iss: { input?: unknown }) => `${String(iss.input)} is out of range ${min}..${max}`;
  return z
    .number({ error: expected('an integer') })
    .int({ error: expected('an integer') })
    .min(min, { error: range })
    .max(max, { error: range });
}

/** A text the file gives as a number or a string, read by `parse` (whose RangeError is the message). */
function parsed(what: string, parse: (v: number | string) => number) {
  return z.union([z.number(), z.string()], { error: expected(what) }).transform((v, ctx) => {
    try {
      return parse(v);
    } catch (err) {
      ctx.issues.push({ code: 'custom', message: (err as Error).message, input: v });
      return z.NEVER;
    }
  });
}

/** Bytes, or an IEC string ('64KiB', '2GiB'): proto/wire/units.ts, as the CLI reads them. */
function size(min = 0) {
  return parsed('a size (bytes or e.g. 64KiB)', parseSize).pipe(z.number().min(min, { error: (iss) => `${String(iss.input)} bytes is below the minimum of ${min}` }));
}

/** Milliseconds, or a string ('250ms', '5s', '5m', '1h', '2d'), at most `max` ms (named `maxText` in the message). */
function duration(max: number, maxText: string) {
  return parsed('a duration (ms or e.g. 5s)', parseDuration).pipe(z.number().max(max, { error: (iss) => `${String(iss.input)} ms is more than the maximum of ${maxText}` }));
}

/** A mapping with exactly these keys: an unknown key is an error, so a typo never falls back to a default. */
function mapping<S extends z.core.$ZodLooseShape>(shape: S) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown key (allowed here: ${allowed})` : expected('a mapping')(iss)),
  });
}

const id = int(0, 0xfffffffe);
const idList = z
  .array(id, { error: expected('a list of ids') })
  .transform((ids) => [...new Set(ids)]);

/** A quota limit: a count or size, or `unlimited`/null for none (the key is then left out). */
const limit = (of: z.ZodType<number, unknown>) => z.preprocess((v) => (v === 'unlimited' ? null : v), of.nullable());

/** One subject's default quota, or `unlimited`/null for none; limits it leaves out keep `defaults`. */
function quota(defaults: { bytes?: number; regions?: number }) {
  const withDefault = (of: z.ZodType<number | null, unknown>, d: number | undefined) => (d === undefined ? of.optional() : of.default(d));
  return z.preprocess(
    (v) => (v === 'unlimited' ? null : v),
    mapping({
      bytes: withDefault(limit(size()), defaults.bytes),
      regions: withDefault(limit(int(0, Number.MAX_SAFE_INTEGER)), defaults.regions),
      grantsPerRegion: limit(int(0, Number.MAX_SAFE_INTEGER)).optional(),
    })
      .transform(withoutNulls)
      .nullable(),
  );
}

/** T with its nullable keys made optional and never null. */
type WithoutNulls<T> = { [K in keyof T as null extends T[K] ? never : undefined extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as null extends T[K] ? K : undefined extends T[K] ? K : never]?: Exclude<T[K], null | undefined>;
};

/** Drops the keys whose value is null or undefined (a limit lifted, an optional key unset). */
function withoutNulls<T extends Record<string, unknown>>(o: T): WithoutNulls<T> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== null && v !== undefined) out[k] = v;
  return out as WithoutNulls<T>;
}

const podIdentity = mapping({
  enabled: z.union([z.boolean(), z.literal('auto')], { error: expected('true, false or auto') }).optional(),
  nodeName: z.string({ error: expected('a non-empty string') }).min(1, { error: expected('a non-empty string') }).optional(),
  apiServer: z.string({ error: expected('a non-empty string') }).min(1, { error: expected('a non-empty string') }).optional(),
  tokenFile: z.string({ error: expected('a non-empty string') }).min(1, { error: expected('a non-empty string') }).optional(),
  caFile: z.string({ error: expected('a non-empty string') }).min(1, { error: expected('a non-empty string') }).optional(),
  missWaitMs: int(0, 600_000).optional(),
  syncTimeoutMs: int(0, 600_000).optional(),
});

/** The keys, in the order the messages list them. */
const shape = {
  adminUids: idList.default([0]),
  adminGids: idList.default([]),
  allowNonAdminCreate: z.boolean({ error: expected('true or false') }).default(true),
  regionSize: mapping({ min: size(1).default(4 * KiB), max: size(1).default(16 * GiB) })
    .refine((r) => r.min <= r.max, { error: (iss) => `min (${(iss.input as { min: number }).min}) is larger than max (${(iss.input as { max: number }).max})` })
    .prefault({}),
  defaultQuota: mapping({ uid: quota({ bytes: 1 * GiB, regions: 64 }).prefault({}), gid: quota({}).optional() })
    .transform(withoutNulls)
    .prefault({}),
  maxGrantsPerRegion: int(1, 1_000_000).default(64),
  revocationGraceMs: duration(MAX_REVOCATION_GRACE_MS, '1h').default(1000),
  metricsAddr: z
    .string({ error: expected('HOST:PORT') })
    .refine((v) => safely(() => parseHostPort(v)) === undefined, { error: (iss) => safely(() => parseHostPort(iss.input as string)) })
    .nullish(),
  auditRetentionDays: int(1, 36500).nullish(),
  /** Audit group commit (service/audit/group-commit.ts). */
  audit: mapping({
    sync: z.enum(['batch', 'strict'], { error: expected('batch or strict') }).default('batch'),
    windowMs: duration(10_000, '10s').default(10),
    maxEvents: int(1, 1_000_000).default(1000),
  }).prefault({}),
  dataPlane: mapping({
    maxConnectionsPerUid: int(1, 1_000_000).default(64),
    maxRequestsPerSecondPerUid: int(1, 1_000_000_000).default(1000),
    /** Leases one non-admin uid may hold at once (a flood of acquires cannot grow the state without bound). */
    maxLeasesPerUid: int(1, 1_000_000_000).default(4096),
    /** Token bucket of data-plane connection attempts per non-admin uid (rate and burst). */
    maxConnectsPerSecondPerUid: int(1, 1_000_000_000).default(500),
    /**
     * Token bucket of malformed data-plane packets per non-admin uid (rate and
     * burst): once spent, the uid's new connections are closed at accept,
     * unread and only counted, until it refills (issue 16 item 2).
     */
    maxMalformedPerSecondPerUid: int(1, 1_000_000_000).default(20),
    /** Repeated refusals of one kind from one uid become one audit event per this interval. */
    refusalAuditIntervalSeconds: int(1, 3600).default(10),
    /** Below this many free bytes on the state filesystem, non-admin acquires, creates and grants are refused (STATE_LOW_SPACE). */
    stateLowWaterBytes: int(0, Number.MAX_SAFE_INTEGER).default(64 * 1024 * 1024),
  }).prefault({}),
  /** Kubernetes pod identity (service/identity/pods): on in a pod ('auto'), or forced on/off. */
  podIdentity: podIdentity.optional(),
  /** Unset: $SHMBROKER_LOG_LEVEL, else info. `serve --log-level` overrides it. */
  logLevel: z.enum(LOG_LEVELS, { error: expected(`one of ${LOG_LEVELS.join(', ')}`) }).nullish(),
};

/** The whole file. An empty file is `{}`: every key its default. */
export const configSchema = mapping(shape).transform(withoutNulls);

export type ConfigKey = keyof typeof shape;

/**
 * Which keys a running broker takes on SIGHUP ('reload') and which need a
 * restart; reload.ts says why for each.
 */
export const RELOAD = {
  adminUids: 'reload',
  adminGids: 'reload',
  allowNonAdminCreate: 'reload',
  regionSize: 'reload',
  defaultQuota: 'reload',
  maxGrantsPerRegion: 'reload',
  revocationGraceMs: 'reload',
  metricsAddr: 'restart',
  auditRetentionDays: 'reload',
  audit: 'restart',
  dataPlane: 'reload',
  podIdentity: 'restart',
  logLevel: 'reload',
} as const satisfies Record<ConfigKey, 'reload' | 'restart'>;

function safely(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
