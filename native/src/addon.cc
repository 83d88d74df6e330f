// Entry point of the shmbroker addon (shmbroker_native.node).
//
// The public surface is native/index.ts; this module is its private binding.
#include "handles.h"
#include "util.h"

namespace shmb {

// setErrorClass(NativeError): errors created from here on are instances of
// the TS layer's class, constructed as new NativeError(message, code, errno, syscall).
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  REQUIRE_ARGUMENT_FUNCTION(0, ctor);
  GetData(info.Env())->errorClass = Napi::Persistent(ctor);
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<AddonData>(new AddonData());
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  InitFdOps(env, exports);
  InitMapping(env, exports);
  InitSeqpacket(env, exports);
  InitKmod(env, exports);
  InitDoorbell(env, exports);
  return exports;
}

}  // namespace shmb

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return shmb::Init(env, exports); }

NODE_API_MODULE(shmbroker_native, InitAddon)
