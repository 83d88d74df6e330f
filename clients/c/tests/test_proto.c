/*
 * Unit tests of the hand-written data-plane codec (src/proto.c): exact bytes
 * for known messages, round trips, every malformed shape we can think of,
 * and random inputs (run under valgrind by `make valgrind`).
 * Cross-checked against protobufjs by test/clients-c/proto-compat.test.ts.
 */
#include "proto.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static shmb_pb_str S(const char *s)
{
    shmb_pb_str r;
    r.ptr = s;
    r.len = strlen(s);
    return r;
}

static int str_eq(shmb_pb_str a, const char *b)
{
    return a.len == strlen(b) && memcmp(a.ptr, b, a.len) == 0;
}

static void test_encode_known_bytes(void)
{
    uint8_t buf[64];
    shmb_pb_request q;
    memset(&q, 0, sizeof q);
    q.request_id = 1;
    q.kind = SHMB_PB_REQ_ACQUIRE;
    q.u.acquire.region = S("a");
    q.u.acquire.mode = 2;
    static const uint8_t want1[] = {0x08, 0x01, 0x12, 0x05, 0x0a, 0x01, 'a', 0x10, 0x02};
    CHECK_EQ(shmb_pb_encode_request(&q, buf, sizeof buf), sizeof want1);
    CHECK(memcmp(buf, want1, sizeof want1) == 0);

    /* Release with lease 0: the oneof member is still emitted, empty. */
    memset(&q, 0, sizeof q);
    q.request_id = 300;
    q.kind = SHMB_PB_REQ_RELEASE;
    static const uint8_t want2[] = {0x08, 0xac, 0x02, 0x1a, 0x00};
    CHECK_EQ(shmb_pb_encode_request(&q, buf, sizeof buf), sizeof want2);
    CHECK(memcmp(buf, want2, sizeof want2) == 0);

    /* Offer: fields in number order, lease id as a multi-byte varint. */
    memset(&q, 0, sizeof q);
    q.request_id = 2;
    q.kind = SHMB_PB_REQ_OFFER;
    q.u.offer.region = S("r");
    q.u.offer.lease_id = 128;
    q.u.offer.mode = 1;
    static const uint8_t want3[] = {0x08, 0x02, 0x22, 0x08, 0x0a, 0x01, 'r', 0x10, 0x80, 0x01, 0x18, 0x01};
    CHECK_EQ(shmb_pb_encode_request(&q, buf, sizeof buf), sizeof want3);
    CHECK(memcmp(buf, want3, sizeof want3) == 0);

    /* Nothing set encodes to nothing. */
    memset(&q, 0, sizeof q);
    CHECK_EQ(shmb_pb_encode_request(&q, buf, sizeof buf), 0);

    /* Negative int32 is ten bytes. */
    shmb_pb_reply r;
    memset(&r, 0, sizeof r);
    r.kind = SHMB_PB_REPLY_ERROR;
    r.u.error.code = -1;
    static const uint8_t want4[] = {0x22, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK_EQ(shmb_pb_encode_reply(&r, buf, sizeof buf), sizeof want4);
    CHECK(memcmp(buf, want4, sizeof want4) == 0);
}

static void test_encode_overflow(void)
{
    uint8_t buf[128];
    shmb_pb_request q;
    memset(&q, 0, sizeof q);
    q.request_id = UINT64_MAX;
    q.kind = SHMB_PB_REQ_ACQUIRE;
    q.u.acquire.region = S("some-region.name_1");
    q.u.acquire.mode = 1;
    long full = shmb_pb_encode_request(&q, buf, sizeof buf);
    CHECK(full > 0);
    for (long cap = 0; cap < full; cap++)
        CHECK_EQ(shmb_pb_encode_request(&q, buf, (size_t)cap), -EMSGSIZE);
    CHECK_EQ(shmb_pb_encode_request(&q, buf, (size_t)full), full);
    q.kind = (enum shmb_pb_req_kind)9;
    CHECK_EQ(shmb_pb_encode_request(&q, buf, sizeof buf), -EINVAL);
}

static void test_request_round_trip(void)
{
    uint8_t buf[SHMB_PROTO_MAX_PACKET];
    shmb_pb_request q, d;
    memset(&q, 0, sizeof q);
    q.request_id = 0x0123456789abcdefULL;
    q.kind = SHMB_PB_REQ_OFFER;
    q.u.offer.region = S("frames");
    q.u.offer.lease_id = UINT64_MAX;
    q.u.offer.mode = 2;
    long n = shmb_pb_encode_request(&q, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_EQ(shmb_pb_decode_request(buf, (size_t)n, &d), 0);
    CHECK(d.request_id == q.request_id);
    CHECK_EQ(d.kind, SHMB_PB_REQ_OFFER);
    CHECK(str_eq(d.u.offer.region, "frames"));
    CHECK(d.u.offer.lease_id == UINT64_MAX);
    CHECK_EQ(d.u.offer.mode, 2);
}

static void test_reply_round_trips(void)
{
    uint8_t buf[SHMB_PROTO_MAX_PACKET];
    shmb_pb_reply r, d;
    long n;

    memset(&r, 0, sizeof r);
    r.request_id = 77;
    r.kind = SHMB_PB_REPLY_ACQUIRE;
    r.u.acquire.lease_id = 9;
    r.u.acquire.region = S("frames");
    r.u.acquire.size_bytes = 1ULL << 40;
    r.u.acquire.mode = 1;
    r.u.acquire.grant = S("regions/frames/grants/g1");
    r.u.acquire.backend = S("memfd");
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    CHECK_EQ(shmb_pb_decode_reply(buf, (size_t)n, &d), 0);
    CHECK(d.request_id == 77 && d.kind == SHMB_PB_REPLY_ACQUIRE);
    CHECK(d.u.acquire.lease_id == 9 && d.u.acquire.size_bytes == (1ULL << 40));
    CHECK(d.u.acquire.mode == 1);
    CHECK(str_eq(d.u.acquire.region, "frames") && str_eq(d.u.acquire.backend, "memfd"));
    CHECK(str_eq(d.u.acquire.grant, "regions/frames/grants/g1"));

    memset(&r, 0, sizeof r);
    r.request_id = 3;
    r.kind = SHMB_PB_REPLY_ERROR;
    r.u.error.code = 7;
    r.u.error.reason = S("NO_GRANT");
    r.u.error.message = S("uid 1001 has no grant on frames");
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    CHECK_EQ(shmb_pb_decode_reply(buf, (size_t)n, &d), 0);
    CHECK(d.kind == SHMB_PB_REPLY_ERROR && d.u.error.code == 7);
    CHECK(str_eq(d.u.error.reason, "NO_GRANT"));
    CHECK(str_eq(d.u.error.message, "uid 1001 has no grant on frames"));

    memset(&r, 0, sizeof r);
    r.kind = SHMB_PB_REPLY_REVOCATION;
    r.u.revocation.lease_id = 5;
    r.u.revocation.region = S("frames");
    r.u.revocation.reason = S("GRANT_REVOKED");
    r.u.revocation.grace_ms = UINT32_MAX;
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    CHECK_EQ(shmb_pb_decode_reply(buf, (size_t)n, &d), 0);
    CHECK(d.request_id == 0 && d.kind == SHMB_PB_REPLY_REVOCATION);
    CHECK(d.u.revocation.lease_id == 5 && d.u.revocation.grace_ms == UINT32_MAX);
    CHECK(str_eq(d.u.revocation.reason, "GRANT_REVOKED"));

    memset(&r, 0, sizeof r);
    r.request_id = 4;
    r.kind = SHMB_PB_REPLY_OFFER;
    r.u.offer.accepted = 1;
    r.u.offer.lease_id = 12;
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    CHECK_EQ(shmb_pb_decode_reply(buf, (size_t)n, &d), 0);
    CHECK(d.kind == SHMB_PB_REPLY_OFFER && d.u.offer.accepted == 1 && d.u.offer.lease_id == 12);

    memset(&r, 0, sizeof r);
    r.request_id = 5;
    r.kind = SHMB_PB_REPLY_RELEASE;
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    CHECK_EQ(n, 4);
    CHECK_EQ(shmb_pb_decode_reply(buf, (size_t)n, &d), 0);
    CHECK(d.kind == SHMB_PB_REPLY_RELEASE && d.u.release.lease_id == 0);
}

static int decode_bytes(const uint8_t *b, size_t n, shmb_pb_reply *d)
{
    return shmb_pb_decode_reply(b, n, d);
}

static void test_decode_lenient(void)
{
    shmb_pb_reply d;
    /* Unknown fields of every wire type are skipped, at both levels. */
    static const uint8_t unk[] = {
        0x08, 0x05,                                     /* request_id 5 */
        0x78, 0x01,                                     /* field 15 varint */
        0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8,             /* field 16 fixed64 */
        0x8a, 0x01, 0x02, 'h', 'i',                     /* field 17 bytes */
        0x95, 0x01, 1, 2, 3, 4,                         /* field 18 fixed32 */
        0x1a, 0x06, 0x08, 0x09, 0x10, 0x01, 0x1a, 0x00, /* release{lease 9, f2, f3} */
    };
    CHECK_EQ(decode_bytes(unk, sizeof unk, &d), 0);
    CHECK(d.request_id == 5 && d.kind == SHMB_PB_REPLY_RELEASE && d.u.release.lease_id == 9);

    /* Repeated scalar: last wins. Two oneof members: the last wins, fresh. */
    static const uint8_t rep[] = {0x08, 0x01, 0x08, 0x02, 0x22, 0x02, 0x08, 0x07, 0x1a, 0x00};
    CHECK_EQ(decode_bytes(rep, sizeof rep, &d), 0);
    CHECK(d.request_id == 2 && d.kind == SHMB_PB_REPLY_RELEASE && d.u.release.lease_id == 0);

    /* Non-minimal varint (padded with 0x80) is accepted. */
    static const uint8_t pad[] = {0x08, 0x81, 0x80, 0x80, 0x00};
    CHECK_EQ(decode_bytes(pad, sizeof pad, &d), 0);
    CHECK(d.request_id == 1);

    /* Max uint64 in ten bytes. */
    static const uint8_t max[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    CHECK_EQ(decode_bytes(max, sizeof max, &d), 0);
    CHECK(d.request_id == UINT64_MAX);

    /* uint32 keeps the low 32 bits; int32 as well (5-byte negative form). */
    static const uint8_t low[] = {0x2a, 0x06, 0x20, 0xff, 0xff, 0xff, 0xff, 0x1f};
    CHECK_EQ(decode_bytes(low, sizeof low, &d), 0);
    CHECK(d.kind == SHMB_PB_REPLY_REVOCATION && d.u.revocation.grace_ms == UINT32_MAX);
    static const uint8_t neg5[] = {0x22, 0x06, 0x08, 0xff, 0xff, 0xff, 0xff, 0x0f};
    CHECK_EQ(decode_bytes(neg5, sizeof neg5, &d), 0);
    CHECK(d.kind == SHMB_PB_REPLY_ERROR && d.u.error.code == -1);

    /* Empty input is a valid, empty message. */
    CHECK_EQ(decode_bytes(unk, 0, &d), 0);
    CHECK(d.kind == SHMB_PB_REPLY_NONE && d.request_id == 0);
}

static void test_decode_malformed(void)
{
    shmb_pb_reply d;
    struct {
        const char *what;
        uint8_t b[16];
        size_t n;
    } cases[] = {
        {"truncated varint", {0x08, 0x80}, 2},
        {"11-byte varint", {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 12},
        {"varint over 64 bits", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 11},
        {"field number 0", {0x00, 0x01}, 2},
        {"tag over 32 bits", {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 6},
        {"group start", {0x0b}, 1},
        {"group end", {0x0c}, 1},
        {"wire type 6", {0x0e}, 1},
        {"wire type 7", {0x7f}, 1},
        {"request_id as bytes", {0x0a, 0x00}, 2},
        {"oneof as varint", {0x10, 0x01}, 2},
        {"length past end", {0x12, 0x05, 0x08}, 3},
        {"huge length", {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}, 6},
        {"fixed64 truncated", {0x79, 1, 2, 3}, 4},
        {"fixed32 truncated", {0x7d, 1, 2}, 3},
        {"inner truncated", {0x12, 0x02, 0x08, 0x80}, 4},
        {"inner wrong type", {0x12, 0x02, 0x0a, 0x00}, 4},
        {"inner string as varint", {0x12, 0x02, 0x10, 0x01}, 4},
        {"inner length past sub-end", {0x2a, 0x02, 0x12, 0x05, 'a', 'b'}, 6},
        {"inner group", {0x22, 0x01, 0x0b}, 3},
        {"only a tag", {0x08}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = decode_bytes(cases[i].b, cases[i].n, &d);
        if (rc != -EBADMSG)
            fprintf(stderr, "malformed case accepted: %s\n", cases[i].what);
        CHECK_EQ(rc, -EBADMSG);
    }
    shmb_pb_request q;
    static const uint8_t badreq[] = {0x12, 0x03, 0x0a, 0x05, 'a'};
    CHECK_EQ(shmb_pb_decode_request(badreq, sizeof badreq, &q), -EBADMSG);
}

/* Every prefix of a valid message either decodes or fails cleanly. */
static void test_prefixes(void)
{
    uint8_t buf[256];
    shmb_pb_reply r, d;
    memset(&r, 0, sizeof r);
    r.request_id = 123456;
    r.kind = SHMB_PB_REPLY_ACQUIRE;
    r.u.acquire.lease_id = 99;
    r.u.acquire.region = S("frames");
    r.u.acquire.size_bytes = 1 << 20;
    r.u.acquire.mode = 2;
    r.u.acquire.backend = S("kmod");
    long n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    CHECK(n > 0);
    int failed = 0;
    for (long len = 0; len < n; len++) {
        /* Copy to an exact-size heap block so valgrind sees any over-read. */
        uint8_t *p = malloc((size_t)len + 1);
        memcpy(p, buf, (size_t)len);
        int rc = shmb_pb_decode_reply(p, (size_t)len, &d);
        CHECK(rc == 0 || rc == -EBADMSG);
        if (rc < 0)
            failed++;
        else
            CHECK(d.kind != SHMB_PB_REPLY_ACQUIRE || d.u.acquire.size_bytes != (1 << 20) ||
                  d.u.acquire.backend.len != 4);
        free(p);
    }
    CHECK(failed > 0);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random bytes and mutated valid messages never crash the decoder. */
static void test_random(void)
{
    uint8_t valid[256];
    shmb_pb_reply r, d;
    memset(&r, 0, sizeof r);
    r.request_id = 1;
    r.kind = SHMB_PB_REPLY_ACQUIRE;
    r.u.acquire.lease_id = 2;
    r.u.acquire.region = S("region-name");
    r.u.acquire.size_bytes = 4096;
    r.u.acquire.mode = 1;
    r.u.acquire.grant = S("regions/region-name/grants/abc");
    r.u.acquire.backend = S("memfd");
    long vn = shmb_pb_encode_reply(&r, valid, sizeof valid);
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n;
        uint8_t *p;
        if (iter % 2) {
            n = (size_t)(rnd() % 64);
            p = malloc(n + 1);
            for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)rnd();
        } else {
            n = (size_t)vn;
            p = malloc(n + 1);
            memcpy(p, valid, n);
            int flips = 1 + (int)(rnd() % 4);
            for (int f = 0; f < flips; f++)
                p[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
        }
        int rc = shmb_pb_decode_reply(p, n, &d);
        if (rc == 0) {
            ok++;
            /* Views must stay inside the input. */
            if (d.kind == SHMB_PB_REPLY_ACQUIRE) {
                const char *lo = (const char *)p, *hi = (const char *)p + n;
                CHECK(d.u.acquire.region.len == 0 ||
                      (d.u.acquire.region.ptr >= lo && d.u.acquire.region.ptr + d.u.acquire.region.len <= hi));
            }
        } else {
            CHECK_EQ(rc, -EBADMSG);
            bad++;
        }
        shmb_pb_request q;
        rc = shmb_pb_decode_request(p, n, &q);
        CHECK(rc == 0 || rc == -EBADMSG);
        free(p);
    }
    CHECK(ok > 0 && bad > 0);
}

int main(void)
{
    RUN(test_encode_known_bytes);
    RUN(test_encode_overflow);
    RUN(test_request_round_trip);
    RUN(test_reply_round_trips);
    RUN(test_decode_lenient);
    RUN(test_decode_malformed);
    RUN(test_prefixes);
    RUN(test_random);
    return tu_summary("test_proto");
}
