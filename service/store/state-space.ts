// Free space on the state filesystem, against a low-water mark: below it the
// broker keeps what is left for admins (create, delete, revoke, read and
// verify the audit trail) and refuses non-admin work that would write state
// (STATE_LOW_SPACE), so a flood of unprivileged work cannot leave root
// unable to administer the broker. statfs is cached for a second: it is
// asked on the acquire path.
import * as fs from 'node:fs';
import { ResourceExhaustedError } from '../errors';

export class StateSpace {
  #checkedAt = 0;
  #free = Number.MAX_SAFE_INTEGER;

  constructor(
    readonly stateDir: string,
    readonly lowWaterBytes: number,
  ) {}

  /** Bytes free for the broker (f_bavail), at most a second old. */
  free(now = Date.now()): number {
    if (now - this.#checkedAt >= 1000) {
      const st = fs.statfsSync(this.stateDir);
      this.#free = Number(st.bavail) * Number(st.bsize);
      this.#checkedAt = now;
    }
    return this.#free;
  }

  /** True when free space is below the low-water mark. */
  low(now = Date.now()): boolean {
    return this.lowWaterBytes > 0 && this.free(now) < this.lowWaterBytes;
  }

  /**
   * The one STATE_LOW_SPACE refusal (acquire, create, grant): for a
   * non-admin below the low-water mark, else undefined. Admins are served.
   */
  refusalFor(caller: { isAdmin: boolean }): ResourceExhaustedError | undefined {
    if (caller.isAdmin || !this.low()) return undefined;
    return new ResourceExhaustedError('STATE_LOW_SPACE', `the state filesystem has ${this.free()} bytes free, below the low-water mark ${this.lowWaterBytes}: only admins are served`);
  }
}
