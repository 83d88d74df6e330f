// errno -> typed JS error, and the argument readers behind the macros.
#include "util.h"

#include <string.h>

#include <cmath>

namespace shmb {

Napi::Object ErrnoError(Napi::Env env, int err, const char* syscall) {
  // strerrorname_np / strerrordesc_np (glibc >= 2.32) are thread-safe and
  // locale-independent, unlike strerror().
  const char* name = strerrorname_np(err);
  const char* desc = strerrordesc_np(err);
  std::string code = name ? name : "EUNKNOWN";
  std::string message = std::string(syscall) + ": " + (desc ? desc : "Unknown error") + " (" + code + ")";

  AddonData* data = GetData(env);
  if (data != nullptr && !data->errorClass.IsEmpty()) {
    Napi::Object e = data->errorClass.New({Napi::String::New(env, message), Napi::String::New(env, code),
                                           Napi::Number::New(env, err), Napi::String::New(env, syscall)});
    if (!env.IsExceptionPending() && !e.IsEmpty()) return e;
    if (env.IsExceptionPending()) env.GetAndClearPendingException();
  }
  Napi::Error e = Napi::Error::New(env, message);
  Napi::Object o = e.Value();
  o.Set("code", Napi::String::New(env, code));
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("syscall", Napi::String::New(env, syscall));
  return o;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  Napi::Object e = ErrnoError(env, err, syscall);
  napi_throw(env, e);
}

static std::string ArgName(size_t i, const char* what) {
  return std::string("argument ") + std::to_string(i) + " (" + what + ")";
}

bool ArgInt(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t min, int64_t max,
            int64_t* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError::New(env, ArgName(i, what) + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    Napi::RangeError::New(env, ArgName(i, what) + " must be an integer in [" + std::to_string(min) + ", " +
                                   std::to_string(max) + "]")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what, bool* out) {
  if (info.Length() <= i || !info[i].IsBoolean()) {
    Napi::TypeError::New(info.Env(), ArgName(i, what) + " must be a boolean").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Boolean>().Value();
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out) {
  if (info.Length() <= i || !info[i].IsString()) {
    Napi::TypeError::New(info.Env(), ArgName(i, what) + " must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  if (out->find('\0') != std::string::npos) {
    Napi::TypeError::New(info.Env(), ArgName(i, what) + " must not contain NUL bytes")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t* out) {
  if (info.Length() <= i || !info[i].IsBigInt()) {
    Napi::TypeError::New(info.Env(), ArgName(i, what) + " must be a bigint").ThrowAsJavaScriptException();
    return false;
  }
  bool lossless = false;
  uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) {
    Napi::RangeError::New(info.Env(), ArgName(i, what) + " must be in [0, 2^64)").ThrowAsJavaScriptException();
    return false;
  }
  *out = v;
  return true;
}

}  // namespace shmb
