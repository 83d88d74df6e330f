// How an addon handle watches an fd on Node's event loop: one uv_poll_t per
// handle, created on the loop of the handle's environment and freed only
// once libuv has closed it; and how a poll callback calls back into JS.
// Shared by seqpacket.cc (sockets, server) and doorbell.cc.
#ifndef SHMBROKER_NATIVE_UVPOLL_H
#define SHMBROKER_NATIVE_UVPOLL_H

#include <napi.h>
#include <uv.h>

#include <vector>

namespace shmb {

// The libuv loop of this environment (the main thread's or a worker's).
uv_loop_t* LoopOf(Napi::Env env);

// A new uv_poll_t on `fd` in env's loop with handle->data = owner, or nullptr
// with a pending NativeError (syscall "uv_poll_init").
uv_poll_t* NewPoll(Napi::Env env, int fd, void* owner);

// Detaches (data = nullptr, so a callback already queued does nothing) and
// closes *poll, which libuv frees once closed; sets *poll to nullptr. The fd
// may be closed right after: the loop no longer watches it.
void ClosePoll(uv_poll_t** poll);

// Calls fn(args...) as a top-level callback from the event loop (so
// process.nextTick and microtasks run after it). An exception thrown by the
// JS side is reported like any uncaught exception of an event listener.
// True when the callback ran (even if it threw: the exception is reported
// as uncaught); false when the environment refused to run JS at all (a
// worker being terminated), so what the arguments hand over is still ours.
bool CallFromLoop(Napi::Env env, napi_async_context ctx, napi_value recv, napi_value fn,
                  const std::vector<napi_value>& args);

}  // namespace shmb

#endif  // SHMBROKER_NATIVE_UVPOLL_H
