// What the control plane (RegionManager, GrantManager) and the data plane (DataPlane)
// both work on: the state, the backend, the policy, the audit trail and the
// revoker. Built once by Broker.start.
import type { Auditor } from './audit/audited-operation';
import type { Backend } from './backends/backend';
import type { GrantStore } from './store/grant-store';
import type { AuditSink } from './hooks';
import type { LeaseService } from './leases/lease-service';
import type { Logger } from './logger';
import type { Policy } from './regions/policy';
import type { RegionStore } from './store/region-store';
import type { Revoker } from './leases/revoker';
import type { Db } from './store/state-db';

export interface BrokerCore {
  db: Db;
  regions: RegionStore;
  grants: GrantStore;
  leases: LeaseService;
  backend: Backend;
  policy: Policy;
  audit: AuditSink;
  /** Records every operation's outcome (audit/audited-operation.ts). */
  auditor: Auditor;
  revoker: Revoker;
  log: Logger;
}
