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
#include <linux/shmbroker.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
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

// What both doorbells do with libuv: poll one fd while someone waits, call
// the JS callback from the loop after T::HandlePoll() dealt with the wake-up,
// and keep the JS object alive while polling (a pending wait is like a
// pending read: a libuv handle keeps its owner). Each doorbell keeps its own
// fds and its own wake-up rule.
template <typename T>
class PolledWrap : public Napi::ObjectWrap<T> {
 protected:
  explicit PolledWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {}

  // start(cb): polls `fd` for `events`; the poll handle and its async
  // context (named `resource`) are made on the first start.
  Napi::Value StartPoll(const Napi::CallbackInfo& info, int fd, int events, const char* resource) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_FUNCTION(0, callback);
    if (fd < 0) THROW_ERRNO(env, EBADF, "uv_poll_start");
    if (poll_ == nullptr) {
      poll_ = NewPoll(env, fd, this);
      if (poll_ == nullptr) return Napi::Value();
      napi_async_init(env, this->Value(), Napi::String::New(env, resource), &actx_);
    }
    cb_ = Napi::Persistent(callback);
    int r = uv_poll_start(poll_, events, OnPoll);
    if (r < 0) THROW_ERRNO(env, -r, "uv_poll_start");
    if (!selfRef_) {
      this->Ref();
      selfRef_ = true;
    }
    return env.Undefined();
  }

  void StopPoll() {
    if (poll_ != nullptr) uv_poll_stop(poll_);
    ReleaseSelf();
  }

  // Closes the poll handle (libuv stops watching the fd: the caller may
  // close it next), the async context and the callback.
  void ClosePollHandle() {
    ClosePoll(&poll_);
    if (actx_ != nullptr) {
      napi_async_destroy(this->Env(), actx_);
      actx_ = nullptr;
    }
    cb_.Reset();
  }

  void ReleaseSelf() {
    if (selfRef_) {
      selfRef_ = false;
      this->Unref();
    }
  }

  // The destructor's: an object being collected has no reference to drop.
  void ForgetSelf() { selfRef_ = false; }

  void CallBack() {
    if (cb_.IsEmpty() || actx_ == nullptr) return;
    CallFromLoop(this->Env(), actx_, this->Value(), cb_.Value(), {});
  }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<PolledWrap*>(handle->data);
    if (self == nullptr) return;
    Napi::HandleScope scope(self->Env());
    static_cast<T*>(self)->HandlePoll();
  }

  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference cb_;
  napi_async_context actx_ = nullptr;
  bool selfRef_ = false;
};

class Doorbell : public PolledWrap<Doorbell> {
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

