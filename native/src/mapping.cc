// Mapping: one mmap(MAP_SHARED) of an fd, exposed to JS as an external
// ArrayBuffer or SharedArrayBuffer over the mapped pages.
//
// Lifetime. The pages belong to a MapState shared (std::shared_ptr) between
// the Mapping object and the buffer's deleter (a plain ArrayBuffer: its
// finalizer, see NewExternalArrayBuffer). Whoever comes first unmaps,
// under the state's mutex:
//  - release() (JS thread): ArrayBuffer -> detach, then munmap. JS then sees
//    byteLength 0 and can never touch the unmapped range.
//    SharedArrayBuffer -> cannot be detached (other threads may hold views),
//    so the range is atomically replaced (MAP_FIXED) by private anonymous
//    zero pages: stale views read zeros and never fault. The reservation
//    itself is unmapped by the deleter when V8 frees the backing store.
//  - the deleter, when the buffer is garbage-collected without release():
//    for a SharedArrayBuffer V8 may run it on any thread, hence the mutex.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <v8.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "handles.h"
#include "util.h"

namespace shmb {

namespace {

struct MapState {
  MapState(void* a, size_t l) : addr(a), len(l) {}
  std::mutex mu;
  void* const addr;
  const size_t len;
  bool unmapped = false;  // the range is no longer ours: never touch it again
};
using StatePtr = std::shared_ptr<MapState>;

void UnmapOnce(MapState* s) {
  std::lock_guard<std::mutex> lock(s->mu);
  if (!s->unmapped) {
    munmap(s->addr, s->len);
    s->unmapped = true;
  }
}

// v8::BackingStore deleter of a SharedArrayBuffer: any thread.
void SabDeleter(void* /*data*/, size_t /*len*/, void* hint) {
  StatePtr* holder = static_cast<StatePtr*>(hint);
  UnmapOnce(holder->get());
  delete holder;
}

// Node-API has no way to create a SharedArrayBuffer over external memory, so
// this one function uses V8 directly.
//
// Why this is safe in an addon: node-gyp compiles the addon against the
// headers of the Node release that loads it (the v8.h shipped with it), so
// the V8 ABI matches exactly; Node exports the V8 symbols for addons. The
// conversion v8::Local<v8::Value> -> napi_value is the one Node-API itself
// performs (v8impl::JsValueFromV8LocalValue: napi_value is the Local's slot
// pointer), and the Local lives in the HandleScope of the current Node-API
// call, exactly as a napi_value created by napi_create_* would.
static_assert(sizeof(v8::Local<v8::Value>) == sizeof(napi_value), "napi_value must be a v8::Local");

napi_value NewExternalSharedArrayBuffer(void* data, size_t len, StatePtr* holder) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(data, len, SabDeleter, holder);
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, std::move(store));
  v8::Local<v8::Value> value = sab;
  napi_value out;
  std::memcpy(&out, &value, sizeof(out));
  return out;
}

// A plain ArrayBuffer over the mapping. V8 counts a non-shared backing
// store's whole length as this isolate's external memory unless its deleter
// is BackingStore::EmptyDeleter (BackingStore::PerIsolateAccountingLength),
// so a 64 MiB region with any real deleter (napi_create_external_arraybuffer,
// or NewBackingStore with ours) pushes V8 past its external-memory limit and
// forces a Mark-Compact on nearly every acquire (--trace-gc: "GC in old space
// requested"). So the store gets the empty deleter, and the pages are
// unmapped by a Node-API finalizer on the buffer object instead (AbFinalize).
// That is sound only while the backing store cannot outlive the object: a
// detach key (an object only the Mapping holds) makes the buffer undetachable from JS, so
// it cannot be transferred to another thread (postMessage's transfer list
// detaches); only release() detaches it, with the key.
void AbFinalize(napi_env /*env*/, void* /*data*/, void* hint) {
  StatePtr* holder = static_cast<StatePtr*>(hint);
  UnmapOnce(holder->get());
  delete holder;
}

napi_value NewExternalArrayBuffer(napi_env env, void* data, size_t len, StatePtr* holder, napi_value detachKey) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(data, len, v8::BackingStore::EmptyDeleter, nullptr);
  v8::Local<v8::ArrayBuffer> ab = v8::ArrayBuffer::New(isolate, std::move(store));
  v8::Local<v8::Value> key;
  std::memcpy(&key, &detachKey, sizeof(key));
  ab->SetDetachKey(key);
  v8::Local<v8::Value> value = ab;
  napi_value out;
  std::memcpy(&out, &value, sizeof(out));
  if (napi_add_finalizer(env, out, nullptr, AbFinalize, holder, nullptr) != napi_ok) {
    // Without a finalizer nothing would ever unmap: undo and report.
    ab->Detach(key).Check();
    UnmapOnce(holder->get());
    delete holder;
    return nullptr;
  }
  return out;
}

