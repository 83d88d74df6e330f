// The broker's configuration file (`shmbroker serve --config FILE`), YAML or
// JSON (JSON is read by the same YAML 1.2 parser, which gives line numbers
// for both). Keys are exactly the field names of BrokerConfig below; any
// field left out keeps its DEFAULT_CONFIG value (nested objects merge field
// by field). Unknown keys are errors, so a typo never silently falls back to
// a default.
//
//   adminUids: [0]                  # uids treated as admins (root is always one)
//   adminGids: [990]                # gids whose members are admins
//   allowNonAdminCreate: true       # false: only admins may create regions
//   regionSize: { min: 4KiB, max: 16GiB }
//   defaultQuota:                   # applies to any uid/gid without its own quota
//     uid: { bytes: 1GiB, regions: 64, grantsPerRegion: 32 }
//     gid: { bytes: unlimited }     # `unlimited` or null lifts that limit
//   maxGrantsPerRegion: 64
//   revocationGraceMs: 1s           # how long clients get to detach before a revoke
//   metricsAddr: 127.0.0.1:9464
//   auditRetentionDays: 90          # prune audit events older than this
//   audit: { sync: batch, windowMs: 10ms, maxEvents: 1000 }
//                                   # group commit: events reach the disk within the
//                                   # window; `strict`: every RPC waits for its event
//   dataPlane: { maxConnectionsPerUid: 64, maxRequestsPerSecondPerUid: 1000, maxLeasesPerUid: 4096,
//                maxConnectsPerSecondPerUid: 500, refusalAuditIntervalSeconds: 10, stateLowWaterBytes: 64MiB }
//   logLevel: info                  # fatal, error, warn, info, debug, trace, silent
//
// deploy/broker.example.yaml is a complete example (the test suite loads
// it); reload.ts says which keys a SIGHUP reloads and which need a restart.
//
// Sizes accept bytes or IEC strings ('64KiB', '2GiB'); durations accept
// milliseconds or strings ('250ms', '5s', '5m', '1h', '2d').
//
// loadConfig is all or nothing: it collects every problem, then either throws
// one ConfigError listing them all (each naming the file, line and field
// path) or returns a complete, deeply frozen config. The broker must call it
// before applying anything, so a bad file is never half-applied.
import * as fs from 'node:fs';
import * as YAML from 'yaml';
import { GiB, KiB, parseDuration, parseSize } from '../proto/wire';
import type { QuotaLimits } from './store/quota-store';
import type { PodIdentityConfig } from './identity/pods';
import { LOG_LEVELS, type LogLevel } from './logger';

export interface BrokerConfig {
  adminUids: number[];
  adminGids: number[];
  allowNonAdminCreate: boolean;
  regionSize: { min: number; max: number };
  defaultQuota: { uid?: QuotaLimits; gid?: QuotaLimits };
  maxGrantsPerRegion: number;
  revocationGraceMs: number;
  metricsAddr?: string;
  auditRetentionDays?: number;
  /** Audit group commit (service/audit/group-commit.ts). */
  audit: { sync: 'batch' | 'strict'; windowMs: number; maxEvents: number };
  dataPlane: {
    maxConnectionsPerUid: number;
    maxRequestsPerSecondPerUid: number;
    /** Leases one non-admin uid may hold at once (issue 16: a flood of acquires cannot grow the state without bound). */
    maxLeasesPerUid: number;
    /** Token bucket of data-plane connection attempts per non-admin uid (rate and burst). */
    maxConnectsPerSecondPerUid: number;
    /** Repeated refusals of one kind from one uid become one audit event per this interval. */
    refusalAuditIntervalSeconds: number;
    /** Below this many free bytes on the state filesystem, non-admin acquires are refused (STATE_LOW_SPACE). */
    stateLowWaterBytes: number;
  };
  /** Kubernetes pod identity (service/identity/pods): on in a pod ('auto'), or forced on/off. */
  podIdentity?: PodIdentityConfig;
  /** Log level; unset: $SHMBROKER_LOG_LEVEL, else info. `serve --log-level` overrides it. */
  logLevel?: LogLevel;
}


