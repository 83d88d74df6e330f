// Which configuration keys a running broker takes on SIGHUP, and which need a
// restart. A reload is all or nothing like a start: the file is loaded and
// checked in full first (loadConfig); a file with any problem is refused and
// the running configuration stays. Keys that need a restart are reported
// (and logged) but not applied, so the running state never mixes two files.
//
// Reloaded on SIGHUP:
//   adminUids, adminGids     for connections accepted after the reload (a
//                            connection's admin bit is fixed when it opens)
//   allowNonAdminCreate, regionSize, defaultQuota, maxGrantsPerRegion,
//   revocationGraceMs, dataPlane, auditRetentionDays, logLevel
// Need a restart:
//   metricsAddr              the listener is bound at start
//   podIdentity              its API watch is set up at start
//   audit                    the group-commit window and sync mode are set at start
import type { BrokerConfig } from './config';
import { RELOAD, type ConfigKey } from './config-schema';

// The lists come from the schema (config-schema.ts, RELOAD), so a new key
// cannot be left out of either.
const keysThat = (how: 'reload' | 'restart') => (Object.keys(RELOAD) as ConfigKey[]).filter((k) => RELOAD[k] === how);

export const RELOADABLE_KEYS: readonly ConfigKey[] = keysThat('reload');

export const RESTART_KEYS: readonly ConfigKey[] = keysThat('restart');

export interface ReloadResult {
  /** Keys whose new values are in force. */
  applied: string[];
  /** Keys that changed in the file but keep their running value until a restart. */
  needRestart: string[];
}

/** The top-level keys whose values differ between two configurations. */
export function changedKeys(running: BrokerConfig, next: BrokerConfig): Array<keyof BrokerConfig> {
  const keys = new Set([...Object.keys(running), ...Object.keys(next)] as Array<keyof BrokerConfig>);
  return [...keys].filter((k) => JSON.stringify(running[k]) !== JSON.stringify(next[k])).sort();
}

/** Splits the changed keys into what a reload applies and what waits for a restart. */
export function planReload(running: BrokerConfig, next: BrokerConfig): ReloadResult {
  const changed = changedKeys(running, next);
  return {
    applied: changed.filter((k) => (RELOADABLE_KEYS as readonly string[]).includes(k)),
    needRestart: changed.filter((k) => (RESTART_KEYS as readonly string[]).includes(k)),
  };
}
