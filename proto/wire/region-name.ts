// The region name rule, the same on both sides of the wire: the SDK refuses
// a bad name before sending it, the broker refuses it again (a client is
// never trusted to have checked).

/** A region id: 1-63 characters of [a-z0-9._-], starting with a letter or digit. */
export const REGION_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The rule in words, for messages. */
export const REGION_ID_RULE = 'use 1-63 characters of [a-z0-9._-], starting with a letter or digit';

export function isValidRegionId(id: unknown): id is string {
  return typeof id === 'string' && REGION_ID_PATTERN.test(id);
}
