"""The Python binding against a fake broker on a SOCK_SEQPACKET socketpair.

Replies are queued on the peer end before the call that reads them (requests
are answered in order). Run: python3 -m unittest discover -s clients/python/tests
(needs clients/c built: make -C clients/c).
Over ~400 lines on purpose: one fake peer, one independent scenario per test.
"""

import array
import errno
import gc
import fcntl
import os
import select
import socket
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import shmbroker  # noqa: E402

try:
    import numpy
except ImportError:  # NumPy is optional
    numpy = None


# --- a minimal protobuf writer for DataReply (test side only) ---------------

def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v) if v else b""


def field_bytes(num, b, always=False):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b if (b or always) else b""


def reply(request_id, kind, body):
    return field_varint(1, request_id) + field_bytes(kind, body, always=True)


def acquire_reply(rid, lease, name, size, mode, backend="memfd"):
    body = (field_varint(1, lease) + field_bytes(2, name) + field_varint(3, size) + field_varint(4, mode) +
            field_bytes(6, backend))
    return reply(rid, 2, body)


def release_reply(rid, lease):
    return reply(rid, 3, field_varint(1, lease))


def error_reply(rid, code, reason, message="fake"):
    return reply(rid, 4, field_varint(1, code) + field_bytes(2, reason) + field_bytes(3, message))


def notice(lease, reason, grace=0, name="x"):
    return reply(0, 5, field_varint(1, lease) + field_bytes(2, name) + field_bytes(3, reason) +
                 field_varint(4, grace))


def read_varint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def parse(b):
    """Flat parse of a DataRequest: {field: value or nested dict}."""
    out, i = {}, 0
    while i < len(b):
        tag, i = read_varint(b, i)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            out[num], i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            chunk = b[i:i + n]
            i += n
            out[num] = parse(chunk) if num in (2, 3, 4) else chunk
        else:
            raise ValueError("unexpected wire type")
    return out


def open_fds():
    return len(os.listdir("/proc/self/fd"))


