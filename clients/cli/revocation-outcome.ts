// What `region delete` and `grant revoke` say about leases that were still
// mapped when the revocation completed (the broker's trailing metadata
// shmbroker-leases-still-mapped / shmbroker-revocation-advisory): on memfd
// those holders keep their mapping, revocation there is advisory, and the
// command says so, not only the README (issue 16 item 7).
export function outcome(trailers: Record<string, string>): { leasesStillMapped: number; revocationAdvisory: boolean } {
  return {
    leasesStillMapped: Number(trailers['shmbroker-leases-still-mapped'] ?? 0),
    revocationAdvisory: trailers['shmbroker-revocation-advisory'] === 'true',
  };
}

export function describeOutcome(trailers: Record<string, string>): string {
  const o = outcome(trailers);
  const n = `${o.leasesStillMapped} lease${o.leasesStillMapped === 1 ? '' : 's'} still mapped`;
  if (o.revocationAdvisory) {
    return `; ${n} (memfd backend: revocation is advisory, a holder that ignores the notice keeps its mapping)`;
  }
  return o.leasesStillMapped === 0 ? '' : `; ${n}, cut off by the kernel`;
}
