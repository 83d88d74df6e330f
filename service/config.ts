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
//                maxConnectsPerSecondPerUid: 500, maxMalformedPerSecondPerUid: 20,
//                refusalAuditIntervalSeconds: 10, stateLowWaterBytes: 64MiB }
//   logLevel: info                  # fatal, error, warn, info, debug, trace, silent
//
// deploy/broker.example.yaml is a complete example (the test suite loads
// it); reload.ts says which keys a SIGHUP reloads and which need a restart.
//
// Sizes accept bytes or IEC strings ('64KiB', '2GiB'); durations accept
// milliseconds or strings ('250ms', '5s', '5m', '1h', '2d').
//
// The keys, types, ranges and defaults are one zod schema (config-schema.ts);
// this file reads the text and names each of zod's issues by file, line and
// field path. loadConfig is all or nothing: it collects every problem, then
// either throws one ConfigError listing them all or returns a complete,
// deeply frozen config. The broker must call it before applying anything, so
// a bad file is never half-applied.
import * as fs from 'node:fs';
import * as YAML from 'yaml';
import type { z } from 'zod';
import { parseDuration, parseSize } from '../proto/wire';
import { configSchema } from './config-schema';

/** The configuration, as the schema reads it (config-schema.ts). */
export type BrokerConfig = z.output<typeof configSchema>;

/** What an empty file means: every key its default (the schema applied to `{}`). */
export const DEFAULT_CONFIG: BrokerConfig = deepFreeze(configSchema.parse({}));

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
export { parseHostPort } from './config-schema';

/** Parses and validates configuration text; `file` only labels the messages. */
export function parseConfig(text: string, file = '<config>'): BrokerConfig {
  const lines = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ field: '', line: e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line, message: `syntax error: ${e.message.split('\n')[0]}` })),
    );
  }
  // Keys are plain strings: a mapping or list as a key has no field name to report or apply.
  const badKeys: ConfigProblem[] = [];
  YAML.visit(doc, {
    Pair(_, pair, ancestors) {
      if (YAML.isScalar(pair.key)) return;
      const parent = fieldName(pathOf(ancestors));
      badKeys.push({ field: parent ? `${parent}.?` : '?', line: lineOfNode(lines, pair.key), message: 'keys must be plain strings' });
    },
  });
  if (badKeys.length > 0) throw new ConfigError(file, badKeys);
  const root = doc.contents;
  // An empty file (or only comments): every key its default.
  const value: unknown = root === null || (YAML.isScalar(root) && root.value === null) ? {} : doc.toJS();
  const result = configSchema.safeParse(value);
  if (!result.success) throw new ConfigError(file, problemsOf(result.error.issues, doc, lines));
  return deepFreeze(result.data);
}

/**
 * zod's issues as problems: each names its field path and the line of the
 * value (or, for an unknown key, of the key) in the file. One problem per
 * field, in the order of the file.
 */
function problemsOf(issues: readonly z.core.$ZodIssue[], doc: YAML.Document.Parsed, lines: YAML.LineCounter): ConfigProblem[] {
  const lineOf = (node: unknown): number => lineOfNode(lines, node);
  const nodeAt = (path: readonly PropertyKey[]): unknown => (path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true));
  const out: ConfigProblem[] = [];
  const seen = new Set<string>();
  const add = (path: readonly PropertyKey[], line: number, message: string) => {
    const field = fieldName(path);
    if (seen.has(field)) return;
    seen.add(field);
    out.push({ field, line, message });
  };
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const map = nodeAt(issue.path);
      for (const key of issue.keys) {
        const pair = YAML.isMap(map) ? map.items.find((p) => YAML.isScalar(p.key) && String(p.key.value) === key) : undefined;
        add([...issue.path, key], lineOf(pair?.key ?? map), issue.message);
      }
      continue;
    }
    // A value that is not there (a missing key has no node): the nearest node above it.
    let path = issue.path;
    while (path.length > 0 && nodeAt(path) === undefined) path = path.slice(0, -1);
    add(issue.path, lineOf(nodeAt(path)), issue.message);
  }
  return out.sort((a, b) => a.line - b.line);
}

function lineOfNode(lines: YAML.LineCounter, node: unknown): number {
  const range = (node as YAML.Node | null | undefined)?.range;
  return range ? lines.linePos(range[0]).line : 0;
}

/** The field path of a node from its ancestors (as YAML.visit gives them). */
function pathOf(ancestors: readonly unknown[]): PropertyKey[] {
  const path: PropertyKey[] = [];
  ancestors.forEach((node, i) => {
    const child = ancestors[i + 1];
    if (YAML.isPair(node) && YAML.isScalar(node.key)) path.push(String(node.key.value));
    else if (YAML.isSeq(node) && child !== undefined) path.push(node.items.indexOf(child as never));
  });
  return path;
}

/** ["defaultQuota", "uid", "bytes"] -> "defaultQuota.uid.bytes"; ["adminUids", 1] -> "adminUids[1]". */
function fieldName(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${String(seg)}` : String(seg);
  return out;
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