class FakePeerTest(unittest.TestCase):
    def setUp(self):
        gc.collect()
        self.fds_before = open_fds()
        a, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.client = shmbroker.Client.from_fd(a, timeout_ms=2000)
        self.memfds = []

    def tearDown(self):
        self.client.close()
        self.peer.close()
        for fd in self.memfds:
            os.close(fd)
        gc.collect()
        self.assertEqual(open_fds(), self.fds_before, "fd leak")

    def memfd(self, size, data=b""):
        # As the broker makes them (the library checks): private inode, size sealed.
        fd = os.memfd_create("fake", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size)
        os.fchmod(fd, 0o600)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        if data:
            os.pwrite(fd, data, 0)
        self.memfds.append(fd)
        return fd

    def ro(self, fd):
        r = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_CLOEXEC)
        self.memfds.append(r)
        return r

    def send(self, packet, fds=()):
        socket.send_fds(self.peer, [packet], list(fds))

    def request(self):
        return parse(self.peer.recv(4096, socket.MSG_DONTWAIT))

    def test_acquire_rw_memoryview_and_context_manager(self):
        fd = self.memfd(8192)
        self.send(acquire_reply(1, 7, "frames", 8192, 2), [fd])
        self.send(release_reply(2, 7))
        with self.client.acquire("frames", "rw") as region:
            self.assertEqual((region.name, region.size, region.mode, region.lease_id, region.backend),
                             ("frames", 8192, "rw", 7, "memfd"))
            self.assertFalse(region.revoked)
            view = region.buf
            self.assertFalse(view.readonly)
            view[100:105] = b"hello"
            del view
            self.assertEqual(os.pread(fd, 5, 100), b"hello")
            # libshmbroker's own mapping shows the same bytes.
            import ctypes
            self.assertEqual(ctypes.string_at(region.address + 100, 5), b"hello")
        self.assertTrue(region.released)
        req = self.request()
        self.assertEqual(req[1], 1)
        self.assertEqual(req[2], {1: b"frames", 2: 2})
        self.assertEqual(self.request(), {1: 2, 3: {1: 7}})
        region.release()  # twice is a no-op
        with self.assertRaises(ValueError):
            region.buf

    def test_read_only_view(self):
        fd = self.memfd(4096, b"ro-data")
        self.send(acquire_reply(1, 3, "ro", 4096, 1), [self.ro(fd)])
        self.send(release_reply(2, 3))
        region = self.client.acquire("ro")
        view = region.buf
        self.assertTrue(view.readonly)
        self.assertEqual(bytes(view[:7]), b"ro-data")
        with self.assertRaises(TypeError):
            view[0] = 1
        del view
        region.release()

    @unittest.skipIf(numpy is None, "NumPy not installed")
    def test_numpy(self):
        fd = self.memfd(4096)
        self.send(acquire_reply(1, 3, "arr", 4096, 2), [fd])
        self.send(release_reply(2, 3))
        region = self.client.acquire("arr", "rw")
        arr = region.numpy("uint32", shape=(32, 32))
        arr[:] = numpy.arange(1024, dtype=numpy.uint32).reshape(32, 32)
        self.assertEqual(int.from_bytes(os.pread(fd, 4, 4 * 1000), "little"), 1000)
        self.assertTrue(arr.flags.writeable)
        # An array keeps the mapping alive: release refuses until it is gone.
        with self.assertRaises(BufferError):
            region.release()
        del arr
        region.release()

    @unittest.skipIf(numpy is None, "NumPy not installed")
    def test_numpy_read_only(self):
        fd = self.memfd(4096)
        self.send(acquire_reply(1, 3, "arr", 4096, 1), [self.ro(fd)])
        self.send(release_reply(2, 3))
        with self.client.acquire("arr", "ro") as region:
            arr = region.numpy()
            self.assertFalse(arr.flags.writeable)
            with self.assertRaises(ValueError):
                arr[0] = 1
            del arr

    def test_release_refused_while_views_exist(self):
        fd = self.memfd(4096)
        self.send(acquire_reply(1, 3, "r", 4096, 2), [fd])
        self.send(release_reply(2, 3))
        region = self.client.acquire("r", "rw")
        view = region.buf[10:20]  # even a slice keeps it
        with self.assertRaises(BufferError):
            region.release()
        self.assertFalse(region.released)
        view.release()
        region.release()
        self.assertTrue(region.released)

    def test_broker_error(self):
        self.send(error_reply(1, 7, "NO_GRANT", "uid 1001 has no grant"))
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.acquire("frames", "rw")
        self.assertEqual(cm.exception.errno, errno.EACCES)
        self.assertEqual(cm.exception.reason, "NO_GRANT")
        self.assertEqual(cm.exception.broker_message, "uid 1001 has no grant")
        self.assertIsInstance(cm.exception, OSError)

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            self.client.acquire("x", "wr")
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.acquire("Bad Name")
        self.assertEqual(cm.exception.errno, errno.EINVAL)

    def test_malformed_replies(self):
        fd = self.memfd(8192)
        # Size disagreeing with the fd: EPROTO, fd closed, lease handed back.
        self.send(acquire_reply(1, 9, "frames", 4096, 1), [fd])
        self.send(release_reply(2, 9))
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.acquire("frames")
        self.assertEqual(cm.exception.errno, errno.EPROTO)
        # Two fds.
        self.send(acquire_reply(3, 9, "frames", 8192, 1), [fd, fd])
        self.send(release_reply(4, 9))
        with self.assertRaises(shmbroker.ShmbrokerError):
            self.client.acquire("frames")
        # Garbage: the connection is broken from then on.
        self.send(b"\xff\xff\xff", [fd])
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.acquire("frames")
        self.assertEqual(cm.exception.errno, errno.EPROTO)
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.acquire("frames")
        self.assertEqual(cm.exception.errno, errno.ENOTCONN)

    def test_oversized_reply(self):
        self.send(b"\x08\x01" + b"\x00" * 5000)
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.acquire("frames")
        self.assertEqual(cm.exception.errno, errno.EPROTO)

    def test_revocation_notice(self):
        fd1, fd2 = self.memfd(4096), self.memfd(4096)
        self.send(acquire_reply(1, 10, "aaa", 4096, 2), [fd1])
        a = self.client.acquire("aaa", "rw")
        # Notice between the next request and its reply: queued, marked.
        self.send(notice(10, "GRANT_REVOKED", 1500, "aaa"))
        self.send(acquire_reply(2, 11, "bbb", 4096, 2), [fd2])
        b = self.client.acquire("bbb", "rw")
        self.assertTrue(a.revoked)
        self.assertEqual(a.revoke_reason, "GRANT_REVOKED")
        self.assertFalse(b.revoked)
        self.assertEqual(self.client.events_pending, 1)
        seen = []
        revs = self.client.process_events(seen.append)
        self.assertEqual(len(revs), 1)
        self.assertIs(revs[0].region, a)
        self.assertEqual((revs[0].lease_id, revs[0].name, revs[0].reason, revs[0].grace_ms),
                         (10, "aaa", "GRANT_REVOKED", 1500))
        self.assertEqual(seen, revs)
        # Pushed while idle: the fd becomes readable.
        self.send(notice(11, "REGION_DELETED"))
        r, _, _ = select.select([self.client], [], [], 2)
        self.assertEqual(r, [self.client])
        revs = self.client.process_events()
        self.assertEqual([x.region for x in revs], [b])
        self.assertEqual(self.client.process_events(), [])
        # A revoked lease the broker forgot still releases cleanly.
        self.send(error_reply(3, 5, "NOT_FOUND"))
        a.release()
        self.send(release_reply(4, 11))
        b.release()
        del revs, seen

    def test_peer_closes(self):
        fd = self.memfd(4096)
        self.send(acquire_reply(1, 10, "aaa", 4096, 1), [self.ro(fd)])
        region = self.client.acquire("aaa")
        self.peer.close()
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            self.client.process_events()
        self.assertEqual(cm.exception.errno, errno.ECONNRESET)
        with self.assertRaises(shmbroker.ShmbrokerError):
            region.release()  # released locally, broker not told
        self.assertTrue(region.released)

    def test_offer_moves_region_to_new_client(self):
        fd = self.memfd(4096, b"keep")
        self.send(acquire_reply(1, 10, "aaa", 4096, 2), [fd])
        region = self.client.acquire("aaa", "rw")
        self.client.close()  # the broker went away
        a, peer2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        client2 = shmbroker.Client.from_fd(a, timeout_ms=2000)
        try:
            peer2.send(reply(1, 6, field_varint(1, 1) + field_varint(2, 10)))
            client2.offer(region)
            msg, fds, _, _ = socket.recv_fds(peer2, 4096, 4)
            self.assertEqual(parse(msg), {1: 1, 4: {1: b"aaa", 2: 10, 3: 2}})
            self.assertEqual(len(fds), 1)
            os.close(fds[0])
            peer2.send(notice(10, "GRANT_REVOKED"))
            self.assertEqual([r.region for r in client2.process_events()], [region])
            # refused offer: ESTALE, marked revoked
            peer2.send(reply(2, 6, b""))
            with self.assertRaises(shmbroker.ShmbrokerError) as cm:
                client2.offer(region)
            self.assertEqual(cm.exception.errno, errno.ESTALE)
            _, fds, _, _ = socket.recv_fds(peer2, 4096, 4)
            for f in fds:
                os.close(f)
            peer2.send(release_reply(3, 10))
            region.release()
        finally:
            client2.close()
            peer2.close()

    def test_client_close_detaches(self):
        fd = self.memfd(4096, b"keep")
        self.send(acquire_reply(1, 10, "aaa", 4096, 1), [self.ro(fd)])
        region = self.client.acquire("aaa")
        self.client.close()
        self.assertEqual(bytes(region.buf[:4]), b"keep")
        region.release()

    def test_random_garbage(self):
        import random
        rnd = random.Random(5)
        fd = self.memfd(4096)
        good = acquire_reply(1, 7, "frames", 4096, 1)
        for _ in range(300):
            a, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            client = shmbroker.Client.from_fd(a, timeout_ms=200)
            b = bytearray(good)
            for _ in range(rnd.randint(1, 3)):
                b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            socket.send_fds(peer, [bytes(b)], [fd] * rnd.randint(0, 2))
            peer.send(release_reply(2, 7))
            try:
                with client.acquire("frames") as region:
                    region.buf.release()
            except shmbroker.ShmbrokerError:
                pass
            client.close()
            peer.close()


class DiscoveryTest(unittest.TestCase):
    def test_socket_path(self):
        self.assertEqual(shmbroker.socket_path("/x/y"), "/x/y/data.sock")
        old = os.environ.get("SHMBROKER_RUNTIME_DIR")
        os.environ["SHMBROKER_RUNTIME_DIR"] = "/from/env"
        try:
            self.assertEqual(shmbroker.socket_path(), "/from/env/data.sock")
        finally:
            if old is None:
                del os.environ["SHMBROKER_RUNTIME_DIR"]
            else:
                os.environ["SHMBROKER_RUNTIME_DIR"] = old

    def test_connect_missing(self):
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            shmbroker.Client("/nonexistent/shmbroker/data.sock")
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            shmbroker.Client(runtime_dir="/nonexistent/dir")
        self.assertEqual(cm.exception.errno, errno.ENOENT)

    def test_from_fd_wrong_type(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self.assertRaises(shmbroker.ShmbrokerError) as cm:
            shmbroker.Client.from_fd(a)
        self.assertEqual(cm.exception.errno, errno.EPROTOTYPE)
        b.close()

    def test_library_path(self):
        self.assertTrue(shmbroker.library_path())


if __name__ == "__main__":
    unittest.main()
