/*
 * Frame-buffer layout shared by examples/producer.c and
 * clients/python/examples/consumer.py (keep them in step).
 *
 *   offset  0  char[8]  magic "SHMBFRM1"
 *   offset  8  u32      width
 *   offset 12  u32      height
 *   offset 16  u64      seq: odd while the producer writes a frame, even when
 *                       it is complete (a seqlock: a reader copies the frame and
 *                       keeps it only if seq was even and unchanged around the copy)
 *   offset 24  u64      frame number of the complete frame
 *   offset 32  u32      checksum: sum of the frame's bytes mod 2^32
 *   offset 64  u8[width*height] pixels: pixel (x, y) of frame f is (f + x + 3*y) & 0xff
 * Little-endian, as the host.
 */
#ifndef SHMB_EXAMPLE_FRAME_H
#define SHMB_EXAMPLE_FRAME_H
#include <stdint.h>

#define FRAME_MAGIC "SHMBFRM1"
#define FRAME_HEADER 64

struct frame_header {
    char magic[8];
    uint32_t width;
    uint32_t height;
    uint64_t seq;
    uint64_t frame;
    uint32_t checksum;
    uint8_t pad[FRAME_HEADER - 36];
};
#endif
