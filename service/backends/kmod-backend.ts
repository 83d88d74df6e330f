// The kernel backend: regions live in shmbroker.ko (/dev/shmbroker). The
// kernel enforces read-only on the grant's own inode, revokes mappings for
// real, charges pages to the creator's memory cgroup, and keeps regions
// when the broker dies, so a restarted broker re-adopts them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import type { Backend, BackendGuarantees, CreateOptions, OpenedRegion, RegionCeiling } from './backend';
import { FailedPreconditionError, InvalidArgumentError, ResourceExhaustedError } from '../errors';
import type { GrantMode } from '../store/grant-store';
import type { Logger } from '../logger';
import type { RegionRecord } from '../store/region-store';

export const KMOD_DEVICE = '/dev/shmbroker';
// The module's limits, readable by anyone (kmod/README.md "Module parameters").
export const KMOD_PARAMS = '/sys/module/shmbroker/parameters';

/** A numeric module parameter (sysfs), or null where it cannot be read. */
function readParam(dir: string, name: string): number | null {
  try {
    const v = Number(fs.readFileSync(path.join(dir, name), 'utf8').trim());
    return Number.isSafeInteger(v) ? v : null;
  } catch {
    return null;
  }
}

/** The module's caps as one line for `status`, or null where sysfs does not say. */
export function kernelCaps(dir = KMOD_PARAMS): string | null {
  const total = readParam(dir, 'max_total_bytes');
  const region = readParam(dir, 'max_region_bytes');
  if (total === null || region === null) return null;
  return `the kernel module caps all regions together at ${total} bytes and one region at ${region} bytes ` +
    `(${dir}); region pages are unswappable and invisible to the OOM killer, so the broker's memory cgroup ` +
    'limit is the real bound';
}

export class KmodBackend implements Backend {
  readonly kind = 'kmod' as const;
  readonly kernelEvents = true;
  readonly guarantees: BackendGuarantees = {
    revocationEnforced: true,
    restartSurvival: true,
    readOnlyEnforced: true,
    limitations: [
      'regions do not survive a reboot or an unload of the kernel module',
      ...[kernelCaps()].filter((l): l is string => l !== null),
    ],
  };

  private readonly device: native.KmodDevice;
  /** The device fd whose flock says this broker owns the module's regions (ownDevice). */
  private readonly ownership: number;

  constructor(
    private readonly log: Logger,
    devicePath = KMOD_DEVICE,
    private readonly paramsDir = KMOD_PARAMS,
  ) {
    try {
      this.device = native.KmodDevice.open(devicePath);
    } catch (err) {
      // The module checks CAP_IPC_LOCK at open (kmod/README.md), on top of the node's 0600.
      if ((err as native.NativeError).code === 'EPERM') {
        throw new Error(`${(err as Error).message}: opening ${devicePath} needs CAP_IPC_LOCK`);
      }
      throw err;
    }
    try {
      this.ownership = ownDevice(devicePath);
    } catch (err) {
      this.device.close();
      throw err;
    }
  }

  create(_name: string, sizeBytes: number, options: CreateOptions): string {
    try {
      const id = this.device.create(sizeBytes, {
        hugepage: options.hugepages,
        ...(options.numaNode >= 0 ? { numaNode: options.numaNode } : {}),
      });
      return id.toString();
    } catch (err) {
      const e = err as native.NativeError;
      if (e.code === 'ENOSPC') {
        // The module says ENOSPC for its region count and for its byte total
        // alike: name the one that was reached, so the fix is obvious.
        const max = readParam(this.paramsDir, 'max_regions');
        if (max !== null && this.device.list().length >= max) {
          throw new ResourceExhaustedError(
            'BACKEND_EXHAUSTED',
            `cannot allocate ${sizeBytes} bytes: the kernel module holds at most ${max} regions and has that many ` +
              `(max_regions; raise it in ${this.paramsDir}/max_regions or the module's options)`,
          );
        }
      }
      if (e.code === 'ENOMEM' || e.code === 'ENOSPC' || e.code === 'EMFILE') {
        throw new ResourceExhaustedError('BACKEND_EXHAUSTED', `the kernel could not allocate ${sizeBytes} bytes${options.hugepages ? ' of huge pages' : ''}: ${e.message}`);
      }
      if (e.code === 'EINVAL' || e.code === 'E2BIG' || e.code === 'EFBIG') {
        throw new InvalidArgumentError('BACKEND_REFUSED', `the kernel module refused the region: ${e.message}`);
      }
      if (e.code === 'ENODEV' || e.code === 'EOPNOTSUPP') {
        throw new FailedPreconditionError('BACKEND_UNSUPPORTED', `the kernel module cannot do this here: ${e.message}`);
      }
      throw err;
    }
  }

