// SeqpacketSocket / SeqpacketServer: AF_UNIX SOCK_SEQPACKET sockets driven by
// the Node event loop through uv_poll_t (napi_get_uv_event_loop).
//
// Each handle calls one JS callback `(event, ...args)` given to start(); the
// TS layer turns it into EventEmitter events. Rules:
//  - One packet per send(); fds travel by SCM_RIGHTS on that packet.
//  - When the socket buffer is full, packets are queued in order (never
//    dropped, never reordered) and 'drain' is emitted once the queue empties.
//    Queued fds are dup'ed, so the caller may close its fds right after
//    send() returns, whether the packet went out or was queued.
//  - Received fds come with MSG_CMSG_CLOEXEC and belong to the caller, except
//    on MSG_TRUNC ('EMSGSIZE') and MSG_CTRUNC ('ETOOMANYREFS'), where every
//    fd received with the packet is closed here before the error is emitted.
//  - A 0-byte read, POLLHUP or POLLERR means the peer hung up: the socket
//    closes itself and emits 'close' once. (So a 0-byte packet cannot be told
//    from a hang-up; the TS layer refuses to send empty packets.)
//  - close() is idempotent: it stops polling (uv_close, whose callback frees
//    the uv_poll_t), closes the fd at once and drops queued packets; no
//    callback reaches JS after it.
//  - An open, started handle keeps its JS object alive (like a libuv handle
//    keeps a net.Socket alive): a socket whose only reference is its
//    'message' listener must not silently close under the garbage collector.
//    If the object is collected anyway (environment teardown, or never
//    started), the destructor stops polling and closes the fd.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <deque>
#include <vector>

#include "handles.h"
#include "util.h"
#include "uvpoll.h"

