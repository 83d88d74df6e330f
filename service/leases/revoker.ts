// Taking access back, in the order that lets a well-behaved client never
// fault: first a notice on every affected data connection, then a grace
// period in which SDK clients detach and release, then the kernel revoke
// (kmod) for whatever is still mapped. A lease released during the grace
// period ends the wait early. The ending itself is the lease service's one
// end() (kernel revoke, audit event, forgetting the lease).
import type { LeaseRecord, LeaseService } from './lease-service';
import type { Logger } from '../logger';
import { processGone } from './process-liveness';

export type RevocationReason = 'GRANT_REVOKED' | 'GRANT_EXPIRED' | 'REGION_DELETED';

export interface LeaseNotifier {
  /** Sends a RevocationNotice to the connection holding the lease; false if none is connected. */
  notify(lease: LeaseRecord, reason: RevocationReason, graceMs: number): boolean;
}

export class Revoker {
  private notifier: LeaseNotifier | undefined;
  private readonly waiting = new Map<number, () => void>();

  /** Leases notified of a revocation and still inside their grace period (a metric). */
  get inFlight(): number {
    return this.waiting.size;
  }
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Infinity;
  private expiryHandler: (() => Promise<void>) | undefined;
  private closed = false;

  constructor(
    private readonly deps: {
      leases: LeaseService;
      graceMs: number;
      log: Logger;
      /**
       * The backend can take a mapping back (kmod). When it cannot (memfd), a
       * lease whose holder ignored the notice is not ended by the broker: the
       * holder still maps the memory, so the lease (and the region's quota
       * charge) stays until it releases or exits (issue 16 item 4).
       */
      enforced: boolean;
    },
  ) {
    // Any ending (a release, the holder's exit) ends the wait for that lease.
    deps.leases.onEnd((lease) => this.waiting.get(lease.id)?.());
  }

  setNotifier(n: LeaseNotifier): void {
    this.notifier = n;
  }

  setExpiryHandler(fn: () => Promise<void>): void {
    this.expiryHandler = fn;
  }

  /**
   * Notifies, waits up to the grace period, then ends every lease still
   * there. Returns how many holders had not released: on kmod the kernel
   * cut those mappings (the leases end); on memfd the holders keep them
   * (revocation is advisory there) and so do their leases, which callers report.
   */
  async revoke(leases: LeaseRecord[], reason: RevocationReason, then?: () => void): Promise<{ unreleased: number }> {
    const start = process.hrtime.bigint();
    const pending = leases.filter((l) => this.notifier?.notify(l, reason, this.deps.graceMs));
    if (pending.length > 0 && this.deps.graceMs > 0) {
      await new Promise<void>((resolve) => {
        let left = pending.length;
        const timer = setTimeout(done, this.deps.graceMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        for (const l of pending) {
          this.waiting.set(l.id, () => {
            this.waiting.delete(l.id);
            if (--left === 0) done();
          });
        }
      });
      for (const l of pending) this.waiting.delete(l.id);
    }
    let kernelRevoked = 0;
    let unreleased = 0;
    const actor = { pid: process.pid, uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
    for (const l of leases) {
      if (this.deps.leases.get(l.id) !== l) continue; // released by its holder meanwhile
      if (!this.deps.enforced) {
        // Advisory: the lease stays while its holder lives; one already gone ends here.
        if (processGone({ pid: l.pid, startTime: undefined })) this.deps.leases.end(l, 'HOLDER_EXITED', actor);
        else unreleased++;
        continue;
      }
      unreleased++;
      this.deps.leases.end(l, reason, actor);
      if (l.kernelGrantId !== null) kernelRevoked++;
    }
    then?.();
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (leases.length > 0) {
      this.deps.log.info(
        { reason, leases: leases.length, notified: pending.length, kernelRevoked, revocationMs: Math.round(ms * 1000) / 1000 },
        'revocation complete',
      );
    }
    return { unreleased };
  }

  /** Arms the expiry timer for a grant expiring at `at` (ms since the epoch). */
  scheduleExpiry(at: number | null): void {
    if (at === null || this.closed || at >= this.expiryAt) return;
    clearTimeout(this.expiryTimer);
    this.expiryAt = at;
    // setTimeout cannot wait longer than 2^31-1 ms; re-arm if further.
    const delay = Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1);
    this.expiryTimer = setTimeout(() => {
      this.expiryAt = Infinity;
      this.expiryTimer = undefined;
      void this.expiryHandler?.().catch((err: unknown) => this.deps.log.error({ err }, 'grant expiry failed'));
    }, delay);
    this.expiryTimer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.expiryTimer);
    for (const release of this.waiting.values()) release();
  }
}
