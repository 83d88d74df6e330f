// A region mapped into this process. Its buffer is plain memory: reads and
// writes never involve the broker. On revocation (or release) the buffer is
// detached first, so JavaScript sees a zero-length buffer, never a fault.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as native from '../../native';

export type Mode = 'ro' | 'rw';

export interface RevocationEvent {
  reason: string;
  graceMs: number;
}

export class MappedRegion extends EventEmitter {
  readonly name: string;
  readonly size: number;
  readonly mode: Mode;
  readonly backend: string;
  /** Control-plane grant that allowed the acquire ("" for owner/admin). */
  readonly grant: string;
  #leaseId: number;
  #fd: number;
  #mapping: native.Mapping;
  #revoked = false;
  #released = false;
  readonly #onRelease: (region: MappedRegion) => Promise<void>;

  /** @internal created by BrokerClient.acquire() */
  constructor(init: {
    name: string;
    size: number;
    mode: Mode;
    backend: string;
    grant: string;
    leaseId: number;
    fd: number;
    mapping: native.Mapping;
    onRelease: (region: MappedRegion) => Promise<void>;
  }) {
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
  }

  /** The mapped memory; zero-length once released or revoked. */
  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this.#mapping.buffer;
  }

  get leaseId(): number {
    return this.#leaseId;
  }

  /** @internal */
  set leaseId(id: number) {
    this.#leaseId = id;
  }

  /** @internal the fd this process holds, offered back after a broker restart */
  get fd(): number {
    return this.#fd;
  }

  get revoked(): boolean {
    return this.#revoked;
  }

  get released(): boolean {
    return this.#released;
  }

  /** Unmaps the region and tells the broker. Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#unmap();
    await this.#onRelease(this);
  }

  /** @internal the broker revoked the lease: detach, unmap, then tell the application. */
  revoke(event: RevocationEvent): void {
    if (this.#released) return;
    this.#revoked = true;
    this.#unmap();
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
