// Read-only / read-write: 'ro' | 'rw' on the command line, in the broker's
// records and in the SDK; ACCESS_MODE_READ_ONLY | ACCESS_MODE_READ_WRITE on
// the wire (shmbroker.v1.AccessMode). The one place that converts.

/** Read-only ('ro') or read-write ('rw') access to a region. */
export type GrantMode = 'ro' | 'rw';

export type AccessModeName = 'ACCESS_MODE_READ_ONLY' | 'ACCESS_MODE_READ_WRITE';

const TO_WIRE: Record<GrantMode, AccessModeName> = { ro: 'ACCESS_MODE_READ_ONLY', rw: 'ACCESS_MODE_READ_WRITE' };

/** The AccessMode enum name for a mode. */
export function toAccessMode(mode: GrantMode): AccessModeName {
  return TO_WIRE[mode];
}

/**
 * The mode an AccessMode stands for; undefined for UNSPECIFIED, an unknown
 * enum number (proto-loader hands those over as numbers) or anything else.
 */
export function fromAccessMode(mode: unknown): GrantMode | undefined {
  if (mode === 'ACCESS_MODE_READ_ONLY') return 'ro';
  if (mode === 'ACCESS_MODE_READ_WRITE') return 'rw';
  return undefined;
}

/** 'ro' | 'rw' typed by a person (a CLI flag, an SDK option); undefined otherwise. */
export function parseGrantMode(text: unknown): GrantMode | undefined {
  return text === 'ro' || text === 'rw' ? text : undefined;
}

/** The message every side gives for a mode it cannot use. */
export const ACCESS_MODE_RULE = 'ACCESS_MODE_READ_ONLY or ACCESS_MODE_READ_WRITE';
