// Declarations shared between the translation units of the addon.
#ifndef SHMBROKER_NATIVE_HANDLES_H
#define SHMBROKER_NATIVE_HANDLES_H

#include <napi.h>

namespace shmb {

// Free functions on fds (fdops.cc).
void InitFdOps(Napi::Env env, Napi::Object exports);
// { pid, uid, gid, groups } of the peer of a connected AF_UNIX socket, or an
// empty value with a pending NativeError.
Napi::Value PeerCredObject(Napi::Env env, int fd);

// One class per handle type.
void InitMapping(Napi::Env env, Napi::Object exports);    // mapping.cc
void InitSeqpacket(Napi::Env env, Napi::Object exports);  // seqpacket.cc
void InitKmod(Napi::Env env, Napi::Object exports);       // kmod.cc
void InitDoorbell(Napi::Env env, Napi::Object exports);   // doorbell.cc

}  // namespace shmb

#endif  // SHMBROKER_NATIVE_HANDLES_H
