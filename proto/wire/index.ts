// The wire vocabulary shared by the broker (service/) and its clients
// (clients/): both import it, neither imports the other. It lives beside the
// .proto files because it is part of the same contract, and so a client
// package that ships proto/ (the codecs in proto/load.ts) ships it too.
export * from './access-mode';
export * from './codes';
export * from './reasons';
export * from './region-name';
export * from './sockets';
export * from './units';
export * from './revocation';
