/* Hand-written protobuf codec for the data-plane messages; see proto.h.
 *
 * Why ~600 lines in one file: it mirrors proto/shmbroker/v1/dataplane.proto
 * message by message (a writer, then a reader per message, on one varint /
 * length-delimited core), so a change to the .proto is one file to update and
 * test/clients-c/proto-compat.test.ts checks it against the broker's codec. */
#include "proto.h"

#include <errno.h>
#include <string.h>

/* Wire types. */
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5

/* ------------------------------------------------------------------ */
/* Writer: with buf == NULL it only counts, which sizes sub-messages.  */

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow;
} writer;

static void w_byte(writer *w, uint8_t b)
{
    if (w->buf) {
        if (w->len >= w->cap) {
            w->overflow = 1;
            return;
        }
        w->buf[w->len] = b;
    }
    w->len++;
}

static void w_varint(writer *w, uint64_t v)
{
    while (v >= 0x80) {
        w_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    w_byte(w, (uint8_t)v);
}

static void w_tag(writer *w, uint32_t field, unsigned wt)
{
    w_varint(w, ((uint64_t)field << 3) | wt);
}

static void w_bytes(writer *w, const void *p, size_t n)
{
    if (w->buf) {
        if (n > w->cap || w->len > w->cap - n) {
            w->overflow = 1;
            w->len += n;
            return;
        }
        memcpy(w->buf + w->len, p, n);
    }
    w->len += n;
}

/* proto3: default values are not emitted. */
static void f_u64(writer *w, uint32_t field, uint64_t v)
{
    if (v) {
        w_tag(w, field, WT_VARINT);
        w_varint(w, v);
    }
}

/* int32/enum: negative values are sign-extended to 64 bits (10 bytes). */
static void f_i32(writer *w, uint32_t field, int32_t v)
{
    if (v) {
        w_tag(w, field, WT_VARINT);
        w_varint(w, (uint64_t)(int64_t)v);
    }
}

static void f_str(writer *w, uint32_t field, shmb_pb_str s)
{
    if (s.len) {
        w_tag(w, field, WT_LEN);
        w_varint(w, s.len);
        w_bytes(w, s.ptr, s.len);
    }
}

/* Body writers for each sub-message; called twice (count, then write). */
typedef void (*body_fn)(writer *w, const void *msg);

static void f_msg(writer *w, uint32_t field, body_fn body, const void *msg)
{
    writer counter = {NULL, 0, 0, 0};
    body(&counter, msg);
    w_tag(w, field, WT_LEN);
    w_varint(w, counter.len);
    body(w, msg);
}

static void body_acquire_req(writer *w, const void *m)
{
    const shmb_pb_request *r = m;
    f_str(w, 1, r->u.acquire.region);
    f_i32(w, 2, r->u.acquire.mode);
    f_u64(w, 3, r->u.acquire.want_events ? 1 : 0);
}

static void body_release_req(writer *w, const void *m)
{
    const shmb_pb_request *r = m;
    f_u64(w, 1, r->u.release.lease_id);
}

static void body_offer_req(writer *w, const void *m)
{
    const shmb_pb_request *r = m;
    f_str(w, 1, r->u.offer.region);
    f_u64(w, 2, r->u.offer.lease_id);
    f_i32(w, 3, r->u.offer.mode);
}

long shmb_pb_encode_request(const shmb_pb_request *req, uint8_t *buf, size_t cap)
{
    writer w = {buf, cap, 0, 0};
    f_u64(&w, 1, req->request_id);
    switch (req->kind) {
    case SHMB_PB_REQ_NONE:
        break;
    case SHMB_PB_REQ_ACQUIRE:
        f_msg(&w, 2, body_acquire_req, req);
        break;
    case SHMB_PB_REQ_RELEASE:
        f_msg(&w, 3, body_release_req, req);
        break;
    case SHMB_PB_REQ_OFFER:
        f_msg(&w, 4, body_offer_req, req);
        break;
    default:
        return -EINVAL;
    }
    if (w.overflow || w.len > cap)
        return -EMSGSIZE;
    return (long)w.len;
}

static void body_region_events(writer *w, const void *m)
{
    const shmb_pb_reply *r = m;
    f_u64(w, 1, r->u.acquire.may_notify ? 1 : 0);
    f_u64(w, 2, r->u.acquire.page_version);
    f_u64(w, 3, r->u.acquire.kernel_events ? 1 : 0);
}

static void body_acquire_rep(writer *w, const void *m)
{
    const shmb_pb_reply *r = m;
    f_u64(w, 1, r->u.acquire.lease_id);
    f_str(w, 2, r->u.acquire.region);
    f_u64(w, 3, r->u.acquire.size_bytes);
    f_i32(w, 4, r->u.acquire.mode);
    f_str(w, 5, r->u.acquire.grant);
    f_str(w, 6, r->u.acquire.backend);
    if (r->u.acquire.has_events)
        f_msg(w, 7, body_region_events, r);
}

static void body_release_rep(writer *w, const void *m)
{
    const shmb_pb_reply *r = m;
    f_u64(w, 1, r->u.release.lease_id);
}

static void body_error_rep(writer *w, const void *m)
{
    const shmb_pb_reply *r = m;
    f_i32(w, 1, r->u.error.code);
    f_str(w, 2, r->u.error.reason);
    f_str(w, 3, r->u.error.message);
}

static void body_revocation_rep(writer *w, const void *m)
{
    const shmb_pb_reply *r = m;
    f_u64(w, 1, r->u.revocation.lease_id);
    f_str(w, 2, r->u.revocation.region);
    f_str(w, 3, r->u.revocation.reason);
    f_u64(w, 4, r->u.revocation.grace_ms);
}

static void body_offer_rep(writer *w, const void *m)
{
    const shmb_pb_reply *r = m;
    f_u64(w, 1, r->u.offer.accepted ? 1 : 0);
    f_u64(w, 2, r->u.offer.lease_id);
}

long shmb_pb_encode_reply(const shmb_pb_reply *rep, uint8_t *buf, size_t cap)
{
    writer w = {buf, cap, 0, 0};
    f_u64(&w, 1, rep->request_id);
    switch (rep->kind) {
    case SHMB_PB_REPLY_NONE:
        break;
    case SHMB_PB_REPLY_ACQUIRE:
        f_msg(&w, 2, body_acquire_rep, rep);
        break;
    case SHMB_PB_REPLY_RELEASE:
        f_msg(&w, 3, body_release_rep, rep);
        break;
    case SHMB_PB_REPLY_ERROR:
        f_msg(&w, 4, body_error_rep, rep);
        break;
    case SHMB_PB_REPLY_REVOCATION:
        f_msg(&w, 5, body_revocation_rep, rep);
        break;
    case SHMB_PB_REPLY_OFFER:
        f_msg(&w, 6, body_offer_rep, rep);
        break;
    default:
        return -EINVAL;
    }
    if (w.overflow || w.len > cap)
        return -EMSGSIZE;
    return (long)w.len;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader;

static int r_varint(reader *r, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end)
            return -EBADMSG; /* truncated */
        uint8_t b = *r->p++;
        if (i == 9 && b > 1)
            return -EBADMSG; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
        shift += 7;
    }
    return -EBADMSG; /* longer than 10 bytes */
}

