import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_CONFIG, loadConfig, parseConfig, parseDuration, parseSize } from './config';
import { RELOADABLE_KEYS, RESTART_KEYS } from './reload';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseSize', () => {
  it.each([
    [4096, 4096],
    ['4096', 4096],
    ['64KiB', 65536],
    ['1MiB', 1048576],
    ['2GiB', 2 * 1024 ** 3],
    ['1TiB', 1024 ** 4],
    ['1.5KiB', 1536],
    ['512 B', 512],
    [' 4 KiB ', 4096],
  ])('%j -> %d', (input, want) => expect(parseSize(input)).toBe(want));

  it.each(['', 'abc', '4KB', '4k', '1MB', '-1', '1.3B', '1e3', 'KiB', '4 KiB extra'])('rejects %j', (input) => {
    expect(() => parseSize(input)).toThrow(/size/);
  });
  it('rejects negative and fractional numbers', () => {
    expect(() => parseSize(-1)).toThrow(RangeError);
    expect(() => parseSize(1.5)).toThrow(RangeError);
  });
});

describe('parseDuration', () => {
  it.each([
    [250, 250],
    ['250', 250],
    ['250ms', 250],
    ['90s', 90_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
  ])('%j -> %d', (input, want) => expect(parseDuration(input)).toBe(want));
  it.each(['', '5', '5 s', 's', '5w', '-5s', '5sec'].filter((s) => s !== '5'))('rejects %j', (input) => {
    expect(() => parseDuration(input)).toThrow(/duration/);
  });
});

describe('loadConfig', () => {
  it('returns the frozen defaults without a file, and for an empty file', () => {
    expect(loadConfig()).toEqual(DEFAULT_CONFIG);
    expect(Object.isFrozen(loadConfig())).toBe(true);
    expect(loadConfig(write('empty.yaml', ''))).toEqual(DEFAULT_CONFIG);
    expect(loadConfig(write('comment.yaml', '# nothing here\n'))).toEqual(DEFAULT_CONFIG);
  });

  const yamlText = `# full example
adminUids: [0, 1000]
adminGids: [990]
allowNonAdminCreate: false
regionSize: { min: 4KiB, max: 2GiB }
defaultQuota:
  uid: { bytes: 1MiB, regions: 2, grantsPerRegion: 8 }
  gid: { bytes: 10GiB }
maxGrantsPerRegion: 16
revocationGraceMs: 2s
metricsAddr: "127.0.0.1:9464"
auditRetentionDays: 30
audit: { sync: strict, windowMs: 5ms, maxEvents: 200 }
dataPlane:
  maxConnectionsPerUid: 8
  maxRequestsPerSecondPerUid: 500
`;
  const want = {
    adminUids: [0, 1000],
    adminGids: [990],
    allowNonAdminCreate: false,
    regionSize: { min: 4096, max: 2 * 1024 ** 3 },
    defaultQuota: { uid: { bytes: 1048576, regions: 2, grantsPerRegion: 8 }, gid: { bytes: 10 * 1024 ** 3 } },
    maxGrantsPerRegion: 16,
    revocationGraceMs: 2000,
    metricsAddr: '127.0.0.1:9464',
    auditRetentionDays: 30,
    audit: { sync: 'strict', windowMs: 5, maxEvents: 200 },
    dataPlane: {
      maxConnectionsPerUid: 8,
      maxRequestsPerSecondPerUid: 500,
      // not in the file: the defaults
      maxLeasesPerUid: 4096,
      maxConnectsPerSecondPerUid: 500,
      maxMalformedPerSecondPerUid: 20,
      refusalAuditIntervalSeconds: 10,
      stateLowWaterBytes: 64 * 1024 * 1024,
    },
  };

  it('reads YAML', () => {
    const cfg = loadConfig(write('full.yaml', yamlText));
    expect(cfg).toEqual(want);
    expect(Object.isFrozen(cfg.defaultQuota.uid)).toBe(true);
    expect(Object.isFrozen(cfg.adminUids)).toBe(true);
  });

  it('reads JSON', () => {
    const json = JSON.stringify(
      {
        ...want,
        regionSize: { min: '4KiB', max: '2GiB' },
        defaultQuota: { uid: { bytes: '1MiB', regions: 2, grantsPerRegion: 8 }, gid: { bytes: 10 * 1024 ** 3 } },
        revocationGraceMs: '2s',
      },
      null,
      2,
    );
    expect(loadConfig(write('full.json', json))).toEqual(want);
  });

  it('merges a partial file over the defaults, and lifts limits with unlimited/null', () => {
    const cfg = loadConfig(
      write('partial.yaml', 'regionSize:\n  max: 1GiB\ndefaultQuota:\n  uid:\n    regions: unlimited\n    grantsPerRegion: 3\n'),
    );
    expect(cfg.regionSize).toEqual({ min: DEFAULT_CONFIG.regionSize.min, max: 1024 ** 3 });
    expect(cfg.defaultQuota.uid).toEqual({ bytes: DEFAULT_CONFIG.defaultQuota.uid!.bytes, grantsPerRegion: 3 });
    expect(cfg.adminUids).toEqual([0]);
    const none = loadConfig(write('noquota.yaml', 'defaultQuota:\n  uid: null\n'));
    expect(none.defaultQuota.uid).toBeUndefined();
  });

  // [name, file text, field named in the message, line named in the message]
  const errorTable: Array<[string, string, string, number]> = [
    ['adminUids not a list', 'adminUids: 5\n', 'adminUids', 1],
    ['adminUids element a string', 'adminUids:\n  - 0\n  - root\n', 'adminUids[1]', 3],
    ['adminUids element negative', 'adminUids: [0, -3]\n', 'adminUids[1]', 1],
    ['adminUids element fractional', '\nadminUids: [1.5]\n', 'adminUids[0]', 2],
    ['adminUids element too large', 'adminUids: [4294967295]\n', 'adminUids[0]', 1],
    ['adminGids not a list', 'adminGids: "1"\n', 'adminGids', 1],
    ['adminGids element a map', 'adminGids:\n  - {a: 1}\n', 'adminGids[0]', 2],
    ['allowNonAdminCreate a string', 'allowNonAdminCreate: "yes"\n', 'allowNonAdminCreate', 1],
    ['allowNonAdminCreate a number', 'allowNonAdminCreate: 1\n', 'allowNonAdminCreate', 1],
    ['regionSize not a map', 'regionSize: 5\n', 'regionSize', 1],
    ['regionSize.min bad unit', 'regionSize:\n  min: 4KB\n', 'regionSize.min', 2],
    ['regionSize.max zero', 'regionSize:\n  max: 0\n', 'regionSize.max', 2],
    ['regionSize.max a list', 'regionSize:\n  max: [1]\n', 'regionSize.max', 2],
    ['regionSize min > max', 'regionSize:\n  min: 2MiB\n  max: 1MiB\n', 'regionSize', 2],
    ['regionSize unknown key', 'regionSize:\n  mn: 4KiB\n', 'regionSize.mn', 2],
    ['defaultQuota not a map', 'defaultQuota: [1]\n', 'defaultQuota', 1],
    ['defaultQuota unknown subject', 'defaultQuota:\n  user: {}\n', 'defaultQuota.user', 2],
    ['defaultQuota.uid.bytes bad', 'defaultQuota:\n  uid:\n    bytes: lots\n', 'defaultQuota.uid.bytes', 3],
    ['defaultQuota.uid.regions negative', 'defaultQuota:\n  uid:\n    regions: -1\n', 'defaultQuota.uid.regions', 3],
    ['defaultQuota.gid.grantsPerRegion string', 'defaultQuota:\n  gid:\n    grantsPerRegion: "4"\n', 'defaultQuota.gid.grantsPerRegion', 3],
    ['defaultQuota.uid unknown key', 'defaultQuota:\n  uid:\n    byte: 1\n', 'defaultQuota.uid.byte', 3],
    ['maxGrantsPerRegion zero', 'maxGrantsPerRegion: 0\n', 'maxGrantsPerRegion', 1],
    ['maxGrantsPerRegion string', 'maxGrantsPerRegion: many\n', 'maxGrantsPerRegion', 1],
    ['revocationGraceMs bad unit', 'revocationGraceMs: 5 weeks\n', 'revocationGraceMs', 1],
    ['revocationGraceMs too long', 'revocationGraceMs: 2h\n', 'revocationGraceMs', 1],
    ['revocationGraceMs a bool', 'revocationGraceMs: true\n', 'revocationGraceMs', 1],
    ['metricsAddr no port', 'metricsAddr: localhost\n', 'metricsAddr', 1],
    ['metricsAddr port too big', 'metricsAddr: "127.0.0.1:70000"\n', 'metricsAddr', 1],
    ['metricsAddr a number', 'metricsAddr: 9464\n', 'metricsAddr', 1],
    ['auditRetentionDays zero', 'auditRetentionDays: 0\n', 'auditRetentionDays', 1],
    ['auditRetentionDays string', 'auditRetentionDays: month\n', 'auditRetentionDays', 1],
    ['audit not a map', 'audit: strict\n', 'audit', 1],
    ['audit.sync unknown', 'audit:\n  sync: always\n', 'audit.sync', 2],
    ['audit.windowMs too long', 'audit:\n  windowMs: 1m\n', 'audit.windowMs', 2],
    ['audit.maxEvents zero', 'audit:\n  maxEvents: 0\n', 'audit.maxEvents', 2],
    ['audit unknown key', 'audit:\n  flush: data\n', 'audit.flush', 2],
    ['dataPlane not a map', 'dataPlane: true\n', 'dataPlane', 1],
    ['dataPlane.maxConnectionsPerUid zero', 'dataPlane:\n  maxConnectionsPerUid: 0\n', 'dataPlane.maxConnectionsPerUid', 2],
    ['dataPlane.maxLeasesPerUid zero', 'dataPlane:\n  maxLeasesPerUid: 0\n', 'dataPlane.maxLeasesPerUid', 2],
    ['dataPlane.refusalAuditIntervalSeconds too long', 'dataPlane:\n  refusalAuditIntervalSeconds: 86400\n', 'dataPlane.refusalAuditIntervalSeconds', 2],
    ['dataPlane.maxRequestsPerSecondPerUid float', 'dataPlane:\n  maxRequestsPerSecondPerUid: 2.5\n', 'dataPlane.maxRequestsPerSecondPerUid', 2],
    ['dataPlane unknown key', 'dataPlane:\n  maxConns: 1\n', 'dataPlane.maxConns', 2],
    ['unknown top-level key', 'adminUids: [0]\nadminUid: [1]\n', 'adminUid', 2],
    ['top level a list', '- 1\n- 2\n', '(document)', 1],
    ['top level a scalar', 'hello\n', '(document)', 1],
  ];

  it.each(errorTable)('%s', (_name, text, field, line) => {
    const file = write('bad.yaml', text);
    const err = errorOf(() => loadConfig(file));
    expect(err.message).toContain(`${file}:${line}: ${field}: `);
    expect(err.problems.some((p) => p.line === line && (p.field || '(document)') === field)).toBe(true);
  });

  it.each([
    ['unclosed flow mapping', 'regionSize: { min: 4KiB\nmaxGrantsPerRegion: 3\n', 2],
    ['bad indentation', 'dataPlane:\n  maxConnectionsPerUid: 1\n maxRequestsPerSecondPerUid: 2\n', 3],
    ['duplicate key', 'adminUids: [0]\nadminUids: [1]\n', 2],
    ['tab indentation', 'dataPlane:\n\tmaxConnectionsPerUid: 1\n', 2],
    ['unterminated string', 'metricsAddr: "127.0.0.1:1\n', 2],
  ])('YAML syntax error: %s names the line where the parser found it', (_name, text, line) => {
    const file = write('syntax.yaml', text);
    const err = errorOf(() => loadConfig(file));
    expect(err.message).toMatch(/syntax error/);
    expect(err.problems.map((p) => p.line)).toContain(line);
  });

  it('JSON syntax errors name the line', () => {
    const err = errorOf(() => loadConfig(write('bad.json', '{\n  "adminUids": [0],\n  "adminGids": [1,,]\n}\n')));
    expect(err.problems[0]!.line).toBe(3);
  });

  it('JSON type errors name the field and line', () => {
    const err = errorOf(() => loadConfig(write('bad2.json', '{\n  "adminUids": [0],\n  "dataPlane": {\n    "maxConnectionsPerUid": "8"\n  }\n}\n')));
    expect(err.message).toContain(':4: dataPlane.maxConnectionsPerUid: expected an integer');
  });

  it('reports every problem at once and applies none of them', () => {
    const err = errorOf(() => parseConfig('adminUids: [0]\nmaxGrantsPerRegion: 0\nbogus: 1\nrevocationGraceMs: soon\n', 'multi.yaml'));
    expect(err.problems.map((p) => [p.field, p.line])).toEqual([
      ['maxGrantsPerRegion', 2],
      ['bogus', 3],
      ['revocationGraceMs', 4],
    ]);
    expect(DEFAULT_CONFIG.maxGrantsPerRegion).toBe(64);
    expect(err.message).not.toContain('\n'); // the CLI prints errors as one line
    expect(err.message).toBe(
      'invalid configuration: multi.yaml:2: maxGrantsPerRegion: 0 is out of range 1..1000000; ' +
        'multi.yaml:3: bogus: unknown key (allowed here: adminUids, adminGids, allowNonAdminCreate, regionSize, defaultQuota, ' +
        'maxGrantsPerRegion, revocationGraceMs, metricsAddr, auditRetentionDays, audit, dataPlane, podIdentity, logLevel); ' +
        'multi.yaml:4: revocationGraceMs: invalid duration "soon": expected milliseconds or e.g. 250ms, 90s, 5m, 1h, 2d',
    );
  });

  it('a missing file is a ConfigError naming the file', () => {
    const missing = path.join(dir, 'nope.yaml');
    const err = errorOf(() => loadConfig(missing));
    expect(err.message).toContain(missing);
    expect(err.message).toMatch(/cannot read/);
  });
});

describe('podIdentity block', () => {
  it('accepts the documented keys', () => {
    const cfg = parseConfig('podIdentity:\n  enabled: auto\n  nodeName: node-1\n  missWaitMs: 500\n', 'pi.yaml');
    expect(cfg.podIdentity).toEqual({ enabled: 'auto', nodeName: 'node-1', missWaitMs: 500 });
  });
  it.each([
    ['podIdentity:\n  enabled: maybe\n', 'podIdentity.enabled', 2],
    ['podIdentity:\n  nodeName: 5\n', 'podIdentity.nodeName', 2],
    ['podIdentity:\n  bogus: 1\n', 'podIdentity.bogus', 2],
    ['podIdentity:\n  syncTimeoutMs: -1\n', 'podIdentity.syncTimeoutMs', 2],
  ])('rejects %j naming %s on line %i', (text, field, line) => {
    expect(() => parseConfig(text, 'pi.yaml')).toThrow(new RegExp(`pi\\.yaml:${line}.*${field.replace('.', '\\.')}`));
  });
});

describe('the schema (config-schema.ts) names the key, the file and the line', () => {
  it('names every unknown key of one mapping on its own line', () => {
    const err = errorOf(() => parseConfig('audit:\n  sync: batch\n  flush: data\n  fsync: true\n', 'two.yaml'));
    expect(err.problems).toEqual([
      { field: 'audit.flush', line: 3, message: 'unknown key (allowed here: sync, windowMs, maxEvents)' },
      { field: 'audit.fsync', line: 4, message: 'unknown key (allowed here: sync, windowMs, maxEvents)' },
    ]);
  });

  it('names a problem inside a list element and deep in a mapping, in file order', () => {
    const err = errorOf(() => parseConfig('defaultQuota:\n  gid:\n    regions: -2\nadminGids:\n  - 5\n  - wheel\n', 'deep.yaml'));
    expect(err.message).toBe(
      'invalid configuration: deep.yaml:3: defaultQuota.gid.regions: -2 is out of range 0..9007199254740991; ' +
        'deep.yaml:6: adminGids[1]: expected an integer, got the string "wheel"',
    );
  });

  it('reports one problem per field (a fraction below the minimum is only "expected an integer")', () => {
    const err = errorOf(() => parseConfig('maxGrantsPerRegion: 0.5\n', 'one.yaml'));
    expect(err.problems).toEqual([{ field: 'maxGrantsPerRegion', line: 1, message: 'expected an integer, got number 0.5' }]);
  });

  it('does not compare regionSize.min with max when one of them is already wrong', () => {
    const err = errorOf(() => parseConfig('regionSize:\n  min: 4KB\n  max: 1KiB\n', 'rs.yaml'));
    expect(err.problems.map((p) => p.field)).toEqual(['regionSize.min']);
  });

  it('refuses a mapping or a list used as a key, naming where', () => {
    const err = errorOf(() => parseConfig('dataPlane:\n  maxConnectionsPerUid: 4\n  ? [a]\n  : 1\n', 'key.yaml'));
    expect(err.problems).toEqual([{ field: 'dataPlane.?', line: 3, message: 'keys must be plain strings' }]);
  });

  it('reads unlimited and null as "no limit" or "unset", and removes duplicate ids', () => {
    const cfg = parseConfig('defaultQuota: { uid: unlimited, gid: { bytes: 1GiB, regions: null } }\nmetricsAddr: null\nlogLevel: null\nadminUids: [0, 7, 7]\n', 'ok.yaml');
    expect(cfg.defaultQuota).toEqual({ gid: { bytes: 1024 ** 3 } });
    expect('metricsAddr' in cfg || 'logLevel' in cfg).toBe(false);
    expect(cfg.adminUids).toEqual([0, 7]);
  });

  it('DEFAULT_CONFIG is the schema applied to an empty file', () => {
    expect(parseConfig('{}\n', 'empty.yaml')).toEqual(DEFAULT_CONFIG);
    expect(DEFAULT_CONFIG).toEqual({
      adminUids: [0],
      adminGids: [],
      allowNonAdminCreate: true,
      regionSize: { min: 4096, max: 16 * 1024 ** 3 },
      defaultQuota: { uid: { bytes: 1024 ** 3, regions: 64 } },
      maxGrantsPerRegion: 64,
      revocationGraceMs: 1000,
      audit: { sync: 'batch', windowMs: 10, maxEvents: 1000 },
      dataPlane: {
        maxConnectionsPerUid: 64,
        maxRequestsPerSecondPerUid: 1000,
        maxLeasesPerUid: 4096,
        maxConnectsPerSecondPerUid: 500,
        maxMalformedPerSecondPerUid: 20,
        refusalAuditIntervalSeconds: 10,
        stateLowWaterBytes: 64 * 1024 * 1024,
      },
    });
  });

  it('reload.ts takes its key lists from the schema: every key is reloadable or needs a restart, never both', () => {
    const err = errorOf(() => parseConfig('nope: 1\n', 'keys.yaml'));
    const allowed = /allowed here: (.*)\)$/.exec(err.problems[0]!.message)![1]!.split(', ');
    expect([...RELOADABLE_KEYS, ...RESTART_KEYS].sort()).toEqual([...allowed].sort());
    expect(RELOADABLE_KEYS.filter((k) => RESTART_KEYS.includes(k))).toEqual([]);
    expect(RESTART_KEYS).toEqual(['metricsAddr', 'audit', 'podIdentity']);
  });
});
