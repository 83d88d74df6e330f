"""Python binding of libshmbroker (clients/c), through ctypes.

    import shmbroker

    with shmbroker.Client() as client:                 # finds data.sock like the CLI
        with client.acquire("frames", "ro") as region:
            view = region.buf                           # memoryview (read-only for "ro")
            header = bytes(view[:64])
            del view                                    # drop views before release
            arr = region.numpy("uint8")                 # NumPy array, if NumPy is there
            del arr

Revocation notices: poll ``client.fileno()`` (select/poll/selectors/asyncio
add_reader) and call ``client.process_events()``, which returns the
revocations (and calls the optional callback for each). Nothing runs behind
the application's back: no thread, no signal handler.

Memory safety: a region's memory is exposed through a Python ``mmap`` of the
lease fd (next to the mapping libshmbroker made), so Python's buffer protocol
tracks every memoryview and NumPy array taken from it. ``release()`` refuses
(``BufferError``) while any of them is alive instead of unmapping memory that
Python code could still touch. The library is found through
``$SHMBROKER_LIB``, else the in-tree ``clients/c/build/libshmbroker.so.0``,
else the system's ``libshmbroker.so.0``.

Not thread-safe per client, like the C library: use one Client per thread or
lock around its calls.

Why one module of ~500 lines: the ctypes declarations (_declare) must match
clients/c/include/shmbroker.h line for line, and Region and Client are thin
wrappers over them; one module keeps the binding and its C signatures
side by side, and it is the whole public API a user reads.
"""

import ctypes
import ctypes.util
import errno as _errno
import mmap as _mmap
import os
from typing import Callable, Dict, List, NamedTuple, Optional

__all__ = [
    "Client",
    "Region",
    "Revocation",
    "ShmbrokerError",
    "READ_ONLY",
    "READ_WRITE",
    "socket_path",
    "library_path",
]

READ_ONLY = "ro"
READ_WRITE = "rw"
_MODES = {READ_ONLY: 1, READ_WRITE: 2, "read-only": 1, "read-write": 2, 1: 1, 2: 2}
_MODE_NAMES = {1: READ_ONLY, 2: READ_WRITE}


class _Revocation(ctypes.Structure):
    _fields_ = [
        ("lease_id", ctypes.c_uint64),
        ("region", ctypes.c_char_p),
        ("reason", ctypes.c_char_p),
        ("grace_ms", ctypes.c_uint32),
    ]


_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(_Revocation), ctypes.c_void_p)

_lib = None
_lib_path = None


