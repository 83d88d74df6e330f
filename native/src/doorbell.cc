// Doorbell: a region's event page and doorbell eventfd, held by a client
// (docs/ARCHITECTURE.md, "Region events").
//
// The event page holds the region's sequence; the doorbell is an eventfd
// shared by every holder, which nobody reads. This handle watches it in its
// own epoll instance with EPOLLIN|EPOLLET: each write(2) to the eventfd
// re-arms that edge-triggered item, so every holder's epoll fd becomes
// readable once per notify (coalesced while nobody looks). The epoll fd is
// what libuv polls (uv_poll_t): waiting costs no thread and no CPU.
//
//  - new NativeDoorbell(pageFd, bellFd, mayNotify): takes ownership of both
//    fds (closed by close() or the destructor, also on failure). Maps the
//    page read-write when mayNotify, read-only otherwise, and checks its
//    magic and version.
//  - seq() / deleted(): atomic loads from the page.
//  - notify(): seq += 1 (seq-cst), then write(bell, 1). EPERM without
//    mayNotify (and the read-only mapping would fault anyway).
//  - start(cb) / stop(): poll the epoll fd; cb() is called on each wake-up
//    after the edge was consumed. An active poll keeps the loop alive (a
//    pending wait is like a pending read); stop() lets it go.
//  - close(): idempotent; stops polling, unmaps, closes the fds.
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>

#include "handles.h"
#include "util.h"
#include "uvpoll.h"