export const DEFAULT_CONFIG: BrokerConfig = deepFreeze({
  adminUids: [0],
  adminGids: [],
  allowNonAdminCreate: true,
  regionSize: { min: 4 * KiB, max: 16 * GiB },
  defaultQuota: { uid: { bytes: 1 * GiB, regions: 64 } },
  maxGrantsPerRegion: 64,
  revocationGraceMs: 1000,
  audit: { sync: 'batch', windowMs: 10, maxEvents: 1000 },
  dataPlane: {
    maxConnectionsPerUid: 64,
    maxRequestsPerSecondPerUid: 1000,
    maxLeasesPerUid: 4096,
    maxConnectsPerSecondPerUid: 500,
    refusalAuditIntervalSeconds: 10,
    stateLowWaterBytes: 64 * 1024 * 1024,
  },
});

/** One problem in a configuration file. */
export interface ConfigProblem {
  /** Dotted field path, e.g. "defaultQuota.uid.bytes"; "" for the document itself. */
  field: string;
  /** 1-based line, 0 when unknown. */
  line: number;
  message: string;
}

/** Every configuration problem found, in one line: "invalid configuration: FILE:LINE: FIELD: PROBLEM; ...". */
export class ConfigError extends Error {
  readonly reason = 'INVALID_CONFIG';
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    // One line (the CLI contract prints errors as one line), every problem in it.
    super(`invalid configuration: ${problems.map((p) => `${file}:${p.line}: ${p.field || '(document)'}: ${p.message}`).join('; ')}`);
    this.name = 'ConfigError';
  }
}

// Sizes and durations are read as the CLI reads them (proto/wire/units.ts).
export { parseDuration, parseSize };

// ---------------------------------------------------------------------------
// Validation

type Node = YAML.Node | YAML.Pair | null | undefined;

class Checker {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly lines: YAML.LineCounter) {}

  line(node: Node): number {
    const range = (node as YAML.Node | null | undefined)?.range;
    if (!range) return 0;
    return this.lines.linePos(range[0]).line;
  }

  fail(field: string, node: Node, message: string): undefined {
    this.problems.push({ field, line: this.line(node), message });
    return undefined;
  }

  /** The key/value pairs of a mapping node, complaining about unknown keys. */
  mapping(field: string, node: Node, allowed: readonly string[]): Map<string, { key: YAML.Node; value: Node }> | undefined {
    const out = new Map<string, { key: YAML.Node; value: Node }>();
    if (!YAML.isMap(node)) return this.fail(field, node, `expected a mapping, got ${describe(node)}`);
    for (const pair of node.items) {
      const key = pair.key as YAML.Node;
      const name = YAML.isScalar(key) ? String(key.value) : undefined;
      const path = field ? `${field}.${name ?? '?'}` : (name ?? '?');
      if (name === undefined) {
        this.fail(path, key, 'keys must be plain strings');
      } else if (!allowed.includes(name)) {
        this.fail(path, key, `unknown key (allowed here: ${allowed.join(', ')})`);
      } else {
        out.set(name, { key, value: pair.value as Node });
      }
    }
    return out;
  }

  int(field: string, node: Node, min: number, max: number): number | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.fail(field, node, `expected an integer, got ${describe(node)}`);
    if (v < min || v > max) return this.fail(field, node, `${v} is out of range ${min}..${max}`);
    return v;
  }

  bool(field: string, node: Node): boolean | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'boolean') return this.fail(field, node, `expected true or false, got ${describe(node)}`);
    return v;
  }

  id(field: string, node: Node): number | undefined {
    return this.int(field, node, 0, 0xfffffffe);
  }

  idList(field: string, node: Node): number[] | undefined {
    if (!YAML.isSeq(node)) return this.fail(field, node, `expected a list of ids, got ${describe(node)}`);
    const out: number[] = [];
    let ok = true;
    node.items.forEach((item, i) => {
      const v = this.id(`${field}[${i}]`, item as Node);
      if (v === undefined) ok = false;
      else out.push(v);
    });
    return ok ? [...new Set(out)] : undefined;
  }

  size(field: string, node: Node, min = 0): number | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'number' && typeof v !== 'string') {
      return this.fail(field, node, `expected a size (bytes or e.g. 64KiB), got ${describe(node)}`);
    }
    let n: number;
    try {
      n = parseSize(v);
    } catch (err) {
      return this.fail(field, node, (err as Error).message);
    }
    if (n < min) return this.fail(field, node, `${n} bytes is below the minimum of ${min}`);
    return n;
  }

  duration(field: string, node: Node): number | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'number' && typeof v !== 'string') {
      return this.fail(field, node, `expected a duration (ms or e.g. 5s), got ${describe(node)}`);
    }
    try {
      return parseDuration(v);
    } catch (err) {
      return this.fail(field, node, (err as Error).message);
    }
  }

  /** A quota limit: a count/size, or `unlimited`/null for none. */
  limit(field: string, node: Node, kind: 'size' | 'count'): number | null | undefined {
    const v = scalarValue(node);
    if (v === null || v === 'unlimited') return null;
    return kind === 'size' ? this.size(field, node) : this.int(field, node, 0, Number.MAX_SAFE_INTEGER);
  }

  addr(field: string, node: Node): string | undefined {
    const v = scalarValue(node);
    if (typeof v !== 'string') return this.fail(field, node, `expected HOST:PORT, got ${describe(node)}`);
    try {
      parseHostPort(v);
    } catch (err) {
      return this.fail(field, node, (err as Error).message);
    }
    return v;
  }
}