  explicit Doorbell(const Napi::CallbackInfo& info) : PolledWrap<Doorbell>(info) {
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
    ForgetSelf();
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

  Napi::Value Start(const Napi::CallbackInfo& info) { return StartPoll(info, epFd_, UV_READABLE, "Doorbell"); }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPoll();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseInternal();
    return info.Env().Undefined();
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), epFd_); }

  friend class PolledWrap<Doorbell>;
  void HandlePoll() {
    // Consume the edge so the epoll fd is quiet until the next notify.
    struct epoll_event ev;
    while (epoll_wait(epFd_, &ev, 1, 0) < 0 && errno == EINTR) {
    }
    CallBack();
  }

  void CloseInternal() {
    ClosePollHandle();
    if (page_ != nullptr) {
      munmap(page_, kPageSize);
      page_ = nullptr;
    }
    // After uv_close the loop no longer watches the epoll fd, so it can go.
    for (int* fd : {&epFd_, &bellFd_, &pageFd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
    ReleaseSelf();
  }

  int pageFd_ = -1;
  int bellFd_ = -1;
  int epFd_ = -1;
  bool mayNotify_ = false;
  EventPage* page_ = nullptr;
};


// KernelDoorbell: the doorbell of a kmod region, which is the region's grant
// fd itself (kmod/include/uapi/linux/shmbroker.h, "Region events"). No
// broker fd, no event page: the module keeps the sequence and the wait queue.
//
//  - new NativeKernelDoorbell(regionFd): takes ownership of the fd (a dup of
//    the region fd: same open file, so the same "seen" in the kernel).
//  - seq(): SHMBROKER_IOC_WAIT with NONBLOCK and last_seq = what this handle
//    last acknowledged, so reading the sequence never moves the file's "seen"
//    past a value JS has not compared its waiters against.
//  - revoked(): true once the kernel said the grant is gone (ENOENT to a
//    seq(), notify() or the wake-up's acknowledgement; no syscall itself).
//  - notify(): SHMBROKER_IOC_NOTIFY; EPERM comes from the kernel (a read-only
//    grant opened without ALLOW_NOTIFY), ENOENT once revoked.
//  - start(cb) / stop(): uv_poll on the region fd. The fd is level-triggered
//    (readable while the sequence differs from "seen"), so each wake-up
//    first acknowledges the current sequence (WAIT NONBLOCK with last_seq =
//    that sequence) and then calls cb(), which re-checks every waiter: "seen"
//    only ever moves here, right before every waiter is compared with the
//    sequence it moved to, so no wake-up is lost. EPOLLHUP (revoked) stops
//    the poll after cb(), so a dead grant does not spin the loop.
//  - close(): idempotent; stops polling, closes the fd.
class KernelDoorbell : public PolledWrap<KernelDoorbell> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "NativeKernelDoorbell",
                       {
                           InstanceMethod<&KernelDoorbell::Seq>("seq"),
                           InstanceMethod<&KernelDoorbell::Revoked>("revoked"),
                           InstanceMethod<&KernelDoorbell::Notify>("notify"),
                           InstanceMethod<&KernelDoorbell::Start>("start"),
                           InstanceMethod<&KernelDoorbell::Stop>("stop"),
                           InstanceMethod<&KernelDoorbell::Close>("close"),
                           InstanceAccessor<&KernelDoorbell::GetFd>("fd"),
                       });
  }

  explicit KernelDoorbell(const Napi::CallbackInfo& info) : PolledWrap<KernelDoorbell>(info) {
    Napi::Env env = info.Env();
    int64_t fd;
    if (!ArgInt(info, 0, "regionFd", 0, INT32_MAX, &fd)) return;
    fd_ = static_cast<int>(fd);
    // The sequence as this handle starts: "seen" is already it (OPEN sets
    // seen to the region's sequence) unless another holder of this open file
    // moved it; acknowledging it here makes both agree.
    uint64_t s = 0;
    int err = Sync(&s);
    if (err != 0 && err != ENOENT) {
      CloseInternal();
      ThrowErrno(env, err, "ioctl(SHMBROKER_IOC_WAIT)");
    }
  }

  ~KernelDoorbell() override {
    ForgetSelf();
    CloseInternal();
  }

 private:
  // WAIT NONBLOCK with last_seq = last: sets "seen" to last, reads the sequence.
  int WaitNonblock(uint64_t last, uint64_t* seq) {
    struct shmbroker_wait w;
    std::memset(&w, 0, sizeof w);
    w.last_seq = last;
    w.flags = SHMBROKER_WAIT_NONBLOCK;
    int r;
    do r = ioctl(fd_, SHMBROKER_IOC_WAIT, &w);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == ENOENT) revoked_ = true;
      return errno;
    }
    *seq = w.seq;
    return 0;
  }

  // Acknowledge the current sequence ("seen" = it), so the fd stops polling readable.
  int Sync(uint64_t* seq) {
    for (;;) {
      uint64_t s = 0;
      int err = WaitNonblock(acked_, &s);
      if (err != 0) return err;
      if (s == acked_) {
        *seq = s;
        return 0;
      }
      acked_ = s;
    }
  }

  Napi::Value Seq(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) THROW_ERRNO(env, EBADF, "doorbell seq");
    uint64_t s = acked_;
    // Revoked: the last sequence known (the waiters see revoked() first).
    if (!revoked_) {
      int err = WaitNonblock(acked_, &s);
      if (err != 0 && err != ENOENT) THROW_ERRNO(env, err, "ioctl(SHMBROKER_IOC_WAIT)");
      if (err == ENOENT) s = acked_;
    }
    return Napi::Number::New(env, static_cast<double>(s));
  }

  // As of the last seq(), notify() or wake-up (no syscall of its own).
  Napi::Value Revoked(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), revoked_); }

  // notify() -> the new sequence.
  Napi::Value Notify(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) THROW_ERRNO(env, EBADF, "doorbell notify");
    struct shmbroker_notify n;
    std::memset(&n, 0, sizeof n);
    int r;
    do r = ioctl(fd_, SHMBROKER_IOC_NOTIFY, &n);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == ENOENT) revoked_ = true;
      THROW_ERRNO(env, errno, "ioctl(SHMBROKER_IOC_NOTIFY)");
    }
    return Napi::Number::New(env, static_cast<double>(n.seq));
  }

  Napi::Value Start(const Napi::CallbackInfo& info) { return StartPoll(info, fd_, UV_READABLE | UV_DISCONNECT, "KernelDoorbell"); }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPoll();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseInternal();
    return info.Env().Undefined();
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  friend class PolledWrap<KernelDoorbell>;
  void HandlePoll() {
    uint64_t s = 0;
    (void)Sync(&s);  // an error other than ENOENT leaves the fd readable: retried on the next turn
    // A revoked grant stays EPOLLHUP for good: stop before anyone spins on it.
    if (revoked_) StopPoll();
    CallBack();
  }

  void CloseInternal() {
    ClosePollHandle();
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    ReleaseSelf();
  }

  int fd_ = -1;
  uint64_t acked_ = 0;
  bool revoked_ = false;
};

void InitDoorbell(Napi::Env env, Napi::Object exports) {
  exports.Set("Doorbell", Doorbell::Class(env));
  exports.Set("KernelDoorbell", KernelDoorbell::Class(env));
}

}  // namespace shmb
