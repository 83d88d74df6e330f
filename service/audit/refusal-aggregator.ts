// Repeated refusals become one audit event per interval, so a flood of
// refused attempts cannot turn into a flood of disk writes, and nothing
// refused goes unrecorded (auditd's rate limit with its "lost" counter is the
// model; here nothing is lost, it is counted).
//
// Per (uid, action, reason, resource): the first INDIVIDUAL_PER_INTERVAL refusals of an
// interval are written as ordinary events (so an occasional refusal reads as
// it always did); the ones after them in the same interval are only
// counted, and when the interval ends one event with the same action and
// reason is written with details.count = how many refusals it stands for
// (and details.aggregated = true). Every refusal is therefore in exactly one
// event, and the number of refusals of a kind is
//   SUM(COALESCE(json_extract(details, '$.count'), 1))
// over its events. Rows written are at most INDIVIDUAL_PER_INTERVAL + 1 per
// kind, uid and interval, however many refusals there were. A uid that
// spreads its refusals over many resources (made-up region names) gets at
// most KINDS_PER_UID kinds of its own per interval; beyond that its refusals
// share one kind per (action, reason) with resource "*".
import type { AuditActor } from './audit-trail';

export interface Refusal {
  actor: AuditActor;
  action: string;
  resource: string;
  reason: string;
  details?: Record<string, unknown>;
}

/** Refusals of one kind written one by one per interval before counting starts. */
export const INDIVIDUAL_PER_INTERVAL = 10;
/** Distinct (action, reason, resource) kinds one uid gets per interval before they are pooled. */
export const KINDS_PER_UID = 32;

interface Open {
  last: Refusal;
  since: number;
  /** Refusals written one by one this interval. */
  written: number;
  /** Refusals counted after those (written at the end of the interval). */
  more: number;
}

export class RefusalAggregator {
  readonly #open = new Map<string, Open>();
  readonly #kinds = new Map<number, number>();
  readonly #timer: NodeJS.Timeout;

  /**
   * @param write appends one DENIED event (the caller's audited transaction);
   *   it may throw: a refusal stands whether or not it could be recorded.
   */
  constructor(
    private readonly write: (r: Refusal, count?: { count: number; intervalMs: number; since: string }) => void,
    readonly intervalMs: number,
  ) {
    this.#timer = setInterval(() => this.flush(), intervalMs);
    this.#timer.unref();
  }

  refuse(r: Refusal): void {
    let key = `${r.actor.uid}\0${r.action}\0${r.reason}\0${r.resource}`;
    let open = this.#open.get(key);
    if (!open) {
      const kinds = this.#kinds.get(r.actor.uid) ?? 0;
      if (kinds >= KINDS_PER_UID) {
        r = { ...r, resource: '*' };
        key = `${r.actor.uid}\0${r.action}\0${r.reason}\0*`;
        open = this.#open.get(key);
      } else {
        this.#kinds.set(r.actor.uid, kinds + 1);
      }
    }
    if (!open) {
      open = { last: r, since: Date.now(), written: 0, more: 0 };
      this.#open.set(key, open);
    }
    if (open.written < INDIVIDUAL_PER_INTERVAL) {
      open.written++;
      this.write(r);
      return;
    }
    open.more++;
    open.last = r;
  }

  /** Writes the counted refusals of every open kind and starts a new interval. */
  flush(): void {
    const open = [...this.#open.values()];
    this.#open.clear();
    this.#kinds.clear();
    for (const o of open) {
      if (o.more === 0) continue;
      this.write(o.last, { count: o.more, intervalMs: this.intervalMs, since: new Date(o.since).toISOString() });
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