/** Splits "HOST:PORT" ("[::1]:9464", "0.0.0.0:9464", ":9464" for all interfaces). */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new RangeError(`invalid address ${JSON.stringify(text)}: expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464`);
  const port = Number(m[3]);
  if (port > 65535) throw new RangeError(`invalid port ${port} in ${JSON.stringify(text)}: expected 0..65535`);
  return { host: m[1] ?? m[2] ?? '', port };
}

function scalarValue(node: Node): unknown {
  if (node === null || node === undefined) return null;
  if (YAML.isScalar(node)) return node.value;
  return node; // a collection: callers report it as the wrong type
}

function describe(node: Node): string {
  if (node === null || node === undefined) return 'nothing';
  if (YAML.isMap(node)) return 'a mapping';
  if (YAML.isSeq(node)) return 'a list';
  if (YAML.isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
    return `${typeof v} ${String(v)}`;
  }
  return 'an unsupported value';
}

const TOP_KEYS = [
  'adminUids',
  'adminGids',
  'allowNonAdminCreate',
  'regionSize',
  'defaultQuota',
  'maxGrantsPerRegion',
  'revocationGraceMs',
  'metricsAddr',
  'auditRetentionDays',
  'audit',
  'dataPlane',
  'podIdentity',
  'logLevel',
] as const;

const POD_IDENTITY_KEYS = ['enabled', 'nodeName', 'apiServer', 'tokenFile', 'caFile', 'missWaitMs', 'syncTimeoutMs'] as const;