def _candidates():
    env = os.environ.get("SHMBROKER_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "..", "..", "c", "build", "libshmbroker.so.0")
    found = ctypes.util.find_library("shmbroker")
    if found:
        yield found
    yield "libshmbroker.so.0"


def _load():
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    errors = []
    for cand in _candidates():
        if os.sep in cand and not os.path.exists(cand):
            errors.append("%s: not found" % cand)
            continue
        try:
            lib = ctypes.CDLL(cand, use_errno=False)
        except OSError as e:
            errors.append(str(e))
            continue
        _declare(lib)
        _lib, _lib_path = lib, cand
        return lib
    raise ImportError("shmbroker: cannot load libshmbroker (build it with `make -C clients/c` "
                      "or set SHMBROKER_LIB): " + "; ".join(errors))


def _declare(lib):
    P, I, S, U64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint64
    sigs = {
        "shmb_socket_path": (I, [S, ctypes.c_char_p, ctypes.c_size_t]),
        "shmb_connect": (I, [S, ctypes.POINTER(P)]),
        "shmb_connect_explain": (I, [S, ctypes.POINTER(P), ctypes.c_char_p, ctypes.c_size_t]),
        "shmb_connect_fd": (I, [I, ctypes.POINTER(P)]),
        "shmb_client_close": (None, [P]),
        "shmb_client_fd": (I, [P]),
        "shmb_set_timeout": (None, [P, I]),
        "shmb_set_revocation_callback": (None, [P, _CALLBACK, P]),
        "shmb_process_events": (I, [P]),
        "shmb_events_pending": (I, [P]),
        "shmb_last_error_reason": (S, [P]),
        "shmb_last_error_message": (S, [P]),
        "shmb_acquire": (I, [P, S, I, ctypes.POINTER(P)]),
        "shmb_region_release": (I, [P]),
        "shmb_region_offer": (I, [P, P]),
        "shmb_region_data": (P, [P]),
        "shmb_region_size": (ctypes.c_size_t, [P]),
        "shmb_region_mode": (I, [P]),
        "shmb_region_lease_id": (U64, [P]),
        "shmb_region_name": (S, [P]),
        "shmb_region_backend": (S, [P]),
        "shmb_region_grant": (S, [P]),
        "shmb_region_fd": (I, [P]),
        "shmb_region_revoked": (I, [P]),
        "shmb_region_revoke_reason": (S, [P]),
        "shmb_strerror": (S, [I]),
        "shmb_acquire_ex": (I, [P, S, I, ctypes.c_uint, ctypes.POINTER(P)]),
        "shmb_region_events_enabled": (I, [P]),
        "shmb_region_may_notify": (I, [P]),
        "shmb_region_seq": (U64, [P]),
        "shmb_region_notify": (I, [P, ctypes.POINTER(U64)]),
        "shmb_region_wait": (I, [P, U64, I, ctypes.POINTER(U64)]),
        "shmb_region_event_fd": (I, [P]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def library_path() -> str:
    """Path of the libshmbroker shared object in use."""
    _load()
    return _lib_path


class ShmbrokerError(OSError):
    """A libshmbroker call failed. ``errno`` is the (positive) errno value;
    ``reason`` and ``broker_message`` carry the broker's ErrorReply, if any."""

    def __init__(self, rc: int, what: str, reason: str = "", broker_message: str = ""):
        err = -rc if rc < 0 else rc
        text = _load().shmb_strerror(-err).decode("utf-8", "replace")
        detail = "%s: %s" % (what, text)
        if reason:
            detail += " [%s]" % reason
        if broker_message:
            detail += " %s" % broker_message
        super().__init__(err, detail)
        self.reason = reason
        self.broker_message = broker_message


def _s(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


def socket_path(runtime_dir: Optional[str] = None) -> str:
    """The data socket path for ``runtime_dir``, or the discovered one."""
    lib = _load()
    buf = ctypes.create_string_buffer(4096)
    rc = lib.shmb_socket_path(runtime_dir.encode() if runtime_dir else None, buf, len(buf))
    if rc < 0:
        raise ShmbrokerError(rc, "socket_path")
    return buf.value.decode()


class Revocation(NamedTuple):
    """A revocation notice. ``region`` is the Region object it concerns."""

    region: "Region"
    lease_id: int
    name: str
    reason: str
    grace_ms: int


class Event(NamedTuple):
    """What ``Region.wait()`` saw: type is "notify" (the sequence moved past
    ``after``; ``count`` notifies since), "timeout" or "revoked"."""
    type: str
    seq: int
    count: int


_ACQUIRE_EVENTS = 1
_EVENT_TYPES = {0: "timeout", 1: "notify", 2: "revoked"}


class Region:
    """A mapped lease. Release it with ``release()`` or a ``with`` block."""

    def __init__(self, client: "Client", handle: int):
        lib = _load()
        self._client = client
        self._h = handle
        self.name: str = _s(lib.shmb_region_name(handle))
        self.size: int = lib.shmb_region_size(handle)
        self.mode: str = _MODE_NAMES[lib.shmb_region_mode(handle)]
        self.lease_id: int = lib.shmb_region_lease_id(handle)
        self.backend: str = _s(lib.shmb_region_backend(handle))
        self.grant: str = _s(lib.shmb_region_grant(handle))
        access = _mmap.ACCESS_WRITE if self.mode == READ_WRITE else _mmap.ACCESS_READ
        # Python's own mapping of the lease fd, so that exports are tracked.
        self._mm: Optional[_mmap.mmap] = _mmap.mmap(lib.shmb_region_fd(handle), self.size, access=access)
        self._buf: Optional[memoryview] = None

    def _handle(self) -> int:
        if self._h is None:
            raise ValueError("region %r is released" % self.name)
        return self._h

    @property
    def released(self) -> bool:
        return self._h is None

    @property
    def buf(self) -> memoryview:
        """The region as a memoryview of bytes (read-only for "ro")."""
        self._handle()
        return memoryview(self._mm)

    def numpy(self, dtype="uint8", shape=None, offset: int = 0):
        """The region as a NumPy array (read-only for "ro"). Needs NumPy."""
        import numpy as np  # optional dependency

        self._handle()
        dt = np.dtype(dtype)
        count = -1 if shape is None else int(np.prod(shape))
        arr = np.frombuffer(self._mm, dtype=dt, count=count, offset=offset)
        return arr.reshape(shape) if shape is not None else arr

    @property
    def address(self) -> int:
        """Address of libshmbroker's own mapping (for ctypes/FFI users). Not
        tracked: do not use it after release()."""
        return _load().shmb_region_data(self._handle())

    @property
    def fd(self) -> int:
        """The lease fd (owned by the region)."""
        return _load().shmb_region_fd(self._handle())

    @property
    def revoked(self) -> bool:
        """True once a revocation notice for this lease was read."""
        if self._h is None:
            return False
        return bool(_load().shmb_region_revoked(self._h))

    @property
    def revoke_reason(self) -> Optional[str]:
        if self._h is None:
            return None
        r = _load().shmb_region_revoke_reason(self._h)
        return _s(r) if r is not None else None

    # ---- region events (docs/ARCHITECTURE.md, "Region events") ----------

    @property
    def events_enabled(self) -> bool:
        """True when acquired with ``events=True``."""
        return bool(_load().shmb_region_events_enabled(self._handle()))

    @property
    def may_notify(self) -> bool:
        """True when this lease may notify (acquired "rw" with events)."""
        return bool(_load().shmb_region_may_notify(self._handle()))

    @property
    def seq(self) -> int:
        """The region's sequence: how many notifies so far. Read it before
        you look at the memory and pass it to ``wait(after=...)``."""
        return _load().shmb_region_seq(self._handle())

    def notify(self) -> int:
        """Wake every waiter of the region (never through the broker: on kmod
        one ioctl on the region fd, which is the doorbell). Returns the new
        sequence. ShmbrokerError EPERM on a wait-only lease (on kmod the
        kernel's answer)."""
        out = ctypes.c_uint64()
        rc = _load().shmb_region_notify(self._handle(), ctypes.byref(out))
        if rc < 0:
            raise ShmbrokerError(rc, "notify %s" % self.name)
        return out.value

    def wait(self, after: Optional[int] = None, timeout: Optional[float] = None) -> Event:
        """Block until the sequence differs from ``after`` (default: the
        current one), the lease is revoked, or ``timeout`` seconds pass. The
        GIL is released while blocked."""
        h = self._handle()
        lib = _load()
        if after is None:
            after = lib.shmb_region_seq(h)
        ms = -1 if timeout is None else max(0, int(timeout * 1000))
        out = ctypes.c_uint64()
        rc = lib.shmb_region_wait(h, after, ms, ctypes.byref(out))
        if rc < 0:
            raise ShmbrokerError(rc, "wait %s" % self.name)
        return Event(_EVENT_TYPES[rc], out.value, out.value - after if rc == 1 else 0)

    def fileno(self) -> int:
        """A pollable fd (for selectors / asyncio ``add_reader``): readable
        after a notify or a broker notice; then call ``wait(after, 0)``."""
        fd = _load().shmb_region_event_fd(self._handle())
        if fd < 0:
            raise ShmbrokerError(fd, "event fd of %s (acquire with events=True)" % self.name)
        return fd

    async def wait_async(self, after: Optional[int] = None) -> Event:
        """``wait()`` for asyncio: the event loop watches ``fileno()``."""
        import asyncio

        loop = asyncio.get_running_loop()
        if after is None:
            after = self.seq
        while True:
            ev = self.wait(after, 0)
            if ev.type != "timeout":
                return ev
            ready = loop.create_future()
            fd = self.fileno()
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    def release(self) -> None:
        """Unmap and give the lease back. Raises BufferError (and releases
        nothing) while memoryviews or arrays of the region are alive; raises
        ShmbrokerError if the broker did not confirm (the region is released
        locally anyway). Releasing twice is a no-op."""
        if self._h is None:
            return
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError as e:
                raise BufferError("region %r still has memoryviews or arrays; drop them before release()" %
                                  self.name) from e
            self._mm = None
        h, self._h = self._h, None
        client = self._client
        if client is not None:
            client._regions.pop(h, None)
        rc = _load().shmb_region_release(h)
        if rc < 0 and client is not None and not client._closed:
            raise ShmbrokerError(rc, "release %s" % self.name, *client._last_error())

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._h is None else ("revoked" if self.revoked else "mapped")
        return "<shmbroker.Region %s %s %d bytes lease=%d %s>" % (self.name, self.mode, self.size,
                                                                   self.lease_id, state)


class Client:
    """A connection to the broker's data socket.

    ``Client()`` discovers the socket like the CLI ($SHMBROKER_RUNTIME_DIR,
    else /run/shmbroker for every uid: never a per-user or /tmp fallback);
    ``Client(socket_path)`` or ``Client(runtime_dir=DIR)`` names it. The
    library authenticates the broker before sending anything (directory and
    socket owners, SO_PEERCRED root or $SHMBROKER_BROKER_UID, region fds
    checked before mapping); a mismatch raises ShmbrokerError with
    ``reason == "BROKER_NOT_TRUSTED"`` and a message naming what did not match.
    """

    def __init__(self, socket_path: Optional[str] = None, *, runtime_dir: Optional[str] = None,
                 timeout_ms: Optional[int] = None, _fd: Optional[int] = None):
        lib = _load()
        self._closed = True
        self._regions: Dict[int, Region] = {}
        self._collected: List[tuple] = []
        h = ctypes.c_void_p()
        if _fd is not None:
            rc = lib.shmb_connect_fd(_fd, ctypes.byref(h))
            what = "connect_fd"
        else:
            if socket_path is None and runtime_dir is not None:
                socket_path = globals()["socket_path"](runtime_dir)
            why = ctypes.create_string_buffer(512)
            rc = lib.shmb_connect_explain(socket_path.encode() if socket_path else None, ctypes.byref(h),
                                          why, len(why))
            what = "connect %s" % (socket_path or "(discovered)")
            if rc == -_errno.EPERM:
                # The library authenticated the broker and it did not match: say what.
                raise ShmbrokerError(rc, what, "BROKER_NOT_TRUSTED", _s(why.value))
            if rc < 0 and why.value:
                what += ": " + _s(why.value)
        if rc < 0:
            raise ShmbrokerError(rc, what)
        self._h = h.value
        self._closed = False
        if timeout_ms is not None:
            lib.shmb_set_timeout(self._h, timeout_ms)

        def collect(_c, region, notice, _arg):
            n = notice.contents
            self._collected.append((region, n.lease_id, _s(n.region), _s(n.reason), n.grace_ms))

        self._cb = _CALLBACK(collect)  # keep a reference for the C side
        lib.shmb_set_revocation_callback(self._h, self._cb, None)

    @classmethod
    def from_fd(cls, fd: int, timeout_ms: Optional[int] = None) -> "Client":
        """Adopt a connected SOCK_SEQPACKET socket fd (an int or a socket
        object, detached here). The client owns it from then on."""
        if hasattr(fd, "detach"):
            fd = fd.detach()
        try:
            return cls(timeout_ms=timeout_ms, _fd=fd)
        except Exception:
            os.close(fd)
            raise

    def _handle(self) -> int:
        if self._closed:
            raise ValueError("client is closed")
        return self._h

    def _last_error(self):
        lib = _load()
        return _s(lib.shmb_last_error_reason(self._h)), _s(lib.shmb_last_error_message(self._h))

    def fileno(self) -> int:
        """The socket fd to poll for POLLIN (do not read from or close it)."""
        return _load().shmb_client_fd(self._handle())

    def set_timeout(self, timeout_ms: int) -> None:
        _load().shmb_set_timeout(self._handle(), timeout_ms)

    @property
    def events_pending(self) -> int:
        """Notices read during other calls and not yet dispatched."""
        return _load().shmb_events_pending(self._handle())

    def acquire(self, name: str, mode="ro", events: bool = False) -> Region:
        """Acquire and map region ``name`` ("ro" or "rw"); with
        ``events=True`` also take its doorbell (notify, wait, fileno)."""
        lib = _load()
        try:
            m = _MODES[mode]
        except (KeyError, TypeError):
            raise ValueError("mode must be 'ro' or 'rw', not %r" % (mode,)) from None
        out = ctypes.c_void_p()
        rc = lib.shmb_acquire_ex(self._handle(), name.encode("utf-8"), m,
                                 _ACQUIRE_EVENTS if events else 0, ctypes.byref(out))
        if rc < 0:
            raise ShmbrokerError(rc, "acquire %s" % name, *self._last_error())
        try:
            region = Region(self, out.value)
        except BaseException:
            lib.shmb_region_release(out.value)
            raise
        self._regions[out.value] = region
        return region

    def offer(self, region: Region) -> None:
        """Offer a region still held from an earlier connection (after a
        broker restart) over this one. On success the region belongs to this
        client; raises ShmbrokerError (errno ESTALE) if the broker refused,
        and the region is then marked revoked: release it."""
        lib = _load()
        rc = lib.shmb_region_offer(self._handle(), region._handle())
        if rc < 0:
            raise ShmbrokerError(rc, "offer %s" % region.name, *self._last_error())
        old = region._client
        if old is not None and old is not self:
            old._regions.pop(region._h, None)
        region._client = self
        self._regions[region._h] = region

    def process_events(self, callback: Optional[Callable[[Revocation], None]] = None) -> List[Revocation]:
        """Read pending notices without blocking, mark the leases revoked and
        return them (calling ``callback(revocation)`` for each first). Raises
        ShmbrokerError if the connection broke (after handing out what was
        read before)."""
        lib = _load()
        self._collected = []
        rc = lib.shmb_process_events(self._handle())
        out = []
        for handle, lease, name, reason, grace in self._collected:
            region = self._regions.get(handle)
            if region is not None:
                out.append(Revocation(region, lease, name, reason, grace))
        self._collected = []
        for rev in out:
            if callback is not None:
                callback(rev)
        if rc < 0:
            raise ShmbrokerError(rc, "process_events")
        return out

    def close(self) -> None:
        """Close the connection. Regions still held stay mapped (detached);
        release() them to unmap."""
        if self._closed:
            return
        self._closed = True
        for region in self._regions.values():
            region._client = None
        self._regions = {}
        _load().shmb_client_close(self._h)
        self._h = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
