// The shmbroker TypeScript SDK: map shared-memory regions granted by the
// broker, and call its control API. This is the package's one entry
// (@shmbroker/sdk); what it does not export is internal (the package's
// `exports` map offers nothing else), and packages/sdk/etc/sdk.api.md records
// what it does.
export { BrokerClient, connect, type AcquireOptions, type BrokerClientEvents, type ConnectOptions } from './broker-client';
export { MappedRegion, type MappedRegionEvents, type Mode, type RevocationEvent } from './mapped-region';
export type { NotifyEvent, RegionEvent, ReleasedEvent, RevokedEvent, TimeoutEvent, WaitOptions } from './region-events';
export * from './errors';
export { defaultRuntimeDir, resolveRuntimeDir } from './runtime-dir';
export { ControlClient, type ControlClientOptions } from './control-client';
export { BrokerNotTrustedError } from './broker-trust';
export type { ErrorInfo, FieldViolation, QuotaViolation, ResourceInfo, RichStatus } from '../../proto/status-details';
export type { Code, EVENT_REASONS, EventReason, GrantMode, REASONS } from '../../proto/wire';
export type { ControlMethods } from '../../proto/generated/control-methods';
export type * from '../../proto/generated/control-types';