static int r_tag(reader *r, uint32_t *field, unsigned *wt)
{
    uint64_t v;
    if (r_varint(r, &v) < 0)
        return -EBADMSG;
    if (v > UINT32_MAX || (v >> 3) == 0)
        return -EBADMSG;
    *field = (uint32_t)(v >> 3);
    *wt = (unsigned)(v & 7);
    return 0;
}

/* A length-delimited field: a view of its payload, bounds-checked. */
static int r_len(reader *r, reader *sub)
{
    uint64_t n;
    if (r_varint(r, &n) < 0)
        return -EBADMSG;
    if (n > (uint64_t)(r->end - r->p))
        return -EBADMSG;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

static int r_skip(reader *r, unsigned wt)
{
    uint64_t v;
    reader sub;
    switch (wt) {
    case WT_VARINT:
        return r_varint(r, &v);
    case WT_I64:
        if (r->end - r->p < 8)
            return -EBADMSG;
        r->p += 8;
        return 0;
    case WT_LEN:
        return r_len(r, &sub);
    case WT_I32:
        if (r->end - r->p < 4)
            return -EBADMSG;
        r->p += 4;
        return 0;
    default: /* groups (3, 4) are not used by proto3; 6, 7 are invalid */
        return -EBADMSG;
    }
}

/* Field readers: check the wire type, then read. */
static int rd_u64(reader *r, unsigned wt, uint64_t *out)
{
    return wt == WT_VARINT ? r_varint(r, out) : -EBADMSG;
}

static int rd_u32(reader *r, unsigned wt, uint32_t *out)
{
    uint64_t v;
    if (wt != WT_VARINT || r_varint(r, &v) < 0)
        return -EBADMSG;
    *out = (uint32_t)v; /* proto: uint32 keeps the low 32 bits */
    return 0;
}

static int rd_i32(reader *r, unsigned wt, int32_t *out)
{
    uint32_t v;
    if (rd_u32(r, wt, &v) < 0)
        return -EBADMSG;
    *out = (int32_t)v;
    return 0;
}

static int rd_bool(reader *r, unsigned wt, int *out)
{
    uint64_t v;
    if (rd_u64(r, wt, &v) < 0)
        return -EBADMSG;
    *out = v != 0;
    return 0;
}

static int rd_str(reader *r, unsigned wt, shmb_pb_str *out)
{
    reader sub;
    if (wt != WT_LEN || r_len(r, &sub) < 0)
        return -EBADMSG;
    out->ptr = (const char *)sub.p;
    out->len = (size_t)(sub.end - sub.p);
    return 0;
}

#define NEXT_FIELD(r, field, wt)                 \
    if (r_tag((r), &(field), &(wt)) < 0)         \
        return -EBADMSG

static int dec_acquire_req(reader *r, shmb_pb_request *q)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_str(r, wt, &q->u.acquire.region); break;
        case 2: rc = rd_i32(r, wt, &q->u.acquire.mode); break;
        case 3: rc = rd_bool(r, wt, &q->u.acquire.want_events); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_release_req(reader *r, shmb_pb_request *q)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_u64(r, wt, &q->u.release.lease_id); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_offer_req(reader *r, shmb_pb_request *q)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_str(r, wt, &q->u.offer.region); break;
        case 2: rc = rd_u64(r, wt, &q->u.offer.lease_id); break;
        case 3: rc = rd_i32(r, wt, &q->u.offer.mode); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

int shmb_pb_decode_request(const uint8_t *buf, size_t len, shmb_pb_request *out)
{
    reader r = {buf, buf + len};
    memset(out, 0, sizeof *out);
    while (r.p < r.end) {
        uint32_t f;
        unsigned wt;
        reader sub;
        NEXT_FIELD(&r, f, wt);
        if (f >= 2 && f <= 4) {
            /* oneof member: the last one on the wire wins, fresh. */
            if (wt != WT_LEN || r_len(&r, &sub) < 0)
                return -EBADMSG;
            memset(&out->u, 0, sizeof out->u);
            out->kind = (enum shmb_pb_req_kind)f;
            int rc = f == 2 ? dec_acquire_req(&sub, out)
                   : f == 3 ? dec_release_req(&sub, out)
                            : dec_offer_req(&sub, out);
            if (rc < 0)
                return -EBADMSG;
        } else if (f == 1) {
            if (rd_u64(&r, wt, &out->request_id) < 0)
                return -EBADMSG;
        } else if (r_skip(&r, wt) < 0) {
            return -EBADMSG;
        }
    }
    return 0;
}

static int dec_region_events(reader *r, shmb_pb_reply *p)
{
    uint32_t f;
    unsigned wt;
    p->u.acquire.has_events = 1;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_bool(r, wt, &p->u.acquire.may_notify); break;
        case 2: rc = rd_u32(r, wt, &p->u.acquire.page_version); break;
        case 3: rc = rd_bool(r, wt, &p->u.acquire.kernel_events); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_acquire_rep(reader *r, shmb_pb_reply *p)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_u64(r, wt, &p->u.acquire.lease_id); break;
        case 2: rc = rd_str(r, wt, &p->u.acquire.region); break;
        case 3: rc = rd_u64(r, wt, &p->u.acquire.size_bytes); break;
        case 4: rc = rd_i32(r, wt, &p->u.acquire.mode); break;
        case 5: rc = rd_str(r, wt, &p->u.acquire.grant); break;
        case 6: rc = rd_str(r, wt, &p->u.acquire.backend); break;
        case 7: {
            reader sub;
            rc = wt == WT_LEN && r_len(r, &sub) == 0 ? dec_region_events(&sub, p) : -EBADMSG;
            break;
        }
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_release_rep(reader *r, shmb_pb_reply *p)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_u64(r, wt, &p->u.release.lease_id); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_error_rep(reader *r, shmb_pb_reply *p)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_i32(r, wt, &p->u.error.code); break;
        case 2: rc = rd_str(r, wt, &p->u.error.reason); break;
        case 3: rc = rd_str(r, wt, &p->u.error.message); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_revocation_rep(reader *r, shmb_pb_reply *p)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_u64(r, wt, &p->u.revocation.lease_id); break;
        case 2: rc = rd_str(r, wt, &p->u.revocation.region); break;
        case 3: rc = rd_str(r, wt, &p->u.revocation.reason); break;
        case 4: rc = rd_u32(r, wt, &p->u.revocation.grace_ms); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

static int dec_offer_rep(reader *r, shmb_pb_reply *p)
{
    uint32_t f;
    unsigned wt;
    while (r->p < r->end) {
        NEXT_FIELD(r, f, wt);
        int rc;
        switch (f) {
        case 1: rc = rd_bool(r, wt, &p->u.offer.accepted); break;
        case 2: rc = rd_u64(r, wt, &p->u.offer.lease_id); break;
        default: rc = r_skip(r, wt); break;
        }
        if (rc < 0)
            return -EBADMSG;
    }
    return 0;
}

int shmb_pb_decode_reply(const uint8_t *buf, size_t len, shmb_pb_reply *out)
{
    reader r = {buf, buf + len};
    memset(out, 0, sizeof *out);
    while (r.p < r.end) {
        uint32_t f;
        unsigned wt;
        reader sub;
        NEXT_FIELD(&r, f, wt);
        if (f >= 2 && f <= 6) {
            if (wt != WT_LEN || r_len(&r, &sub) < 0)
                return -EBADMSG;
            memset(&out->u, 0, sizeof out->u);
            out->kind = (enum shmb_pb_reply_kind)f;
            int rc;
            switch (f) {
            case 2: rc = dec_acquire_rep(&sub, out); break;
            case 3: rc = dec_release_rep(&sub, out); break;
            case 4: rc = dec_error_rep(&sub, out); break;
            case 5: rc = dec_revocation_rep(&sub, out); break;
            default: rc = dec_offer_rep(&sub, out); break;
            }
            if (rc < 0)
                return -EBADMSG;
        } else if (f == 1) {
            if (rd_u64(&r, wt, &out->request_id) < 0)
                return -EBADMSG;
        } else if (r_skip(&r, wt) < 0) {
            return -EBADMSG;
        }
    }
    return 0;
}
