// KmodDevice: an open /dev/shmbroker and its ioctls (uAPI header
// kmod/include/uapi/linux/shmbroker.h). Region and grant ids are BigInts:
// they start at a random point above 2^32 at each module load.
#include <fcntl.h>
#include <linux/shmbroker.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "handles.h"
#include "util.h"

namespace shmb {

// The sizes are part of the ioctl numbers (the module asserts the same):
// a header that changed them would only ever get ENOTTY.
static_assert(sizeof(struct shmbroker_create) == 56, "uAPI struct size");
static_assert(sizeof(struct shmbroker_open) == 56, "uAPI struct size");
static_assert(sizeof(struct shmbroker_revoke) == 32, "uAPI struct size");
static_assert(sizeof(struct shmbroker_destroy) == 32, "uAPI struct size");
static_assert(sizeof(struct shmbroker_region_info) == 64, "uAPI struct size");
static_assert(sizeof(struct shmbroker_list) == 40, "uAPI struct size");
static_assert(sizeof(struct shmbroker_list_grants) == 48, "uAPI struct size");

class KmodDevice : public Napi::ObjectWrap<KmodDevice> {
 public:
  static Napi::Function Class(Napi::Env env) {
    return DefineClass(env, "NativeKmodDevice",
                       {
                           StaticMethod<&KmodDevice::Open>("open"),
                           InstanceMethod<&KmodDevice::Create>("create"),
                           InstanceMethod<&KmodDevice::OpenGrant>("openGrant"),
                           InstanceMethod<&KmodDevice::Revoke>("revoke"),
                           InstanceMethod<&KmodDevice::Destroy>("destroy"),
                           InstanceMethod<&KmodDevice::Info>("info"),
                           InstanceMethod<&KmodDevice::List>("list"),
                           InstanceMethod<&KmodDevice::ListGrants>("listGrants"),
                           InstanceMethod<&KmodDevice::Close>("close"),
                           InstanceAccessor<&KmodDevice::GetFd>("fd"),
                       });
  }

  explicit KmodDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KmodDevice>(info) {}
  ~KmodDevice() override { CloseFd(); }

 private:
  void CloseFd() {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  // ioctl that throws on failure; false when an exception is pending.
  bool Ioctl(Napi::Env env, unsigned long request, void* arg, const char* name) {
    if (fd_ < 0) {
      ThrowErrno(env, EBADF, name);
      return false;
    }
    int r;
    do {
      r = ioctl(fd_, request, arg);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      ThrowErrno(env, errno, name);
      return false;
    }
    return true;
  }

  // open(path) -> KmodDevice
  static Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_STRING(0, path);
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) THROW_ERRNO(env, errno, "open");
    Napi::Object obj = GetData(env)->kmodCtor.New({});
    if (env.IsExceptionPending() || obj.IsEmpty()) {
      close(fd);
      return Napi::Value();
    }
    KmodDevice::Unwrap(obj)->fd_ = fd;
    return obj;
  }

  // create(size, hugepage, numaNode) -> bigint; numaNode -1 = none
  Napi::Value Create(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_SIZE(0, size);
    REQUIRE_ARGUMENT_BOOL(1, hugepage);
    REQUIRE_ARGUMENT_INT(2, numaNode, -1, INT32_MAX);
    struct shmbroker_create c;
    std::memset(&c, 0, sizeof(c));
    c.size = static_cast<__u64>(size);
    c.flags = hugepage ? SHMBROKER_CREATE_HUGEPAGE : 0;
    c.numa_node = numaNode < 0 ? SHMBROKER_NUMA_NO_NODE : static_cast<__u32>(numaNode);
    SHMB_RETURN_IF(!Ioctl(env, SHMBROKER_IOC_CREATE, &c, "ioctl(SHMBROKER_IOC_CREATE)"));
    return Napi::BigInt::New(env, static_cast<uint64_t>(c.region_id));
  }

  // openGrant(regionId, readOnly, cloexec[, allowNotify]) -> { fd, grantId }
  // allowNotify: SHMBROKER_OPEN_ALLOW_NOTIFY (a read-only grant may NOTIFY).
  Napi::Value OpenGrant(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_U64(0, regionId);
    REQUIRE_ARGUMENT_BOOL(1, readOnly);
    REQUIRE_ARGUMENT_BOOL(2, cloexec);
    bool allowNotify = false;
    if (info.Length() > 3 && !info[3].IsUndefined()) SHMB_RETURN_IF(!::shmb::ArgBool(info, 3, "allowNotify", &allowNotify));
    struct shmbroker_open o;
    std::memset(&o, 0, sizeof(o));
    o.region_id = regionId;
    o.flags = (readOnly ? SHMBROKER_OPEN_RDONLY : 0) | (cloexec ? SHMBROKER_OPEN_CLOEXEC : 0) |
              (allowNotify ? SHMBROKER_OPEN_ALLOW_NOTIFY : 0);
    SHMB_RETURN_IF(!Ioctl(env, SHMBROKER_IOC_OPEN, &o, "ioctl(SHMBROKER_IOC_OPEN)"));
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", Napi::Number::New(env, o.fd));
    out.Set("grantId", Napi::BigInt::New(env, static_cast<uint64_t>(o.grant_id)));
    return out;
  }

