// Region doorbells, the broker's side (docs/ARCHITECTURE.md, "Region
// events"). The broker's whole part in events happens at acquire time: it
// hands each lease that asked for events two fds, the region's event page
// (read-write when the lease may notify, read-only otherwise) and the
// region's doorbell eventfd. Notifies and waits never reach the broker.
//
// A region has a doorbell only while it has leases that asked for one (two
// fds per held region in the broker, not per region on record); the last
// such lease ending closes it.
import * as fs from 'node:fs';
import * as native from '../../native';

/** Event page layout (little-endian), mirrored by every client. */
export const EVENT_PAGE = {
  size: 4096,
  magic: 0x56454253, // "SBEV"
  version: 1,
  seqOffset: 8,
  flagsOffset: 16,
  flagDeleted: 1,
} as const;

interface Bell {
  page: number;
  bell: number;
  leases: Set<number>;
}

export interface DoorbellFds {
  /** Event page fd for this lease (the caller closes it once sent). */
  page: number;
  /** Doorbell eventfd for this lease (the caller closes it once sent). */
  bell: number;
}

export class Doorbells {
  private readonly byRegion = new Map<string, Bell>();
  private readonly regionOfLease = new Map<number, string>();

  /** Fresh fds on the region's doorbell for a lease; creates the doorbell on first use. */
  open(region: string, mayNotify: boolean): DoorbellFds {
    const b = this.byRegion.get(region) ?? this.create(region);
    // A fresh open file description, so a wait-only holder's page fd is
    // O_RDONLY and cannot be mapped writable (the memfd is 0600, root's).
    const page = fs.openSync(`/proc/self/fd/${b.page}`, mayNotify ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
    try {
      // An eventfd is an anonymous inode: it cannot be re-opened, only duplicated.
      return { page, bell: native.dupFd(b.bell) };
    } catch (err) {
      fs.closeSync(page);
      throw err;
    }
  }

  /** Records that `leaseId` holds the region's doorbell (after open() succeeded and the lease exists). */
  attach(region: string, leaseId: number): void {
    const b = this.byRegion.get(region);
    if (!b) return;
    b.leases.add(leaseId);
    this.regionOfLease.set(leaseId, region);
  }

  /** A lease ended: the region's doorbell closes with its last lease. */
  leaseEnded(leaseId: number): void {
    const region = this.regionOfLease.get(leaseId);
    if (region === undefined) return;
    this.regionOfLease.delete(leaseId);
    const b = this.byRegion.get(region);
    if (!b) return;
    b.leases.delete(leaseId);
    if (b.leases.size === 0) this.dispose(region, b);
  }

  /** Closes the region's doorbell if no lease holds it (an acquire failed after open()). */
  closeIfIdle(region: string): void {
    const b = this.byRegion.get(region);
    if (b && b.leases.size === 0) this.dispose(region, b);
  }

  /**
   * The region is being deleted: mark the page and ring, so every waiter
   * wakes and sees it even before its data connection delivers the
   * revocation notice. Idempotent.
   */
  regionDeleted(region: string): void {
    const b = this.byRegion.get(region);
    if (!b) return;
    const flags = Buffer.alloc(4);
    flags.writeUInt32LE(EVENT_PAGE.flagDeleted);
    fs.writeSync(b.page, flags, 0, 4, EVENT_PAGE.flagsOffset);
    ring(b.bell);
  }

  /** Doorbells currently held open (for status and tests). */
  get size(): number {
    return this.byRegion.size;
  }

  close(): void {
    for (const [region, b] of [...this.byRegion]) this.dispose(region, b);
    this.regionOfLease.clear();
  }

  private create(region: string): Bell {
    const page = native.memfdCreate(`shmbroker-events:${region}`, EVENT_PAGE.size);
    let bell = -1;
    try {
      const header = Buffer.alloc(8);
      header.writeUInt32LE(EVENT_PAGE.magic, 0);
      header.writeUInt32LE(EVENT_PAGE.version, 4);
      fs.writeSync(page, header, 0, header.length, 0);
      bell = native.eventfdCreate();
    } catch (err) {
      fs.closeSync(page);
      throw err;
    }
    const b: Bell = { page, bell, leases: new Set() };
    this.byRegion.set(region, b);
    return b;
  }

  private dispose(region: string, b: Bell): void {
    this.byRegion.delete(region);
    for (const id of b.leases) this.regionOfLease.delete(id);
    fs.closeSync(b.page);
    fs.closeSync(b.bell);
  }
}

/** The broker's own ring (region deleted): the same write a notifier makes. */
function ring(bell: number): void {
  const one = Buffer.alloc(8);
  one.writeBigUInt64LE(1n);
  try {
    fs.writeSync(bell, one);
  } catch (err) {
    // EAGAIN: a holder jammed the counter; reading it back to 0 is harmless
    // to edge-triggered waiters. Ring again once.
    if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    fs.readSync(bell, Buffer.alloc(8));
    fs.writeSync(bell, one);
  }
}
