// What `region delete` and `grant revoke` say about leases still held when
// the revocation completed (the returned Region's or Grant's output-only
// lease_count and revocation_advisory): on memfd those holders keep their
// mapping, revocation there is advisory, and the command says so, not only
// the README (issue 16 item 7). A deleted region still held stays DELETING,
// charged to its owner, until its last lease ends (item 4).
export interface RevocationFields {
  leaseCount?: number;
  revocationAdvisory?: boolean;
}

export function describeOutcome(o: RevocationFields, deleting = false): string {
  const n = o.leaseCount ?? 0;
  const leases = `${n} lease${n === 1 ? '' : 's'} still mapped`;
  if (o.revocationAdvisory) {
    const wait = deleting && n > 0 ? '; the region stays DELETING, and charged to its owner, until they release or exit' : '';
    return `; ${leases} (memfd backend: revocation is advisory, a holder that ignores the notice keeps its mapping)${wait}`;
  }
  return n === 0 ? '' : `; ${leases}, cut off by the kernel`;
}