  Napi::Value Revoke(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_U64(0, grantId);
    struct shmbroker_revoke r;
    std::memset(&r, 0, sizeof(r));
    r.grant_id = grantId;
    SHMB_RETURN_IF(!Ioctl(env, SHMBROKER_IOC_REVOKE, &r, "ioctl(SHMBROKER_IOC_REVOKE)"));
    return env.Undefined();
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_U64(0, regionId);
    struct shmbroker_destroy d;
    std::memset(&d, 0, sizeof(d));
    d.region_id = regionId;
    SHMB_RETURN_IF(!Ioctl(env, SHMBROKER_IOC_DESTROY, &d, "ioctl(SHMBROKER_IOC_DESTROY)"));
    return env.Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_U64(0, regionId);
    struct shmbroker_region_info ri;
    std::memset(&ri, 0, sizeof(ri));
    ri.region_id = regionId;
    SHMB_RETURN_IF(!Ioctl(env, SHMBROKER_IOC_INFO, &ri, "ioctl(SHMBROKER_IOC_INFO)"));
    Napi::Object out = Napi::Object::New(env);
    out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(ri.size)));
    out.Set("hugepage", Napi::Boolean::New(env, (ri.flags & SHMBROKER_CREATE_HUGEPAGE) != 0));
    out.Set("numaNode", Napi::Number::New(env, ri.numa_node == SHMBROKER_NUMA_NO_NODE
                                                    ? -1.0
                                                    : static_cast<double>(ri.numa_node)));
    out.Set("openGrants", Napi::Number::New(env, ri.open_grants));
    out.Set("mappings", Napi::Number::New(env, ri.mappings));
    return out;
  }

  // Pages through a list ioctl (LIST or LIST_GRANTS: both take start_id,
  // ids_ptr and count, and return ascending ids); `req` carries the other
  // inputs. One loop for both, so a fix to the paging reaches both.
  template <typename Req>
  Napi::Value ListIds(Napi::Env env, Req req, unsigned long request, const char* name) {
    constexpr uint32_t kPage = 256;
    std::vector<__u64> page(kPage);
    std::vector<uint64_t> ids;
    uint64_t start = 0;  // ids are never 0; ">= 0" is everything
    for (;;) {
      req.start_id = start;
      req.ids_ptr = reinterpret_cast<uintptr_t>(page.data());
      req.count = kPage;
      SHMB_RETURN_IF(!Ioctl(env, request, &req, name));
      uint32_t n = req.count > kPage ? kPage : req.count;
      for (uint32_t i = 0; i < n; i++) ids.push_back(page[i]);
      if (n < kPage) break;
      uint64_t last = page[n - 1];
      if (last == UINT64_MAX || last < start) break;  // defensive: ids are ascending
      start = last + 1;
    }
    Napi::Array arr = Napi::Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::BigInt::New(env, ids[i]));
    return arr;
  }

  // list() -> bigint[]: every region id.
  Napi::Value List(const Napi::CallbackInfo& info) {
    struct shmbroker_list l;
    std::memset(&l, 0, sizeof(l));
    return ListIds(info.Env(), l, SHMBROKER_IOC_LIST, "ioctl(SHMBROKER_IOC_LIST)");
  }

  // listGrants(regionId) -> bigint[]: the region's live grant ids.
  Napi::Value ListGrants(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    REQUIRE_ARGUMENT_U64(0, regionId);
    struct shmbroker_list_grants l;
    std::memset(&l, 0, sizeof(l));
    l.region_id = regionId;
    return ListIds(env, l, SHMBROKER_IOC_LIST_GRANTS, "ioctl(SHMBROKER_IOC_LIST_GRANTS)");
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFd();
    return info.Env().Undefined();
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  int fd_ = -1;
};

void InitKmod(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = KmodDevice::Class(env);
  GetData(env)->kmodCtor = Napi::Persistent(cls);
  exports.Set("KmodDevice", cls);
}

}  // namespace shmb