function validate(doc: YAML.Document.Parsed, c: Checker): BrokerConfig {
  // Start from a mutable deep copy of the defaults; fields override it one by one.
  const cfg = JSON.parse(JSON.stringify(DEFAULT_CONFIG)) as BrokerConfig;
  const root = doc.contents as Node;
  if (root === null || (YAML.isScalar(root) && root.value === null)) return cfg; // empty file: all defaults
  const top = c.mapping('', root, TOP_KEYS);
  if (!top) return cfg;

  const get = (k: (typeof TOP_KEYS)[number]) => top.get(k)?.value;
  const has = (k: (typeof TOP_KEYS)[number]) => top.has(k);

  if (has('adminUids')) cfg.adminUids = c.idList('adminUids', get('adminUids')) ?? cfg.adminUids;
  if (has('adminGids')) cfg.adminGids = c.idList('adminGids', get('adminGids')) ?? cfg.adminGids;
  if (has('allowNonAdminCreate')) {
    cfg.allowNonAdminCreate = c.bool('allowNonAdminCreate', get('allowNonAdminCreate')) ?? cfg.allowNonAdminCreate;
  }
  if (has('regionSize')) {
    const rs = c.mapping('regionSize', get('regionSize'), ['min', 'max']);
    if (rs) {
      const min = rs.has('min') ? c.size('regionSize.min', rs.get('min')!.value, 1) : cfg.regionSize.min;
      const max = rs.has('max') ? c.size('regionSize.max', rs.get('max')!.value, 1) : cfg.regionSize.max;
      if (min !== undefined && max !== undefined) {
        if (min > max) c.fail('regionSize', get('regionSize'), `min (${min}) is larger than max (${max})`);
        cfg.regionSize = { min, max };
      }
    }
  }
  if (has('defaultQuota')) {
    const dq = c.mapping('defaultQuota', get('defaultQuota'), ['uid', 'gid']);
    if (dq) {
      for (const kind of ['uid', 'gid'] as const) {
        if (!dq.has(kind)) continue;
        const node = dq.get(kind)!.value;
        const field = `defaultQuota.${kind}`;
        if (scalarValue(node) === null || scalarValue(node) === 'unlimited') {
          delete cfg.defaultQuota[kind];
          continue;
        }
        const q = c.mapping(field, node, ['bytes', 'regions', 'grantsPerRegion']);
        if (!q) continue;
        const limits: QuotaLimits = { ...(cfg.defaultQuota[kind] ?? {}) };
        for (const [name, kindOf] of [
          ['bytes', 'size'],
          ['regions', 'count'],
          ['grantsPerRegion', 'count'],
        ] as const) {
          if (!q.has(name)) continue;
          const v = c.limit(`${field}.${name}`, q.get(name)!.value, kindOf);
          if (v === null) delete limits[name];
          else if (v !== undefined) limits[name] = v;
        }
        cfg.defaultQuota[kind] = limits;
      }
    }
  }
  if (has('maxGrantsPerRegion')) {
    cfg.maxGrantsPerRegion = c.int('maxGrantsPerRegion', get('maxGrantsPerRegion'), 1, 1_000_000) ?? cfg.maxGrantsPerRegion;
  }
  if (has('revocationGraceMs')) {
    const v = c.duration('revocationGraceMs', get('revocationGraceMs'));
    if (v !== undefined && v > 3_600_000) c.fail('revocationGraceMs', get('revocationGraceMs'), `${v} ms is more than the maximum of 1h`);
    else if (v !== undefined) cfg.revocationGraceMs = v;
  }
  if (has('metricsAddr')) {
    const node = get('metricsAddr');
    if (scalarValue(node) === null) delete cfg.metricsAddr;
    else {
      const v = c.addr('metricsAddr', node);
      if (v !== undefined) cfg.metricsAddr = v;
    }
  }
  if (has('auditRetentionDays')) {
    const node = get('auditRetentionDays');
    if (scalarValue(node) === null) delete cfg.auditRetentionDays;
    else {
      const v = c.int('auditRetentionDays', node, 1, 36500);
      if (v !== undefined) cfg.auditRetentionDays = v;
    }
  }
  if (has('audit')) {
    const au = c.mapping('audit', get('audit'), ['sync', 'windowMs', 'maxEvents']);
    if (au) {
      const sync = au.get('sync')?.value;
      if (sync !== undefined) {
        const v = scalarValue(sync);
        if (v === 'batch' || v === 'strict') cfg.audit.sync = v;
        else c.fail('audit.sync', sync, `expected batch or strict, got ${describe(sync)}`);
      }
      if (au.has('windowMs')) {
        const v = c.duration('audit.windowMs', au.get('windowMs')!.value);
        if (v !== undefined && v > 10_000) c.fail('audit.windowMs', au.get('windowMs')!.value, `${v} ms is more than the maximum of 10s`);
        else if (v !== undefined) cfg.audit.windowMs = v;
      }
      if (au.has('maxEvents')) {
        const v = c.int('audit.maxEvents', au.get('maxEvents')!.value, 1, 1_000_000);
        if (v !== undefined) cfg.audit.maxEvents = v;
      }
    }
  }
  if (has('dataPlane')) {
    const dp = c.mapping('dataPlane', get('dataPlane'), [
      'maxConnectionsPerUid',
      'maxRequestsPerSecondPerUid',
      'maxLeasesPerUid',
      'maxConnectsPerSecondPerUid',
      'refusalAuditIntervalSeconds',
      'stateLowWaterBytes',
    ]);
    if (dp) {
      for (const [key, min, max] of [
        ['maxLeasesPerUid', 1, 1_000_000_000],
        ['maxConnectsPerSecondPerUid', 1, 1_000_000_000],
        ['refusalAuditIntervalSeconds', 1, 3600],
        ['stateLowWaterBytes', 0, Number.MAX_SAFE_INTEGER],
      ] as const) {
        if (!dp.has(key)) continue;
        const v = c.int(`dataPlane.${key}`, dp.get(key)!.value, min, max);
        if (v !== undefined) cfg.dataPlane[key] = v;
      }
      if (dp.has('maxConnectionsPerUid')) {
        const v = c.int('dataPlane.maxConnectionsPerUid', dp.get('maxConnectionsPerUid')!.value, 1, 1_000_000);
        if (v !== undefined) cfg.dataPlane.maxConnectionsPerUid = v;
      }
      if (dp.has('maxRequestsPerSecondPerUid')) {
        const v = c.int('dataPlane.maxRequestsPerSecondPerUid', dp.get('maxRequestsPerSecondPerUid')!.value, 1, 1_000_000_000);
        if (v !== undefined) cfg.dataPlane.maxRequestsPerSecondPerUid = v;
      }
    }
  }
  if (has('logLevel')) {
    const node = get('logLevel');
    const v = scalarValue(node);
    if (v === null) delete cfg.logLevel;
    else if (typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v)) cfg.logLevel = v as LogLevel;
    else c.fail('logLevel', node, `expected one of ${LOG_LEVELS.join(', ')}, got ${describe(node)}`);
  }
  if (has('podIdentity')) {
    const pi = c.mapping('podIdentity', get('podIdentity'), POD_IDENTITY_KEYS);
    if (pi) {
      const out: PodIdentityConfig = {};
      const en = pi.get('enabled')?.value;
      if (en !== undefined) {
        const v = scalarValue(en);
        if (v === true || v === false || v === 'auto') out.enabled = v;
        else c.fail('podIdentity.enabled', en, `expected true, false or auto, got ${describe(en)}`);
      }
      for (const key of ['nodeName', 'apiServer', 'tokenFile', 'caFile'] as const) {
        const node = pi.get(key)?.value;
        if (node === undefined) continue;
        const v = scalarValue(node);
        if (typeof v === 'string' && v.length > 0) out[key] = v;
        else c.fail(`podIdentity.${key}`, node, `expected a non-empty string, got ${describe(node)}`);
      }
      for (const key of ['missWaitMs', 'syncTimeoutMs'] as const) {
        const node = pi.get(key)?.value;
        if (node === undefined) continue;
        const v = c.int(`podIdentity.${key}`, node, 0, 600_000);
        if (v !== undefined) out[key] = v;
      }
      cfg.podIdentity = out;
    }
  }
  return cfg;
}

/** Parses and validates configuration text; `file` only labels the messages. */
export function parseConfig(text: string, file = '<config>'): BrokerConfig {
  const lines = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  const c = new Checker(lines);
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
      c.problems.push({ field: '', line, message: `syntax error: ${e.message.split('\n')[0]}` });
    }
    throw new ConfigError(file, c.problems);
  }
  const cfg = validate(doc, c);
  if (c.problems.length > 0) throw new ConfigError(file, c.problems.sort((a, b) => a.line - b.line));
  return deepFreeze(cfg);
}

/**
 * Loads the configuration file; without a path, the defaults. Throws a
 * ConfigError (never returns a partial config) for an unreadable file or any
 * invalid field.
 */
export function loadConfig(path?: string): BrokerConfig {
  if (path === undefined) return DEFAULT_CONFIG;
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [{ field: '', line: 0, message: `cannot read the file: ${(err as Error).message}` }]);
  }
  return parseConfig(text, path);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
