/*
 * Hand-written protobuf codec for the data-plane messages of
 * proto/shmbroker/v1/dataplane.proto (internal to libshmbroker).
 *
 * Encoding follows proto3: scalar fields equal to their default are not
 * emitted, a set oneof member is always emitted (even when empty).
 * Decoding is strict about structure (truncation, overlong varints, wrong
 * wire types for known fields, groups, field number 0 are errors) and
 * lenient about content (unknown fields are skipped, a repeated scalar keeps
 * its last value, a repeated message field keeps the last occurrence, as
 * protobufjs does). Strings are returned as views into the input buffer;
 * nothing here allocates.
 */
#ifndef SHMB_PROTO_H
#define SHMB_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define SHMB_PROTO_MAX_PACKET 4096

/* AccessMode values on the wire. */
#define SHMB_PB_MODE_UNSPECIFIED 0
#define SHMB_PB_MODE_READ_ONLY 1
#define SHMB_PB_MODE_READ_WRITE 2

typedef struct {
    const char *ptr; /* not NUL-terminated; may contain any bytes */
    size_t len;
} shmb_pb_str;

/* ---- DataRequest ---------------------------------------------------- */

enum shmb_pb_req_kind {
    SHMB_PB_REQ_NONE = 0,
    SHMB_PB_REQ_ACQUIRE = 2,
    SHMB_PB_REQ_RELEASE = 3,
    SHMB_PB_REQ_OFFER = 4
};

typedef struct {
    uint64_t request_id;
    enum shmb_pb_req_kind kind;
    union {
        struct { shmb_pb_str region; int32_t mode; int want_events; } acquire;
        struct { uint64_t lease_id; } release;
        struct { shmb_pb_str region; uint64_t lease_id; int32_t mode; } offer;
    } u;
} shmb_pb_request;

/* ---- DataReply ------------------------------------------------------ */

enum shmb_pb_reply_kind {
    SHMB_PB_REPLY_NONE = 0,
    SHMB_PB_REPLY_ACQUIRE = 2,
    SHMB_PB_REPLY_RELEASE = 3,
    SHMB_PB_REPLY_ERROR = 4,
    SHMB_PB_REPLY_REVOCATION = 5,
    SHMB_PB_REPLY_OFFER = 6
};

typedef struct {
    uint64_t request_id;
    enum shmb_pb_reply_kind kind;
    union {
        struct {
            uint64_t lease_id;
            shmb_pb_str region;
            uint64_t size_bytes;
            int32_t mode;
            shmb_pb_str grant;
            shmb_pb_str backend;
            /* RegionEvents (field 7): present when the request wanted events. */
            int has_events;
            int may_notify;
            uint32_t page_version;
            /* RegionEvents.kernel: the region fd is the doorbell, no more fds. */
            int kernel_events;
        } acquire;
        struct { uint64_t lease_id; } release;
        struct { int32_t code; shmb_pb_str reason; shmb_pb_str message; } error;
        struct {
            uint64_t lease_id;
            shmb_pb_str region;
            shmb_pb_str reason;
            uint32_t grace_ms;
        } revocation;
        struct { int accepted; uint64_t lease_id; } offer;
    } u;
} shmb_pb_reply;

/*
 * Encoders write into buf (capacity cap) and return the number of bytes
 * written, or -EMSGSIZE if the message does not fit, or -EINVAL for a
 * request kind they do not know.
 */
long shmb_pb_encode_request(const shmb_pb_request *req, uint8_t *buf, size_t cap);
long shmb_pb_encode_reply(const shmb_pb_reply *rep, uint8_t *buf, size_t cap);

/*
 * Decoders fill *out (zeroed first) from buf[0..len) and return 0, or
 * -EBADMSG for anything malformed. String views point into buf.
 */
int shmb_pb_decode_request(const uint8_t *buf, size_t len, shmb_pb_request *out);
int shmb_pb_decode_reply(const uint8_t *buf, size_t len, shmb_pb_reply *out);

#endif
