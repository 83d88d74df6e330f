// Doorbells on a mapped region (docs/ARCHITECTURE.md, "Region events"):
// notify every holder, wait for a notify without spinning or blocking the
// event loop. On memfd the broker handed this process the region's event
// page and doorbell with the lease; on kmod the region fd itself is the
// doorbell (the module's NOTIFY/WAIT ioctls and poll). Either way, from
// here on nothing goes through the broker.
import * as native from '../../native';
import { FailedPreconditionError, PermissionDeniedError } from './errors';
import type { RevocationEvent } from './mapped-region';

/** A notify (or several, coalesced): `seq` is the region's sequence now, `count` how many notifies since the one you passed. */
export interface NotifyEvent {
  /** The event's kind. */
  type: 'notify';
  /** The region's sequence now: pass it as `after` to the next wait(). */
  seq: number;
  /** How many notifies since the sequence the wait started from. */
  count: number;
}
/** The lease was revoked (grant revoked or expired, region deleted): no more events. */
export interface RevokedEvent {
  /** The event's kind. */
  type: 'revoked';
  /** Why: the broker's notice (or 'LEASE_LOST' after a reconnect). */
  reason: RevocationEvent['reason'];
}
/** The lease was released by this process: no more events. */
export interface ReleasedEvent {
  /** The event's kind. */
  type: 'released';
}
/** wait() reached its timeoutMs with the sequence unchanged. */
export interface TimeoutEvent {
  /** The event's kind. */
  type: 'timeout';
  /** The region's sequence, unchanged. */
  seq: number;
}
/** What wait() resolves with. */
export type RegionEvent = NotifyEvent | RevokedEvent | ReleasedEvent | TimeoutEvent;

/** Options of MappedRegion.wait(). */
export interface WaitOptions {
  /** The last sequence seen; the wait returns at once if the region's differs. Default: the last one this region object reported. */
  after?: number;
  /** Give up after this many ms with a 'timeout' event. Default: wait forever. */
  timeoutMs?: number;
  /** Abort the wait: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

type Bell = native.Doorbell | native.KernelDoorbell;

interface Waiter {
  after: number;
  settle: (ev: RegionEvent) => void;
}

/** @internal one per MappedRegion acquired with events; the region delegates to it. */
export class RegionEvents {
  readonly #bell: Bell | undefined;
  readonly #mayNotify: boolean;
  readonly #waiters = new Set<Waiter>();
  #lastSeen: number;
  #end: RevokedEvent | ReleasedEvent | undefined;
  /** The sequence when the lease ended (the doorbell is closed from then on). */
  #endSeq = 0;
  #polling = false;

  constructor(bell: Bell | undefined, mayNotify: boolean) {
    this.#bell = bell;
    this.#mayNotify = mayNotify;
    this.#lastSeen = bell ? bell.seq() : 0;
  }

  get enabled(): boolean {
    return this.#bell !== undefined;
  }

  get mayNotify(): boolean {
    return this.#bell !== undefined && this.#mayNotify;
  }

  /** The region's current sequence; once the lease ended, the sequence it ended at. */
  seq(): number {
    const bell = this.#require();
    return this.#end ? this.#endSeq : bell.seq();
  }

