// The changes WatchRegions streams (docs/ARCHITECTURE.md, "Region events",
// Watch): every committed change to a region or grant gets the next resource
// version and goes to every open watch, and the last `capacity` changes are
// kept so a watch can resume from a version it saw. Versions are opaque
// strings "EPOCH.N": EPOCH names this broker run, so a version from before a
// restart (when the in-memory window is gone) is refused as expired rather
// than silently skipping what happened meanwhile.
import { InvalidArgumentError, OutOfRangeError } from '../errors';
import type { GrantRecord } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One committed change, as the region manager reports it. */
export interface RegionChange {
  type: WatchEventType;
  region: RegionRecord;
  /** Set for a grant event; absent for a region event. */
  grant?: GrantRecord;
  /** The region's grants when the change happened (who may see it). */
  grants: readonly GrantRecord[];
}

export interface LoggedChange extends RegionChange {
  version: number;
}

export class RegionWatch {
  readonly epoch = Date.now().toString(36);
  #version = 0;
  readonly #log: LoggedChange[] = [];
  readonly #subscribers = new Set<(c: LoggedChange) => void>();

  constructor(private readonly capacity = 4096) {}

  /** Records a committed change and hands it to every open watch. */
  publish(change: RegionChange): void {
    const c: LoggedChange = { ...change, version: ++this.#version };
    this.#log.push(c);
    if (this.#log.length > this.capacity) this.#log.shift();
    for (const s of [...this.#subscribers]) s(c);
  }

  /** The version string of version number n in this run. */
  token(n: number = this.#version): string {
    return `${this.epoch}.${n}`;
  }

  /** The kept changes after `token`; OUT_OF_RANGE when the window no longer reaches back to it. */
  since(token: string): LoggedChange[] {
    const m = /^([0-9a-z]+)\.(\d+)$/.exec(token);
    if (!m || token.length > 40) {
      throw new InvalidArgumentError('INVALID_RESOURCE_VERSION', `resource_version must be one from a WatchRegionsResponse, got ${JSON.stringify(token.slice(0, 40))}`);
    }
    const n = Number(m[2]);
    const oldest = this.#log.length ? this.#log[0]!.version - 1 : this.#version;
    if (m[1] !== this.epoch || n < oldest || n > this.#version) {
      throw new OutOfRangeError(
        'WATCH_VERSION_EXPIRED',
        `resource_version ${token} is no longer kept (current ${this.token()}${m[1] === this.epoch ? `, oldest kept ${this.token(oldest)}` : ', from an earlier broker run'}): watch again without one`,
      );
    }
    return this.#log.filter((c) => c.version > n);
  }

  /** Calls fn with every change from now on; returns the unsubscribe function. */
  subscribe(fn: (c: LoggedChange) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  get watchers(): number {
    return this.#subscribers.size;
  }
}
