// What the default (text) tables show instead of raw numbers: ages like
// kubectl's AGE column, and user names for uids where this host resolves
// them. -o json and -o wide keep the exact timestamps and ids.
import { spawnSync } from 'node:child_process';

type Timestamp = { seconds: number | string; nanos: number } | null | undefined;

function ms(ts: NonNullable<Timestamp>): number {
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
}

/** A duration as kubectl prints it: 45s, 12m, 5h, 3d (two units below a day: 2m5s, 3h4m). */
export function formatDuration(millis: number): string {
  const s = Math.max(0, Math.floor(millis / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** Time since `ts` ("-" when unset). */
export function formatAge(ts: Timestamp, now = Date.now()): string {
  return ts ? formatDuration(now - ms(ts)) : '-';
}

/** Time until `ts` ("never" when unset, "expired" once past). */
export function formatTimeLeft(ts: Timestamp, now = Date.now()): string {
  if (!ts) return 'never';
  const left = ms(ts) - now;
  return left <= 0 ? 'expired' : `in ${formatDuration(left)}`;
}

/**
 * uid -> user name through the host's name service (getent passwd, so
 * LDAP/sssd users resolve as they do for ls), in one lookup for the whole
 * table. A uid without an entry (common in containers) stays a number.
 */
export function userNames(uids: Iterable<number>): Map<number, string> {
  const wanted = [...new Set(uids)].filter((u) => Number.isInteger(u) && u >= 0);
  const out = new Map<number, string>();
  if (wanted.length === 0) return out;
  const r = spawnSync('getent', ['passwd', ...wanted.map(String)], { encoding: 'utf8', timeout: 2000 });
  // getent exits 2 when some key is missing, yet prints the ones it found.
  for (const line of (r.stdout ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && /^\d+$/.test(f[2]!)) out.set(Number(f[2]), f[0]!);
  }
  return out;
}

/** "alice" where resolvable, else the uid as a number. */
export function userLabel(names: Map<number, string>, uid: number): string {
  return names.get(uid) ?? String(uid);
}
