// Shared helpers of the shmbroker addon: per-environment data, errno -> JS
// error conversion and the argument-check macros.
//
// Conventions (all files):
//  - C++ exceptions are off (NAPI_DISABLE_CPP_EXCEPTIONS). A failing check
//    throws a pending JS exception and the binding returns an empty
//    Napi::Value right away; nothing after the macro runs.
//  - A failing syscall becomes a NativeError-shaped JS error (code, errno,
//    syscall) through ThrowErrno / ErrnoError.
//  - No raw pointer is ever handed to JS: handles are ObjectWrap instances.
//  - The TypeScript layer (native/index.ts) validates every option first and
//    names it in its messages; the checks here are the second line of defence
//    against misuse of the raw binding.
#ifndef SHMBROKER_NATIVE_UTIL_H
#define SHMBROKER_NATIVE_UTIL_H

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace shmb {

// Per-environment state (napi_set_instance_data), so the addon works in
// worker threads too.
struct AddonData {
  Napi::FunctionReference errorClass;  // NativeError from index.ts (optional)
  Napi::FunctionReference mappingCtor;
  Napi::FunctionReference socketCtor;
  Napi::FunctionReference serverCtor;
  Napi::FunctionReference kmodCtor;
};

inline AddonData* GetData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// "syscall: Description (CODE)" with .code, .errno and .syscall set. Built
// through the registered NativeError class when there is one.
Napi::Object ErrnoError(Napi::Env env, int err, const char* syscall);
// Throws ErrnoError(...) as a pending exception.
void ThrowErrno(Napi::Env env, int err, const char* syscall);

// Argument readers: on failure they throw a TypeError / RangeError naming
// `what` and return false.
bool ArgInt(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t min, int64_t max,
            int64_t* out);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what, bool* out);
bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out);
bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t* out);

// Largest integer a JS number holds exactly.
constexpr int64_t kMaxSafeInteger = 9007199254740991LL;

}  // namespace shmb

// ---- argument-check macros (style: one line per argument) ----------------
#define SHMB_RETURN_IF(cond) \
  do {                       \
    if (cond) return Napi::Value(); \
  } while (0)

#define THROW_TYPE_ERROR(env, msg)                           \
  do {                                                       \
    Napi::TypeError::New((env), (msg)).ThrowAsJavaScriptException(); \
    return Napi::Value();                                    \
  } while (0)

#define THROW_RANGE_ERROR(env, msg)                           \
  do {                                                        \
    Napi::RangeError::New((env), (msg)).ThrowAsJavaScriptException(); \
    return Napi::Value();                                     \
  } while (0)

#define THROW_ERRNO(env, err, syscall)         \
  do {                                         \
    ::shmb::ThrowErrno((env), (err), (syscall)); \
    return Napi::Value();                      \
  } while (0)

#define REQUIRE_ARGUMENT_INT(i, var, min, max)                                  \
  int64_t var;                                                                  \
  SHMB_RETURN_IF(!::shmb::ArgInt(info, (i), #var, (min), (max), &var))

#define REQUIRE_ARGUMENT_FD(i, var) REQUIRE_ARGUMENT_INT(i, var, 0, INT32_MAX)

#define REQUIRE_ARGUMENT_SIZE(i, var) REQUIRE_ARGUMENT_INT(i, var, 1, ::shmb::kMaxSafeInteger)

#define REQUIRE_ARGUMENT_BOOL(i, var) \
  bool var;                           \
  SHMB_RETURN_IF(!::shmb::ArgBool(info, (i), #var, &var))

#define REQUIRE_ARGUMENT_STRING(i, var) \
  std::string var;                      \
  SHMB_RETURN_IF(!::shmb::ArgString(info, (i), #var, &var))

#define REQUIRE_ARGUMENT_U64(i, var) \
  uint64_t var;                      \
  SHMB_RETURN_IF(!::shmb::ArgU64(info, (i), #var, &var))

#define REQUIRE_ARGUMENT_FUNCTION(i, var)                                          \
  if (info.Length() <= (i) || !info[i].IsFunction())                               \
    THROW_TYPE_ERROR(info.Env(), "expected a function as argument " #i " (" #var ")"); \
  Napi::Function var = info[i].As<Napi::Function>()

#endif  // SHMBROKER_NATIVE_UTIL_H