// release() of a plain ArrayBuffer: detach with the key it was given.
bool DetachWithKey(napi_value buffer, napi_value detachKey) {
  v8::Local<v8::Value> value;
  std::memcpy(&value, &buffer, sizeof(value));
  v8::Local<v8::Value> key;
  std::memcpy(&key, &detachKey, sizeof(key));
  return value.As<v8::ArrayBuffer>()->Detach(key).FromMaybe(false);
}

}  // namespace

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "NativeMapping",
                       {
                           StaticMethod<&Mapping::Map>("map"),
                           InstanceMethod<&Mapping::Release>("release"),
                           InstanceMethod<&Mapping::Protect>("protect"),
                           InstanceAccessor<&Mapping::GetBuffer>("buffer"),
                           InstanceAccessor<&Mapping::GetLength>("length"),
                           InstanceAccessor<&Mapping::GetWritable>("writable"),
                           InstanceAccessor<&Mapping::GetShared>("shared"),
                           InstanceAccessor<&Mapping::GetReleased>("released"),
                       });
  }

  // Instances are only made by map(); `new NativeMapping()` from JS gives an
  // inert object (released, no buffer).
  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {}

 private:
  // map(fd, length, writable, shared, offset)
  static Napi::Value Map(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_FD(0, fd);
    REQUIRE_ARGUMENT_SIZE(1, length);
    REQUIRE_ARGUMENT_BOOL(2, writable);
    REQUIRE_ARGUMENT_BOOL(3, shared);
    REQUIRE_ARGUMENT_INT(4, offset, 0, kMaxSafeInteger);
    long page = sysconf(_SC_PAGESIZE);
    if (offset % page != 0) THROW_RANGE_ERROR(env, "offset must be a multiple of the page size");

    // A mapping past the end of a regular file (a memfd) would SIGBUS on
    // first touch: refuse it here instead. (Grant fds of the kernel module
    // are not regular files; the module bounds-checks mmap itself.)
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) < 0) THROW_ERRNO(env, errno, "fstat");
    if (S_ISREG(st.st_mode) && offset + length > static_cast<int64_t>(st.st_size)) {
      THROW_RANGE_ERROR(env, "options.offset + options.length (" + std::to_string(offset + length) +
                                 ") exceeds the size of the file (" + std::to_string(st.st_size) + " bytes)");
    }

    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void* addr = mmap(nullptr, static_cast<size_t>(length), prot, MAP_SHARED, static_cast<int>(fd),
                      static_cast<off_t>(offset));
    if (addr == MAP_FAILED) THROW_ERRNO(env, errno, "mmap");

    StatePtr state = std::make_shared<MapState>(addr, static_cast<size_t>(length));
    Napi::Object obj = GetData(env)->mappingCtor.New({});
    if (env.IsExceptionPending() || obj.IsEmpty()) {
      munmap(addr, static_cast<size_t>(length));
      return Napi::Value();
    }
    StatePtr* holder = new StatePtr(state);
    // Not the Mapping object itself: the buffer holds its key, and the
    // Mapping holds the buffer strongly, which would keep both alive forever.
    Napi::Object key = Napi::Object::New(env);
    napi_value buf = shared ? NewExternalSharedArrayBuffer(addr, state->len, holder) : NewExternalArrayBuffer(env, addr, state->len, holder, key);
    if (buf == nullptr) THROW_ERRNO(env, ENOMEM, "napi_add_finalizer");
    // From here on the buffer's deleter (or finalizer) owns the pages: an
    // early return lets the garbage collector unmap them.
    Mapping* m = Mapping::Unwrap(obj);
    m->state_ = state;
    m->buffer_ = Napi::Persistent(Napi::Value(env, buf));
    m->detachKey_ = Napi::Persistent(Napi::Value(key));
    m->length_ = state->len;
    m->writable_ = writable;
    m->shared_ = shared;
    m->released_ = false;
    return obj;
  }

  // release(): idempotent.
  Napi::Value Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (released_ || !state_) return env.Undefined();
    if (!shared_) {
      if (!DetachWithKey(buffer_.Value(), detachKey_.Value())) {
        if (!env.IsExceptionPending()) Napi::Error::New(env, "cannot detach the ArrayBuffer").ThrowAsJavaScriptException();
        return Napi::Value();
      }
      UnmapOnce(state_.get());
    } else {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (!state_->unmapped) {
        void* p = mmap(state_->addr, state_->len, PROT_READ | PROT_WRITE,
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) THROW_ERRNO(env, errno, "mmap");
      }
    }
    released_ = true;
    return env.Undefined();
  }

  // protect(prot): 0 = none, 1 = read, 2 = read|write.
  Napi::Value Protect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_INT(0, prot, 0, 2);
    if (released_ || !state_) THROW_ERRNO(env, EBADF, "mprotect");
    static const int kProt[] = {PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE};
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->unmapped) THROW_ERRNO(env, EBADF, "mprotect");
    if (mprotect(state_->addr, state_->len, kProt[prot]) < 0) THROW_ERRNO(env, errno, "mprotect");
    return env.Undefined();
  }

  Napi::Value GetBuffer(const Napi::CallbackInfo& info) {
    return buffer_.IsEmpty() ? info.Env().Null() : buffer_.Value();
  }
  Napi::Value GetLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(length_)); }
  Napi::Value GetWritable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), writable_); }
  Napi::Value GetShared(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), shared_); }
  Napi::Value GetReleased(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), released_ || !state_); }

  StatePtr state_;
  Napi::Reference<Napi::Value> buffer_;
  Napi::Reference<Napi::Value> detachKey_;  // plain ArrayBuffer only: the key release() detaches with
  size_t length_ = 0;
  bool writable_ = false;
  bool shared_ = false;
  bool released_ = true;
};

void InitMapping(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = Mapping::Class(env);
  GetData(env)->mappingCtor = Napi::Persistent(cls);
  exports.Set("Mapping", cls);
}

}  // namespace shmb
