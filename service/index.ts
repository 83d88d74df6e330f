// The broker's entry point: what `shmbroker serve` loads (by path, at run
// time: clients/cli/serve-command.ts) and what an embedder would import.
// Nothing under clients/ imports service/ statically (test/layering.test.ts);
// this file is the one door, documented in docs/ARCHITECTURE.md.
export { serve, defaultStateDir, effectiveConfig, configYaml, type ServeOptions } from './serve';
export { checkConfigFile } from './config-check';
export { Broker, VERSION, type BrokerOptions } from './broker';
export { backupState, type BackupResult } from './store/backup';
