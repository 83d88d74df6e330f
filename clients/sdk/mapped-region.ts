// A region mapped into this process. Its buffer is plain memory: reads and
// writes never involve the broker. On revocation (or release) the buffer is
// detached first, so JavaScript sees a zero-length buffer, never a fault.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as native from '../../native';
import { RegionEvents, type NotifyEvent, type RegionEvent, type RevokedEvent, type WaitOptions } from './region-events';
import type { EventReason, GrantMode } from '../../proto/wire';

/** 'ro' or 'rw'. */
export type Mode = GrantMode;

/** Why a lease was revoked, and how long the broker waits for the release before it cuts the mapping off. */
export interface RevocationEvent {
  /**
   * 'GRANT_REVOKED', 'GRANT_EXPIRED' or 'REGION_DELETED' (the broker's
   * notice), or 'LEASE_LOST' (the SDK's own: after a reconnect the broker no
   * longer knew the lease).
   */
  reason: Extract<EventReason, 'GRANT_REVOKED' | 'GRANT_EXPIRED' | 'REGION_DELETED'> | 'LEASE_LOST';
  /** Milliseconds until the broker revokes in the kernel. */
  graceMs: number;
}

/** The events a MappedRegion emits, with their listener arguments: `region.on('revoked', (e) => ...)`. */
export interface MappedRegionEvents {
  /** The lease was revoked; `buffer` is already detached (zero-length). */
  revoked: [event: RevocationEvent];
}

/** What BrokerClient.acquire() knows about a region it maps. */
interface RegionInit {
  name: string;
  size: number;
  mode: Mode;
  backend: string;
  grant: string;
  leaseId: number;
  fd: number;
  mapping: native.Mapping;
  onRelease: (region: MappedRegion) => Promise<void>;
  doorbell?: native.Doorbell | native.KernelDoorbell;
  mayNotify?: boolean;
}

/** The SDK's internal access to a region (see the static block of MappedRegion); not part of the package's API. */
export interface SdkRegionAccess {
  create(init: RegionInit): MappedRegion;
  /** The fd this process holds, offered back after a broker restart. */
  fd(region: MappedRegion): number;
  /** The broker revoked the lease. */
  revoke(region: MappedRegion, event: RevocationEvent): void;
}
// Assigned by MappedRegion's static block, which runs when this module loads.
export let sdkRegionAccess: SdkRegionAccess;

/**
 * A region mapped into this process, from BrokerClient.acquire(). Release it
 * with release(), or let `await using` (Symbol.asyncDispose) or `using`
 * (Symbol.dispose) do it at the end of the block.
 */
export class MappedRegion extends EventEmitter<MappedRegionEvents> {
  /** The region id, e.g. 'frames'. */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** The access this lease has. */
  readonly mode: Mode;
  /** 'memfd' or 'kmod'. */
  readonly backend: string;
  /** Control-plane grant that allowed the acquire ("" for owner/admin). */
  readonly grant: string;
  readonly #leaseId: number;
  #fd: number;
  #mapping: native.Mapping;
  #revoked = false;
  #released = false;
  readonly #onRelease: (region: MappedRegion) => Promise<void>;
  readonly #events: RegionEvents;

  // The SDK's own handles on a region (create, the fd, revoke) are not
  // members anyone can call: the static block
  // hands them to sdkRegionAccess below, which only the SDK's modules import
  // (the package's entry, index.ts, does not export it).
  static {
    sdkRegionAccess = {
      create: (init) => new MappedRegion(init),
      fd: (r) => r.#fd,
      revoke: (r, event) => r.#revoke(event),
    };
  }

  private constructor(init: RegionInit) {
    super();
    this.name = init.name;
    this.size = init.size;
    this.mode = init.mode;
    this.backend = init.backend;
    this.grant = init.grant;
    this.#leaseId = init.leaseId;
    this.#fd = init.fd;
    this.#mapping = init.mapping;
    this.#onRelease = init.onRelease;
    this.#events = new RegionEvents(init.doorbell, init.mayNotify ?? false);
  }

  /** True when acquired with `events: true`: notify (if mayNotify), wait and events work. */
  get eventsEnabled(): boolean {
    return this.#events.enabled;
  }

  /** True when this lease may notify (acquired read-write with events). */
  get mayNotify(): boolean {
    return this.#events.mayNotify;
  }

  /** The region's event sequence: how many notifies so far (once released or revoked, the sequence at that moment). */
  get seq(): number {
    return this.#events.seq();
  }

  /** Wakes every waiter on the region, in every process. Returns the new sequence. Never goes through the broker. Throws LEASE_ENDED once released or revoked. */
  notify(): number {
    return this.#events.notify();
  }

  /**
   * Waits until the region's sequence moves past `after` (no lost wake-up:
   * read `seq` before you look at the memory, pass it here), the lease ends
   * ('revoked' / 'released'), or `timeoutMs` passes ('timeout').
   */
  wait(options?: WaitOptions): Promise<RegionEvent> {
    return this.#events.wait(options);
  }

  /** `for await (const ev of region.events({ signal }))`: notifies (coalesced), then 'revoked' if the lease is revoked. */
  events(options?: { signal?: AbortSignal }): AsyncGenerator<NotifyEvent | RevokedEvent, void, undefined> {
    return this.#events.events(options);
  }

  /** The mapped memory; zero-length once released or revoked. */
  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this.#mapping.buffer;
  }

  /** The broker's id of this lease (it names the lease in the audit trail). */
  get leaseId(): number {
    return this.#leaseId;
  }

  /** True once the broker revoked the lease (grant revoked or expired, region deleted): `buffer` is detached. */
  get revoked(): boolean {
    return this.#revoked;
  }

  /** True once the region is unmapped: released by this process, or revoked. */
  get released(): boolean {
    return this.#released;
  }

  /** `await using region = await client.acquire(...)`: releases when the block ends. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /**
   * `using region = await client.acquire(...)`: unmaps at once when the block
   * ends (the memory is gone from this process synchronously); the release
   * message to the broker is sent without waiting for its reply.
   */
  [Symbol.dispose](): void {
    this.release().catch(() => undefined);
  }

  /** Unmaps the region and tells the broker. Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#unmap();
    this.#events.end({ type: 'released' });
    await this.#onRelease(this);
  }

  /** The broker revoked the lease: detach, unmap, then tell the application. */
  #revoke(event: RevocationEvent): void {
    if (this.#released) return;
    this.#revoked = true;
    this.#unmap();
    this.#events.end({ type: 'revoked', reason: event.reason });
    this.emit('revoked', event);
  }

  #unmap(): void {
    this.#released = true;
    this.#mapping.release();
    if (this.#fd >= 0) {
      fs.closeSync(this.#fd);
      this.#fd = -1;
    }
  }
}