namespace shmb {

namespace {

constexpr int kScmMaxFd = 253;  // SCM_MAX_FD
constexpr int64_t kMaxPacketLimit = 64LL * 1024 * 1024;

struct Packet {
  std::vector<uint8_t> data;
  std::vector<int> fds;  // dup'ed, owned by the queue
};

void CloseFds(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

// One sendmsg() of one packet. 0 or an errno value.
int SendPacket(int fd, const uint8_t* data, size_t len, const int* fds, size_t nfds) {
  struct iovec iov;
  iov.iov_base = const_cast<uint8_t*>(data);
  iov.iov_len = len;
  struct msghdr msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (nfds > 0) {
    control.resize(CMSG_SPACE(nfds * sizeof(int)));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  for (;;) {
    if (sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// Reads (maxPacket, maxFds) at info[i], info[i+1].
bool ArgLimits(const Napi::CallbackInfo& info, size_t i, size_t* maxPacket, int* maxFds) {
  int64_t mp, mf;
  if (!ArgInt(info, i, "maxPacket", 1, kMaxPacketLimit, &mp)) return false;
  if (!ArgInt(info, i + 1, "maxFds", 0, kScmMaxFd, &mf)) return false;
  *maxPacket = static_cast<size_t>(mp);
  *maxFds = static_cast<int>(mf);
  return true;
}

bool FillSockaddr(Napi::Env env, const std::string& path, struct sockaddr_un* sa) {
  std::memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa->sun_path)) {
    Napi::RangeError::New(env, "path must be 1 to 107 bytes long").ThrowAsJavaScriptException();
    return false;
  }
  std::memcpy(sa->sun_path, path.data(), path.size());
  return true;
}

void FreeTimerHandle(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

// False while the environment is being torn down (process exit, worker
// termination): Node then spins the loop once more to close handles, and a
// poll callback must not call into JS or create JS objects that need to. Any
// Node-API call that may run JS (here: setting a property) reports
// napi_pending_exception in that state, without side effects.
bool JsCallable(napi_env env) {
  napi_value obj, undef;
  if (napi_create_object(env, &obj) != napi_ok || napi_get_undefined(env, &undef) != napi_ok) return false;
  return napi_set_named_property(env, obj, "probe", undef) == napi_ok;
}

}  // namespace

// ------------------------------------------------------------------------
class SeqpacketSocket : public Napi::ObjectWrap<SeqpacketSocket> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "NativeSeqpacketSocket",
                       {
                           StaticMethod<&SeqpacketSocket::Connect>("connect"),
                           InstanceMethod<&SeqpacketSocket::Start>("start"),
                           InstanceMethod<&SeqpacketSocket::Send>("send"),
                           InstanceMethod<&SeqpacketSocket::PeerCred>("peerCred"),
                           InstanceMethod<&SeqpacketSocket::Close>("close"),
                           InstanceMethod<&SeqpacketSocket::JsRef>("ref"),
                           InstanceMethod<&SeqpacketSocket::JsUnref>("unref"),
                           InstanceAccessor<&SeqpacketSocket::GetFd>("fd"),
                           InstanceAccessor<&SeqpacketSocket::GetQueued>("queuedPackets"),
                       });
  }

  // new NativeSeqpacketSocket(fd, maxPacket, maxFds): takes ownership of a
  // connected, non-blocking, close-on-exec SOCK_SEQPACKET fd. Used by
  // connect() and by the server's accept loop. Without arguments: inert.
  explicit SeqpacketSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SeqpacketSocket>(info) {
    if (info.Length() == 0) return;
    int64_t fd;
    size_t maxPacket;
    int maxFds;
    if (!ArgInt(info, 0, "fd", 0, INT32_MAX, &fd) || !ArgLimits(info, 1, &maxPacket, &maxFds)) return;
    fd_ = static_cast<int>(fd);
    closed_ = false;
    rbuf_.resize(maxPacket);
    if (maxFds > 0) cbuf_.resize(CMSG_SPACE(static_cast<size_t>(maxFds) * sizeof(int)));
  }

  ~SeqpacketSocket() override {
    selfRef_ = false;  // the reference is going away with us
    CloseInternal();
    DestroyAsync();
  }

 private:
  // connect(path, maxPacket, maxFds) -> NativeSeqpacketSocket
  static Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_STRING(0, path);
    size_t maxPacket;
    int maxFds;
    SHMB_RETURN_IF(!ArgLimits(info, 1, &maxPacket, &maxFds));
    struct sockaddr_un sa;
    SHMB_RETURN_IF(!FillSockaddr(env, path, &sa));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) THROW_ERRNO(env, errno, "socket");
    // A non-blocking AF_UNIX connect completes at once or fails (EAGAIN when
    // the listener's backlog is full); it never returns EINPROGRESS.
    if (connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) < 0) {
      int err = errno;
      close(fd);
      THROW_ERRNO(env, err, "connect");
    }
    Napi::Object obj = GetData(env)->socketCtor.New(
        {Napi::Number::New(env, fd), Napi::Number::New(env, static_cast<double>(maxPacket)), Napi::Number::New(env, maxFds)});
    if (env.IsExceptionPending() || obj.IsEmpty()) {
      close(fd);
      return Napi::Value();
    }
    return obj;
  }

  // start(callback): begins polling; callback(event, ...args).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_FUNCTION(0, callback);
    if (closed_) THROW_ERRNO(env, EBADF, "uv_poll_start");
    if (started_) THROW_TYPE_ERROR(env, "socket already started");
    poll_ = NewPoll(env, fd_, this);
    if (poll_ == nullptr) return Napi::Value();
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    cb_ = Napi::Persistent(callback);
    napi_async_init(env, Value(), Napi::String::New(env, "SeqpacketSocket"), &actx_);
    started_ = true;
    Ref();
    selfRef_ = true;
    UpdatePoll();
    return env.Undefined();
  }

  // send(data: Uint8Array, fds?: number[]) -> true if sent now, false if queued.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      THROW_TYPE_ERROR(env, "argument 0 (data) must be a Uint8Array");
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    std::vector<int> fds;
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
      if (!info[1].IsArray()) THROW_TYPE_ERROR(env, "argument 1 (fds) must be an array of fds");
      Napi::Array arr = info[1].As<Napi::Array>();
      if (arr.Length() > static_cast<uint32_t>(kScmMaxFd)) THROW_RANGE_ERROR(env, "fds: at most 253 fds per packet");
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value v = arr.Get(i);
        SHMB_RETURN_IF(env.IsExceptionPending());
        double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!v.IsNumber() || d < 0 || d > INT32_MAX || static_cast<double>(static_cast<int>(d)) != d)
          THROW_TYPE_ERROR(env, "argument 1 (fds) must be an array of fds (integers >= 0)");
        fds.push_back(static_cast<int>(d));
      }
    }
    if (closed_) THROW_ERRNO(env, EBADF, "sendmsg");
    const uint8_t* p = data.Data();
    size_t len = data.ByteLength();
    if (queue_.empty()) {
      int err = SendPacket(fd_, p, len, fds.data(), fds.size());
      if (err == 0) return Napi::Boolean::New(env, true);
      if (err != EAGAIN && err != EWOULDBLOCK) THROW_ERRNO(env, err, "sendmsg");
    }
    // Queue a copy, with our own duplicates of the fds.
    Packet pkt;
    pkt.data.assign(p, p + len);
    for (int fd : fds) {
      int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (d < 0) {
        int err = errno;
        CloseFds(pkt.fds);
        THROW_ERRNO(env, err, "fcntl(F_DUPFD_CLOEXEC)");
      }
      pkt.fds.push_back(d);
    }
    queue_.push_back(std::move(pkt));
    wantDrain_ = true;
    UpdatePoll();
    return Napi::Boolean::New(env, false);
  }

  Napi::Value PeerCred(const Napi::CallbackInfo& info) {
    if (closed_) THROW_ERRNO(info.Env(), EBADF, "getsockopt(SO_PEERCRED)");
    return PeerCredObject(info.Env(), fd_);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseInternal();
    DestroyAsync();
    return info.Env().Undefined();
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    refed_ = true;
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.This();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    refed_ = false;
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.This();
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), closed_ ? -1 : fd_); }
  Napi::Value GetQueued(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(queue_.size()));
  }

  // ---- event loop side ----
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    SeqpacketSocket* self = static_cast<SeqpacketSocket*>(handle->data);
    if (self != nullptr) self->HandlePoll(status, events);
  }

  void HandlePoll(int status, int events) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!JsCallable(env)) {
      CloseInternal();
      return;
    }
    Ref();  // stay alive even if a listener drops the last reference
    if (status < 0) {
      HangUp();
    } else {
      if (events & UV_WRITABLE) Flush();
      if (!closed_ && (events & (UV_READABLE | UV_DISCONNECT))) ReadLoop();
    }
    Unref();
  }

  void UpdatePoll() {
    if (poll_ == nullptr || closed_) return;
    int ev = UV_READABLE | UV_DISCONNECT | (queue_.empty() ? 0 : UV_WRITABLE);
    if (ev == pollEvents_) return;
    pollEvents_ = ev;
    uv_poll_start(poll_, ev, OnPoll);
  }

  void ReadLoop() {
    Napi::Env env = Env();
    // Bounded per wakeup so one busy peer cannot starve the loop; the poll
    // is level-triggered, so the rest is read on the next iteration.
    for (int i = 0; i < 256 && !closed_; i++) {
      Napi::HandleScope scope(env);
      struct iovec iov;
      iov.iov_base = rbuf_.data();
      iov.iov_len = rbuf_.size();
      struct msghdr msg;
      std::memset(&msg, 0, sizeof(msg));
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      if (!cbuf_.empty()) {
        msg.msg_control = cbuf_.data();
        msg.msg_controllen = cbuf_.size();
      }
      ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK) return;
        if (err != ECONNRESET) EmitErrno(err, "recvmsg");
        HangUp();
        return;
      }
      std::vector<int> fds;
      if (msg.msg_controllen > 0) {
        for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
          size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          const unsigned char* d = CMSG_DATA(c);
          for (size_t k = 0; k < count; k++) {
            int fd;
            std::memcpy(&fd, d + k * sizeof(int), sizeof(int));
            fds.push_back(fd);
          }
        }
      }
      if (msg.msg_flags & MSG_TRUNC) {
        CloseFds(fds);
        EmitErrno(EMSGSIZE, "recvmsg");
        continue;
      }
      if (msg.msg_flags & MSG_CTRUNC) {
        CloseFds(fds);
        EmitErrno(ETOOMANYREFS, "recvmsg");
        continue;
      }
      if (n == 0) {
        CloseFds(fds);
        HangUp();
        return;
      }
      napi_value args[3];
      if (!MessageArgs(env, static_cast<size_t>(n), fds, args)) {
        // The environment refuses JS (a worker being terminated): nobody can
        // take this packet or any later one. Its fds are ours to close.
        CloseFds(fds);
        return;
      }
      // Not delivered (the environment stopped running JS meanwhile): the
      // fds never reached anyone, close them.
      if (!Emit({args[0], args[1], args[2]})) {
        CloseFds(fds);
        return;
      }
    }
  }

  // ('message', Buffer, fd numbers) built with plain Node-API calls, so a
  // refusal is a status to check rather than an exception to throw.
  bool MessageArgs(Napi::Env env, size_t n, const std::vector<int>& fds, napi_value* args) {
    void* copy = nullptr;
    if (napi_create_string_utf8(env, "message", NAPI_AUTO_LENGTH, &args[0]) != napi_ok) return false;
    if (napi_create_buffer_copy(env, n, rbuf_.data(), &copy, &args[1]) != napi_ok) return false;
    if (napi_create_array_with_length(env, fds.size(), &args[2]) != napi_ok) return false;
    for (size_t k = 0; k < fds.size(); k++) {
      napi_value v;
      if (napi_create_int32(env, fds[k], &v) != napi_ok) return false;
      if (napi_set_element(env, args[2], static_cast<uint32_t>(k), v) != napi_ok) return false;
    }
    return true;
  }

  void Flush() {
    while (!queue_.empty() && !closed_) {
      Packet& p = queue_.front();
      int err = SendPacket(fd_, p.data.data(), p.data.size(), p.fds.data(), p.fds.size());
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err != 0) {
        // The peer is gone or the packet cannot be sent: everything queued
        // is lost. Report it; the hang-up (if any) follows as 'close'.
        DropQueue();
        wantDrain_ = false;
        UpdatePoll();
        EmitErrno(err, "sendmsg");
        return;
      }
      CloseFds(p.fds);
      queue_.pop_front();
    }
    if (closed_) return;
    UpdatePoll();
    if (queue_.empty() && wantDrain_) {
      wantDrain_ = false;
      Emit({Napi::String::New(Env(), "drain")});
    }
  }

  // Peer hung up: close, then emit 'close' once.
  void HangUp() {
    if (closed_) return;
    Napi::Env env = Env();
    Napi::Value fn = cb_.IsEmpty() ? Napi::Value() : cb_.Value();
    CloseInternal();
    if (!fn.IsEmpty() && actx_ != nullptr) {
      CallFromLoop(env, actx_, Value(), fn, {Napi::String::New(env, "close")});
    }
    DestroyAsync();
  }

  void EmitErrno(int err, const char* syscall) {
    Napi::Env env = Env();
    Emit({Napi::String::New(env, "error"), ErrnoError(env, err, syscall)});
  }

  // False when nobody received the arguments (closed, or JS refused).
  bool Emit(const std::vector<napi_value>& args) {
    if (closed_ || cb_.IsEmpty() || actx_ == nullptr) return false;
    return CallFromLoop(Env(), actx_, Value(), cb_.Value(), args);
  }

  void DropQueue() {
    for (Packet& p : queue_) CloseFds(p.fds);
    queue_.clear();
  }

  void CloseInternal() {
    if (closed_) return;
    closed_ = true;
    ClosePoll(&poll_);
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    DropQueue();
    wantDrain_ = false;
    cb_.Reset();
    if (selfRef_) {
      selfRef_ = false;
      Unref();
    }
  }

  void DestroyAsync() {
    if (actx_ != nullptr) {
      napi_async_destroy(Env(), actx_);
      actx_ = nullptr;
    }
  }

  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  int pollEvents_ = 0;
  bool closed_ = true;
  bool started_ = false;
  bool refed_ = true;
  bool selfRef_ = false;
  bool wantDrain_ = false;
  std::vector<uint8_t> rbuf_;
  std::vector<char> cbuf_;
  std::deque<Packet> queue_;
  Napi::FunctionReference cb_;
  napi_async_context actx_ = nullptr;
};

