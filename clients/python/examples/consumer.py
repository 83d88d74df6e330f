#!/usr/bin/env python3
"""Example: a Python consumer of the frame buffer that clients/c/examples/producer.c
writes (layout in clients/c/examples/frame.h).

    consumer.py REGION [--until FRAME] [--timeout SECONDS]

Maps REGION read-only through the broker and samples frames with the seqlock
protocol: copy the frame, keep it only if ``seq`` was even and unchanged around
the copy, then check every pixel and the checksum. Stops when it has seen frame
FRAME (default: any frame), on timeout, or when the broker revokes the lease.
Prints one JSON line: {"verified": N, "torn": N, "corrupt": N, "last_frame": F,
"width": W, "height": H, "revoked": bool}. Exit 0 if at least one frame was
verified and none was corrupt.
"""

import argparse
import json
import os
import select
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import shmbroker  # noqa: E402

HEADER = 64
MAGIC = b"SHMBFRM1"


def expected_frame(f, width, height):
    row = bytes((f + x) & 0xFF for x in range(width + 3 * height))
    return b"".join(row[3 * y:3 * y + width] for y in range(height))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("region")
    ap.add_argument("--until", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    stats = {"verified": 0, "torn": 0, "corrupt": 0, "last_frame": 0, "width": 0, "height": 0,
             "revoked": False}
    deadline = time.monotonic() + args.timeout
    with shmbroker.Client() as client, client.acquire(args.region, "ro") as region:
        view = region.buf
        try:
            while time.monotonic() < deadline:
                if client.events_pending or select.select([client], [], [], 0)[0]:
                    if client.process_events():
                        stats["revoked"] = True
                        break
                if bytes(view[:8]) != MAGIC:
                    time.sleep(0.002)
                    continue
                width, height, seq1 = struct.unpack_from("<IIQ", view, 8)
                if seq1 & 1:
                    stats["torn"] += 1
                    continue
                frame_no, checksum = struct.unpack_from("<QI", view, 24)
                pixels = bytes(view[HEADER:HEADER + width * height])
                seq2 = struct.unpack_from("<Q", view, 16)[0]
                if seq1 != seq2:
                    stats["torn"] += 1
                    continue
                if frame_no == stats["last_frame"]:
                    time.sleep(0.001)
                    continue
                ok = sum(pixels) & 0xFFFFFFFF == checksum and pixels == expected_frame(frame_no, width, height)
                stats["verified" if ok else "corrupt"] += 1
                stats.update(last_frame=frame_no, width=width, height=height)
                if args.until and frame_no >= args.until:
                    break
        finally:
            view.release()
    print(json.dumps(stats))
    return 0 if stats["verified"] > 0 and stats["corrupt"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
