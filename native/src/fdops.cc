// memfd_create and friends: the operations on plain fds.
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "handles.h"
#include "util.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

namespace shmb {

// Longest memfd name: NAME_MAX (255) minus the "memfd:" prefix.
static constexpr size_t kMemfdNameMax = 249;

// memfdCreate(name, size, hugetlb) -> fd
// memfd_create(MFD_CLOEXEC|MFD_ALLOW_SEALING[|MFD_HUGETLB]), ftruncate(size),
// fchmod(0600) so that a process of another uid holding an O_RDONLY fd
// cannot re-open /proc/PID/fd/N writable, then seal the size for good.
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_ARGUMENT_STRING(0, name);
  REQUIRE_ARGUMENT_SIZE(1, size);
  REQUIRE_ARGUMENT_BOOL(2, hugetlb);
  if (name.size() > kMemfdNameMax) THROW_RANGE_ERROR(env, "name must be at most 249 bytes");
  if (static_cast<uint64_t>(size) > static_cast<uint64_t>(INT64_MAX)) THROW_RANGE_ERROR(env, "size does not fit off_t");

  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | (hugetlb ? MFD_HUGETLB : 0);
  int fd = memfd_create(name.c_str(), flags);
  if (fd < 0) THROW_ERRNO(env, errno, "memfd_create");

  const char* failed = nullptr;
  if (ftruncate(fd, static_cast<off_t>(size)) < 0) {
    failed = "ftruncate";
  } else if (fchmod(fd, 0600) < 0) {
    failed = "fchmod";
  } else if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
    failed = "fcntl(F_ADD_SEALS)";
  }
  if (failed != nullptr) {
    int err = errno;
    close(fd);
    THROW_ERRNO(env, err, failed);
  }
  return Napi::Number::New(env, fd);
}

static Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_ARGUMENT_FD(0, fd);
  int seals = fcntl(static_cast<int>(fd), F_GET_SEALS);
  if (seals < 0) THROW_ERRNO(env, errno, "fcntl(F_GET_SEALS)");
  return Napi::Number::New(env, seals);
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_ARGUMENT_FD(0, fd);
  // Linux always releases the fd, even when close() reports EINTR: never retry.
  if (close(static_cast<int>(fd)) < 0 && errno != EINTR) THROW_ERRNO(env, errno, "close");
  return env.Undefined();
}

Napi::Value PeerCredObject(Napi::Env env, int fd) {
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) THROW_ERRNO(env, errno, "getsockopt(SO_PEERCRED)");

  // SO_PEERGROUPS (Linux >= 4.13) reports the groups captured at connect()
  // time, like SO_PEERCRED: no race with the peer exec'ing or exiting, unlike
  // reading /proc/PID/status.
  std::vector<gid_t> groups(32);
  for (int attempt = 0;; attempt++) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      break;
    }
    if (errno == ERANGE && attempt < 4 && glen / sizeof(gid_t) > groups.size()) {
      groups.resize(glen / sizeof(gid_t));
      continue;
    }
    THROW_ERRNO(env, errno, "getsockopt(SO_PEERGROUPS)");
  }

  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  Napi::Array arr = Napi::Array::New(env, groups.size());
  for (size_t i = 0; i < groups.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, groups[i]));
  out.Set("groups", arr);
  return out;
}

static Napi::Value PeerCredOfFd(const Napi::CallbackInfo& info) {
  REQUIRE_ARGUMENT_FD(0, fd);
  return PeerCredObject(info.Env(), static_cast<int>(fd));
}

// eventfdCreate() -> fd: a region's doorbell (docs/ARCHITECTURE.md, "Region
// events"). Non-blocking, because one open file description is shared by
// every holder: a jammed counter must give EAGAIN, never block a notifier.
static Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) THROW_ERRNO(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// dupFd(fd) -> fcntl(F_DUPFD_CLOEXEC): a second fd on the same open file
// description (what an anonymous inode like an eventfd allows).
static Napi::Value DupFd(const Napi::CallbackInfo& info) {
  REQUIRE_ARGUMENT_FD(0, fd);
  int d = fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0);
  if (d < 0) THROW_ERRNO(info.Env(), errno, "fcntl(F_DUPFD_CLOEXEC)");
  return Napi::Number::New(info.Env(), d);
}

// flockExclusive(fd) -> true when this process now holds flock(LOCK_EX) on
// fd, false when another open file description holds it. Held until the fd
// is closed or the process exits (however it exits): the broker's state-dir lock.
static Napi::Value FlockExclusive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_ARGUMENT_FD(0, fd);
  int rc;
  do {
    rc = flock(static_cast<int>(fd), LOCK_EX | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  THROW_ERRNO(env, errno, "flock");
}

// sdNotify(socketPath, message): one datagram to $NOTIFY_SOCKET, the
// sd_notify(3) protocol ("@name" is an abstract socket). Node has no
// AF_UNIX datagram sockets, so this lives here.
static Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  REQUIRE_ARGUMENT_STRING(0, where);
  REQUIRE_ARGUMENT_STRING(1, message);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (where.empty() || where.size() >= sizeof(addr.sun_path)) THROW_RANGE_ERROR(env, "NOTIFY_SOCKET path must be 1 to 107 bytes");
  memcpy(addr.sun_path, where.data(), where.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + where.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) THROW_ERRNO(env, errno, "socket");
  ssize_t n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  if (n < 0) THROW_ERRNO(env, err, "sendto");
  return env.Undefined();
}

// RLIMIT_NOFILE: the memfd backend holds one fd per region, so this is its
// ceiling. Raising the soft limit up to the hard one needs no privilege.
static Napi::Value NofileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool raise = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) THROW_ERRNO(env, errno, "getrlimit(RLIMIT_NOFILE)");
  if (raise && rl.rlim_cur < rl.rlim_max) {
    struct rlimit want = {rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) THROW_ERRNO(env, errno, "setrlimit(RLIMIT_NOFILE)");
    rl = want;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("soft", Napi::Number::New(env, rl.rlim_cur == RLIM_INFINITY ? -1 : static_cast<double>(rl.rlim_cur)));
  out.Set("hard", Napi::Number::New(env, rl.rlim_max == RLIM_INFINITY ? -1 : static_cast<double>(rl.rlim_max)));
  return out;
}

void InitFdOps(Napi::Env env, Napi::Object exports) {
  exports.Set("flockExclusive", Napi::Function::New(env, FlockExclusive, "flockExclusive"));
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  exports.Set("nofileLimit", Napi::Function::New(env, NofileLimit, "nofileLimit"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("getSeals", Napi::Function::New(env, GetSeals, "getSeals"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("peerCredOfFd", Napi::Function::New(env, PeerCredOfFd, "peerCredOfFd"));

  Napi::Object seal = Napi::Object::New(env);
  seal.Set("SEAL", Napi::Number::New(env, F_SEAL_SEAL));
  seal.Set("SHRINK", Napi::Number::New(env, F_SEAL_SHRINK));
  seal.Set("GROW", Napi::Number::New(env, F_SEAL_GROW));
  seal.Set("WRITE", Napi::Number::New(env, F_SEAL_WRITE));
  seal.Set("FUTURE_WRITE", Napi::Number::New(env, F_SEAL_FUTURE_WRITE));
  exports.Set("SEAL", seal);
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
}

}  // namespace shmb