  adopt(regions: RegionRecord[]): { lost: string[]; adopted: string[] } {
    const live = new Set(this.device.list().map((id) => id.toString()));
    const lost: string[] = [];
    const adopted: string[] = [];
    const known = new Set<string>();
    for (const r of regions) {
      known.add(r.backendRef);
      (live.has(r.backendRef) ? adopted : lost).push(r.name);
    }
    // A kernel region without a row was created by a broker that died before
    // committing it (or deleted by one that died during the grace period).
    for (const id of live) {
      if (known.has(id)) continue;
      this.log.warn({ kernelRegion: id }, 'destroying a kernel region the database does not know');
      this.device.destroy(BigInt(id));
    }
    return { lost, adopted };
  }

  open(region: RegionRecord, mode: GrantMode, options: { mayNotify?: boolean } = {}): OpenedRegion {
    try {
      // ALLOW_NOTIFY exactly when the lease may notify: the kernel then
      // enforces the grant's allow_notify on the fd itself (EPERM otherwise).
      const { fd, grantId } = this.device.openGrant(BigInt(region.backendRef), {
        readOnly: mode === 'ro',
        cloexec: true,
        allowNotify: options.mayNotify === true,
      });
      return { fd, kernelGrantId: grantId.toString() };
    } catch (err) {
      const e = err as native.NativeError;
      if (e.code === 'ENOENT') throw new FailedPreconditionError('REGION_LOST', `region ${region.name} is gone from the kernel`);
      if (e.code === 'ENOSPC' || e.code === 'EMFILE' || e.code === 'ENFILE') {
        throw new ResourceExhaustedError('BACKEND_EXHAUSTED', `cannot open another grant on ${region.name}: ${e.message}`);
      }
      throw err;
    }
  }

  revoke(kernelGrantId: string): void {
    try {
      this.device.revoke(BigInt(kernelGrantId));
    } catch (err) {
      if ((err as native.NativeError).code !== 'ENOENT') throw err;
    }
  }

  destroy(region: RegionRecord): void {
    try {
      this.device.destroy(BigInt(region.backendRef));
    } catch (err) {
      if ((err as native.NativeError).code !== 'ENOENT') throw err;
    }
  }

  offer(): boolean {
    // Kernel regions survive by themselves; there is nothing to re-adopt.
    return false;
  }

  regionCeiling(): RegionCeiling | undefined {
    const regions = readParam(this.paramsDir, 'max_regions');
    return regions === null ? undefined : { regions, source: "the kernel module's max_regions" };
  }

  close(): void {
    this.device.close();
    fs.closeSync(this.ownership);
  }
}

/**
 * One broker owns the module's regions. At start a broker destroys every
 * kernel region its own database does not know (adopt), so a second kmod
 * broker with another state directory would wipe the first one's live
 * regions. An exclusive flock on the device node, held for the backend's
 * life and dropped by the kernel however the process ends (kill -9
 * included, so a restart is never refused by a dead broker), refuses the
 * second one before it touches the module. Returns the fd that holds it.
 * The lock lives on the node's inode: brokers that share the node (the
 * host's /dev, or a bind mount of it) exclude each other; a container given
 * its own node by a device plugin does not see the lock, and there the
 * state directory's lock (one hostPath for every broker pod) keeps a second
 * broker out.
 */
function ownDevice(devicePath: string): number {
  const fd = fs.openSync(devicePath, fs.constants.O_RDONLY); // libuv opens close-on-exec
  let held = false;
  try {
    held = native.flockExclusive(fd);
  } finally {
    if (!held) fs.closeSync(fd);
  }
  if (held) return fd;
  const pid = lockHolder(devicePath);
  throw new FailedPreconditionError(
    'ALREADY_RUNNING',
    `the regions of ${devicePath} belong to another broker (pid ${pid ?? 'unknown'}, holding a lock on ${devicePath}); stop it first`,
  );
}

/** The pid holding a lock on `file`, from /proc/locks ("1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF"), or null. */
export function lockHolder(file: string, locks = '/proc/locks'): number | null {
  let text: string;
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(file, { bigint: true });
    text = fs.readFileSync(locks, 'utf8');
  } catch {
    return null;
  }
  // glibc's encoding of the filesystem's dev_t, as /proc/locks prints it (%02x:%02x:%lu).
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const at = f.findIndex((x) => /^[0-9a-f]+:[0-9a-f]+:\d+$/.test(x));
    if (at < 1 || f[1] === '->') continue; // "->" lines are waiters, not holders
    const [ma, mi, ino] = f[at]!.split(':');
    if (BigInt(`0x${ma}`) === major && BigInt(`0x${mi}`) === minor && BigInt(ino!) === st.ino) return Number(f[at - 1]);
  }
  return null;
}