// ------------------------------------------------------------------------
class SeqpacketServer : public Napi::ObjectWrap<SeqpacketServer> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "NativeSeqpacketServer",
                       {
                           StaticMethod<&SeqpacketServer::Listen>("listen"),
                           InstanceMethod<&SeqpacketServer::Start>("start"),
                           InstanceMethod<&SeqpacketServer::Close>("close"),
                           InstanceMethod<&SeqpacketServer::JsRef>("ref"),
                           InstanceMethod<&SeqpacketServer::JsUnref>("unref"),
                           InstanceAccessor<&SeqpacketServer::GetFd>("fd"),
                       });
  }

  explicit SeqpacketServer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SeqpacketServer>(info) {}

  ~SeqpacketServer() override {
    selfRef_ = false;
    CloseInternal();
  }

 private:
  // listen(path, backlog, maxPacket, maxFds): socket(), bind(), listen().
  // Does not unlink or chmod the path: the caller does that safely.
  static Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_STRING(0, path);
    REQUIRE_ARGUMENT_INT(1, backlog, 1, INT32_MAX);
    size_t maxPacket;
    int maxFds;
    SHMB_RETURN_IF(!ArgLimits(info, 2, &maxPacket, &maxFds));
    struct sockaddr_un sa;
    SHMB_RETURN_IF(!FillSockaddr(env, path, &sa));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) THROW_ERRNO(env, errno, "socket");
    const char* failed = nullptr;
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) < 0) {
      failed = "bind";
    } else if (listen(fd, static_cast<int>(backlog)) < 0) {
      failed = "listen";
    }
    if (failed != nullptr) {
      int err = errno;
      close(fd);
      THROW_ERRNO(env, err, failed);
    }
    Napi::Object obj = GetData(env)->serverCtor.New({});
    if (env.IsExceptionPending() || obj.IsEmpty()) {
      close(fd);
      return Napi::Value();
    }
    SeqpacketServer* s = SeqpacketServer::Unwrap(obj);
    s->fd_ = fd;
    s->closed_ = false;
    s->maxPacket_ = maxPacket;
    s->maxFds_ = maxFds;
    return obj;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_FUNCTION(0, callback);
    if (closed_) THROW_ERRNO(env, EBADF, "uv_poll_start");
    if (started_) THROW_TYPE_ERROR(env, "server already started");
    poll_ = NewPoll(env, fd_, this);
    if (poll_ == nullptr) return Napi::Value();
    timer_ = new uv_timer_t;
    uv_timer_init(LoopOf(env), timer_);
    timer_->data = this;
    if (!refed_) {
      uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
      uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
    }
    cb_ = Napi::Persistent(callback);
    napi_async_init(env, Value(), Napi::String::New(env, "SeqpacketServer"), &actx_);
    started_ = true;
    Ref();
    selfRef_ = true;
    uv_poll_start(poll_, UV_READABLE, OnPoll);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseInternal();
    return info.Env().Undefined();
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    refed_ = true;
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    if (timer_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(timer_));
    return info.This();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    refed_ = false;
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    if (timer_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
    return info.This();
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), closed_ ? -1 : fd_); }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    SeqpacketServer* self = static_cast<SeqpacketServer*>(handle->data);
    if (self != nullptr) self->AcceptLoop(status);
  }

  static void OnTimer(uv_timer_t* handle) {
    // Only touches libuv: safe during teardown too.
    SeqpacketServer* self = static_cast<SeqpacketServer*>(handle->data);
    if (self != nullptr && !self->closed_ && self->poll_ != nullptr) uv_poll_start(self->poll_, UV_READABLE, OnPoll);
  }

  // accept4 until EAGAIN. On resource exhaustion (EMFILE, ENFILE, ENOBUFS,
  // ENOMEM) or an unexpected error: emit 'error' and pause accepting for
  // 100 ms (the listening socket stays readable, so retrying at once would
  // spin), then keep serving.
  void AcceptLoop(int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!JsCallable(env)) {
      CloseInternal();
      return;
    }
    Ref();
    if (status < 0) {
      EmitErrno(-status, "uv_poll");
      Pause();
    }
    while (!closed_ && status >= 0) {
      Napi::HandleScope inner(env);
      int c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) break;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
        EmitErrno(err, "accept4");
        Pause();
        break;
      }
      Napi::Object sock = GetData(env)->socketCtor.New(
          {Napi::Number::New(env, c), Napi::Number::New(env, static_cast<double>(maxPacket_)), Napi::Number::New(env, maxFds_)});
      if (env.IsExceptionPending() || sock.IsEmpty()) {
        napi_value e;
        napi_get_and_clear_last_exception(env, &e);
        close(c);
        continue;
      }
      Emit({Napi::String::New(env, "connection"), sock});
    }
    Unref();
  }

  void Pause() {
    if (closed_ || poll_ == nullptr || timer_ == nullptr) return;
    uv_poll_stop(poll_);
    uv_timer_start(timer_, OnTimer, 100, 0);
  }

  void EmitErrno(int err, const char* syscall) {
    Napi::Env env = Env();
    Emit({Napi::String::New(env, "error"), ErrnoError(env, err, syscall)});
  }

  // False when nobody received the arguments (closed, or JS refused).
  bool Emit(const std::vector<napi_value>& args) {
    if (closed_ || cb_.IsEmpty() || actx_ == nullptr) return false;
    return CallFromLoop(Env(), actx_, Value(), cb_.Value(), args);
  }

  void CloseInternal() {
    if (closed_) return;
    closed_ = true;
    ClosePoll(&poll_);
    if (timer_ != nullptr) {
      timer_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(timer_), FreeTimerHandle);
      timer_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    cb_.Reset();
    if (actx_ != nullptr) {
      napi_async_destroy(Env(), actx_);
      actx_ = nullptr;
    }
    if (selfRef_) {
      selfRef_ = false;
      Unref();
    }
  }

  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  bool closed_ = true;
  bool started_ = false;
  bool refed_ = true;
  bool selfRef_ = false;
  size_t maxPacket_ = 65536;
  int maxFds_ = 8;
  Napi::FunctionReference cb_;
  napi_async_context actx_ = nullptr;
};

void InitSeqpacket(Napi::Env env, Napi::Object exports) {
  Napi::Function sock = SeqpacketSocket::Class(env);
  GetData(env)->socketCtor = Napi::Persistent(sock);
  exports.Set("SeqpacketSocket", sock);
  Napi::Function server = SeqpacketServer::Class(env);
  GetData(env)->serverCtor = Napi::Persistent(server);
  exports.Set("SeqpacketServer", server);
}

}  // namespace shmb
