// Where region memory lives. The broker talks to one backend, chosen at
// start (--backend auto|kmod|memfd); both implement this interface, and
// each states plainly what it can and cannot promise.
import { InvalidArgumentError } from '../errors';
import type { GrantMode } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';

export const PAGE_BYTES = 4096;
export const HUGEPAGE_BYTES = 2 * 1024 * 1024;

/**
 * A region is whole pages: 4 KiB ones, or 2 MiB ones with hugepages. The one
 * check of it, used by the region manager before allocating and by a backend
 * that allocates itself (memfd).
 */
export function checkAlignment(sizeBytes: number, hugepages: boolean): void {
  if (sizeBytes % (hugepages ? HUGEPAGE_BYTES : PAGE_BYTES) !== 0) {
    throw new InvalidArgumentError(
      'SIZE_NOT_ALIGNED',
      `size_bytes ${sizeBytes} must be a multiple of ${hugepages ? '2 MiB with hugepages' : '4096 (the page size)'}`,
    );
  }
}

export type BackendKind = 'memfd' | 'kmod';

export interface BackendGuarantees {
  /** A revoked client loses its existing mapping (not only new acquires). */
  revocationEnforced: boolean;
  /** Region memory survives a broker crash or restart without help from clients. */
  restartSurvival: boolean;
  /** A read-only grantee cannot get write access by any means. */
  readOnlyEnforced: boolean;
  /** Plain-language limits, shown by `shmbroker status`. */
  limitations: string[];
}

export interface CreateOptions {
  hugepages: boolean;
  /** -1 for no preference. */
  numaNode: number;
}

export interface OpenedRegion {
  /** A new fd for the client; the caller closes it once sent. */
  fd: number;
  /** Kernel grant id (kmod), to revoke later. */
  kernelGrantId?: string;
}

export interface Backend {
  readonly kind: BackendKind;
  /**
   * True when the region fd itself is the region's doorbell (kmod: the
   * module's NOTIFY/WAIT ioctls and poll on the grant fd), so the broker
   * hands out no event page or eventfd (docs/ARCHITECTURE.md, "Region events").
   */
  readonly kernelEvents: boolean;
  readonly guarantees: BackendGuarantees;
  /** Allocates a region; returns the identity to record (RegionRecord.backendRef). */
  create(name: string, sizeBytes: number, options: CreateOptions): string;
  /**
   * After a (re)start: takes over the regions the database knows. Returns the
   * names whose memory is gone. Backend memory the database does not know is
   * released.
   */
  adopt(regions: RegionRecord[]): { lost: string[]; adopted: string[] };
  /**
   * Opens a new fd on the region for a client, read-only or read-write.
   * mayNotify: the lease may ring the region's doorbell; where the fd itself
   * is the doorbell (kmod, `kernelEvents`), the kernel then accepts NOTIFY on
   * a read-only fd (read-write ones always may).
   */
  open(region: RegionRecord, mode: GrantMode, options?: { mayNotify?: boolean }): OpenedRegion;
  /** Cuts off one client's fd and mappings (kmod); a no-op where impossible. */
  revoke(kernelGrantId: string): void;
  /** Releases the region's memory. Idempotent. */
  destroy(region: RegionRecord): void;
  /**
   * A client offers back an fd it held across a broker restart. Returns true
   * when the fd is this region's memory and the region is adopted again.
   */
  offer(region: RegionRecord, fd: number): boolean;
  /**
   * Regions this backend can hold at most, where something other than memory
   * bounds it (memfd: one broker fd per region, so RLIMIT_NOFILE; kmod: the
   * module's max_regions, which an admin may change at any time); undefined
   * where nothing says.
   */
  regionCeiling(): RegionCeiling | undefined;
  close(): void;
}

/** The most regions a backend can hold. */
export interface RegionCeiling {
  regions: number;
  /** What sets it, in words (status prints it beside the number). */
  source: string;
}