  notify(): number {
    const bell = this.#require();
    if (this.#end) {
      const how = this.#end.type === 'revoked' ? `revoked (${this.#end.reason})` : 'released';
      throw new FailedPreconditionError('FAILED_PRECONDITION', 'LEASE_ENDED', `this lease was ${how}: acquire the region again to notify`);
    }
    const refused = (): PermissionDeniedError =>
      new PermissionDeniedError('PERMISSION_DENIED', 'NOTIFY_NOT_ALLOWED', 'this lease may wait but not notify (acquire it read-write)');
    if (bell instanceof native.KernelDoorbell) {
      // The kernel decides (EPERM on a read-only grant opened without ALLOW_NOTIFY).
      try {
        return bell.notify();
      } catch (err) {
        if ((err as native.NativeError).code === 'EPERM') throw refused();
        throw err;
      }
    }
    if (!this.#mayNotify) throw refused();
    return bell.notify();
  }

  wait(options: WaitOptions = {}): Promise<RegionEvent> {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const { after, timeoutMs, signal } = options;
    if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) throw new TypeError('options.after must be a sequence number (integer >= 0)');
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs >= 0))) throw new TypeError('options.timeoutMs must be a number >= 0');
    this.#require();
    if (this.#end) return Promise.resolve(this.#end);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const w: Waiter = { after: after ?? this.#lastSeen, settle: () => undefined };
    const ready = this.#check(w.after);
    if (ready) return Promise.resolve(ready);
    return new Promise<RegionEvent>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => done(undefined, signal!.reason);
      const done = (ev: RegionEvent | undefined, err?: unknown): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#waiters.delete(w);
        this.#updatePolling();
        if (ev) resolve(ev);
        else reject(err);
      };
      w.settle = (ev) => done(ev);
      if (timeoutMs !== undefined) timer = setTimeout(() => done({ type: 'timeout', seq: this.#bell!.seq() }), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(w);
      this.#updatePolling();
    });
  }

  /** Every notify (coalesced) until the lease ends; the last event is 'revoked' when it was revoked. */
  async *events(options: { signal?: AbortSignal } = {}): AsyncGenerator<NotifyEvent | RevokedEvent, void, undefined> {
    // Started after the lease ended, the first wait() gives how it ended.
    let after = this.seq();
    for (;;) {
      const ev = await this.wait({ after, ...(options.signal ? { signal: options.signal } : {}) });
      if (ev.type === 'notify') {
        after = ev.seq;
        yield ev;
      } else {
        if (ev.type === 'revoked') yield ev;
        return;
      }
    }
  }

  /** The lease ended: every waiter wakes with `ev`, and the doorbell closes with the lease. */
  end(ev: RevokedEvent | ReleasedEvent): void {
    if (this.#end || !this.#bell) return;
    try {
      this.#endSeq = this.#bell.seq();
    } catch {
      // A kmod region fd the kernel already revoked: the last one seen.
      this.#endSeq = this.#lastSeen;
    }
    this.#end = ev;
    for (const w of [...this.#waiters]) w.settle(ev);
    this.#bell.close();
  }

  /** A notify event if the sequence moved past `after`, the end event if the lease ended. */
  #check(after: number): RegionEvent | undefined {
    if (this.#end) return this.#end;
    const bell = this.#bell!;
    let seq: number;
    if (bell instanceof native.KernelDoorbell) {
      seq = bell.seq();
      // The kernel revoked the grant (EPOLLHUP). The broker's notice, which
      // names the reason, normally arrives first (it precedes the kernel
      // revocation by the grace period); the kernel only knows "gone".
      if (bell.revoked()) return { type: 'revoked', reason: 'GRANT_REVOKED' };
    } else {
      // The broker rings with the page marked when it deletes the region: the
      // notice on the data connection follows, but waiters learn it now.
      if (bell.deleted()) return { type: 'revoked', reason: 'REGION_DELETED' };
      seq = bell.seq();
    }
    if (seq === after) return undefined;
    if (seq > this.#lastSeen) this.#lastSeen = seq;
    return { type: 'notify', seq, count: seq - after };
  }

  #onRing(): void {
    for (const w of [...this.#waiters]) {
      const ev = this.#check(w.after);
      if (ev) w.settle(ev);
    }
  }

  // Poll only while someone waits: an idle holder neither costs a wake-up
  // per notify nor keeps the process alive.
  #updatePolling(): void {
    const want = this.#waiters.size > 0 && !this.#end;
    if (want === this.#polling || !this.#bell || this.#bell.closed) return;
    this.#polling = want;
    if (want) this.#bell.start(() => this.#onRing());
    else this.#bell.stop();
  }

  #require(): Bell {
    if (!this.#bell) throw new FailedPreconditionError('FAILED_PRECONDITION', 'EVENTS_NOT_ACQUIRED', 'acquire the region with { events: true } to notify or wait');
    return this.#bell;
  }
}
