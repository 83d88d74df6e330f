// See uvpoll.h.
#include "uvpoll.h"

#include "util.h"

namespace shmb {

namespace {

void FreePollHandle(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }

}  // namespace

uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

uv_poll_t* NewPoll(Napi::Env env, int fd, void* owner) {
  uv_poll_t* poll = new uv_poll_t;
  int r = uv_poll_init(LoopOf(env), poll, fd);
  if (r < 0) {
    delete poll;
    ThrowErrno(env, -r, "uv_poll_init");
    return nullptr;
  }
  poll->data = owner;
  return poll;
}

void ClosePoll(uv_poll_t** poll) {
  if (*poll == nullptr) return;
  (*poll)->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(*poll), FreePollHandle);
  *poll = nullptr;
}

bool CallFromLoop(Napi::Env env, napi_async_context ctx, napi_value recv, napi_value fn,
                  const std::vector<napi_value>& args) {
  napi_value result;
  napi_status st = napi_make_callback(env, ctx, recv, fn, args.size(), args.data(), &result);
  if (st == napi_ok) return true;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) return false;
  napi_value err;
  napi_get_and_clear_last_exception(env, &err);
  napi_fatal_exception(env, err);
  return true;
}

}  // namespace shmb
