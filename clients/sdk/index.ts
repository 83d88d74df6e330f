// The shmbroker TypeScript SDK: map shared-memory regions granted by the broker.
export { BrokerClient, connect, type AcquireOptions, type ConnectOptions } from './broker-client';
export { MappedRegion, type Mode, type RevocationEvent } from './mapped-region';
export type { NotifyEvent, RegionEvent, ReleasedEvent, RevokedEvent, TimeoutEvent, WaitOptions } from './region-events';
export * from './errors';
export { defaultRuntimeDir, resolveRuntimeDir } from './runtime-dir';
export { ControlClient } from './control-client';
export { BrokerNotTrustedError } from './broker-trust';
