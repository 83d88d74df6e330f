// The revocation grace, as far as clients must know it. DeleteRegion and
// RevokeGrant answer once every holder let go or the broker's
// revocationGraceMs ran out (their reply reports what was still mapped), so
// a client's deadline for them must outlast the longest grace the broker
// accepts. One home for that bound: the configuration schema takes it as
// revocationGraceMs's maximum, the control client adds it to its deadline.

/** The longest revocation grace a broker may be configured with (1 h). */
export const MAX_REVOCATION_GRACE_MS = 3_600_000;

/** Control methods that wait for the revocation grace before they answer. */
export const METHODS_WAITING_FOR_GRACE: ReadonlySet<string> = new Set(['DeleteRegion', 'RevokeGrant']);
