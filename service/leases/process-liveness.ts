// Is the process that held a lease still there? A pid alone can be reused,
// so a process is identified by its pid and its start time (field 22 of
// /proc/PID/stat, in clock ticks since boot), read when it connected.
import * as fs from 'node:fs';

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot; undefined if it could not be read. */
  startTime: number | undefined;
}

function readStat(pid: number): { state: string; startTime: number } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain
  // spaces or parentheses: parse from the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0] ?? '';
  const startTime = Number(rest[19]);
  return Number.isFinite(startTime) ? { state, startTime } : undefined;
}

export function processIdentity(pid: number): ProcessIdentity {
  return { pid, startTime: readStat(pid)?.startTime };
}

/** True once the process has exited (or is a zombie), or its pid now belongs to another process. */
export function processGone(p: ProcessIdentity): boolean {
  const stat = readStat(p.pid);
  if (!stat) return true;
  if (stat.state === 'Z' || stat.state === 'X') return true;
  return p.startTime !== undefined && stat.startTime !== p.startTime;
}