namespace shmb {

namespace {

constexpr uint32_t kPageMagic = 0x56454253;  // "SBEV" little-endian
constexpr uint32_t kPageVersion = 1;
constexpr size_t kPageSize = 4096;

struct EventPage {
  uint32_t magic;
  uint32_t version;
  uint64_t seq;
  uint32_t flags;
};

}  // namespace

class Doorbell : public Napi::ObjectWrap<Doorbell> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "NativeDoorbell",
                       {
                           InstanceMethod<&Doorbell::Seq>("seq"),
                           InstanceMethod<&Doorbell::Deleted>("deleted"),
                           InstanceMethod<&Doorbell::Notify>("notify"),
                           InstanceMethod<&Doorbell::Start>("start"),
                           InstanceMethod<&Doorbell::Stop>("stop"),
                           InstanceMethod<&Doorbell::Close>("close"),
                           InstanceAccessor<&Doorbell::GetFd>("fd"),
                       });
  }

  explicit Doorbell(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Doorbell>(info) {
    Napi::Env env = info.Env();
    int64_t pageFd, bellFd;
    bool mayNotify;
    if (!ArgInt(info, 0, "pageFd", 0, INT32_MAX, &pageFd) || !ArgInt(info, 1, "bellFd", 0, INT32_MAX, &bellFd) ||
        !ArgBool(info, 2, "mayNotify", &mayNotify))
      return;
    pageFd_ = static_cast<int>(pageFd);
    bellFd_ = static_cast<int>(bellFd);
    mayNotify_ = mayNotify;
    void* p = mmap(nullptr, kPageSize, PROT_READ | (mayNotify ? PROT_WRITE : 0), MAP_SHARED, pageFd_, 0);
    if (p == MAP_FAILED) { Fail(env, errno, "mmap"); return; }
    page_ = static_cast<EventPage*>(p);
    if (page_->magic != kPageMagic || page_->version != kPageVersion) { Fail(env, EPROTO, "event page header"); return; }
    epFd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epFd_ < 0) { Fail(env, errno, "epoll_create1"); return; }
    struct epoll_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLET;
    // Registered before anyone reads the sequence through this handle: a
    // notify whose increment a later seq() misses re-arms this item.
    if (epoll_ctl(epFd_, EPOLL_CTL_ADD, bellFd_, &ev) < 0) { Fail(env, errno, "epoll_ctl"); return; }
  }

  ~Doorbell() override {
    selfRef_ = false;
    CloseInternal();
  }

 private:
  void Fail(Napi::Env env, int err, const char* what) {
    CloseInternal();
    ThrowErrno(env, err, what);
  }

  Napi::Value Seq(const Napi::CallbackInfo& info) {
    if (page_ == nullptr) THROW_ERRNO(info.Env(), EBADF, "doorbell seq");
    uint64_t s = __atomic_load_n(&page_->seq, __ATOMIC_SEQ_CST);
    return Napi::Number::New(info.Env(), static_cast<double>(s));
  }

  Napi::Value Deleted(const Napi::CallbackInfo& info) {
    if (page_ == nullptr) THROW_ERRNO(info.Env(), EBADF, "doorbell flags");
    uint32_t f = __atomic_load_n(&page_->flags, __ATOMIC_SEQ_CST);
    return Napi::Boolean::New(info.Env(), (f & 1u) != 0);
  }

  // notify() -> the new sequence.
  Napi::Value Notify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (page_ == nullptr) THROW_ERRNO(env, EBADF, "doorbell notify");
    if (!mayNotify_) THROW_ERRNO(env, EPERM, "doorbell notify");
    uint64_t s = __atomic_add_fetch(&page_->seq, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    for (int attempt = 0;; attempt++) {
      if (write(bellFd_, &one, sizeof one) == sizeof one) break;
      if (errno == EINTR) continue;
      // The counter is never read, so it only grows; a holder may have
      // jammed it at its maximum. Reading it back to 0 does not disturb the
      // waiters (they watch EPOLLIN edges, a read raises EPOLLOUT).
      if (errno == EAGAIN && attempt == 0) {
        uint64_t v;
        if (read(bellFd_, &v, sizeof v) < 0 && errno != EAGAIN) THROW_ERRNO(env, errno, "read(doorbell)");
        continue;
      }
      THROW_ERRNO(env, errno, "write(doorbell)");
    }
    return Napi::Number::New(env, static_cast<double>(s));
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_FUNCTION(0, callback);
    if (epFd_ < 0) THROW_ERRNO(env, EBADF, "uv_poll_start");
    if (poll_ == nullptr) {
      poll_ = NewPoll(env, epFd_, this);
      if (poll_ == nullptr) return Napi::Value();
      napi_async_init(env, Value(), Napi::String::New(env, "Doorbell"), &actx_);
    }
    cb_ = Napi::Persistent(callback);
    int r = uv_poll_start(poll_, UV_READABLE, OnPoll);
    if (r < 0) THROW_ERRNO(env, -r, "uv_poll_start");
    if (!selfRef_) {
      // Polling keeps this object alive, like a libuv handle keeps its owner.
      Ref();
      selfRef_ = true;
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_poll_stop(poll_);
    if (selfRef_) {
      selfRef_ = false;
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseInternal();
    return info.Env().Undefined();
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), epFd_); }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Doorbell* self = static_cast<Doorbell*>(handle->data);
    if (self != nullptr) self->HandlePoll();
  }

  void HandlePoll() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    // Consume the edge so the epoll fd is quiet until the next notify.
    struct epoll_event ev;
    while (epoll_wait(epFd_, &ev, 1, 0) < 0 && errno == EINTR) {
    }
    if (cb_.IsEmpty() || actx_ == nullptr) return;
    CallFromLoop(env, actx_, Value(), cb_.Value(), {});
  }

  void CloseInternal() {
    ClosePoll(&poll_);
    if (actx_ != nullptr) {
      napi_async_destroy(Env(), actx_);
      actx_ = nullptr;
    }
    cb_.Reset();
    if (page_ != nullptr) {
      munmap(page_, kPageSize);
      page_ = nullptr;
    }
    // After uv_close the loop no longer watches the epoll fd, so it can go.
    for (int* fd : {&epFd_, &bellFd_, &pageFd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
    if (selfRef_) {
      selfRef_ = false;
      Unref();
    }
  }

  int pageFd_ = -1;
  int bellFd_ = -1;
  int epFd_ = -1;
  bool mayNotify_ = false;
  bool selfRef_ = false;
  EventPage* page_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference cb_;
  napi_async_context actx_ = nullptr;
};

void InitDoorbell(Napi::Env env, Napi::Object exports) { exports.Set("Doorbell", Doorbell::Class(env)); }

}  // namespace shmb
