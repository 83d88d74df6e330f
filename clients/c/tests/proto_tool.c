/*
 * Line-oriented bridge to the C codec, for the compatibility test against
 * protobufjs (test/clients-c/proto-compat.test.ts). One command per line on
 * stdin, one answer per line on stdout:
 *   decode-reply HEX | decode-request HEX   -> a JSON object (uint64 as decimal
 *                                              strings, strings as hex of their bytes)
 *                                              or {"error":"EBADMSG"}
 *   acquire ID REGIONHEX MODE               -> HEX of the encoded DataRequest
 *   release ID LEASE
 *   offer ID REGIONHEX LEASE MODE
 */
#include "proto.h"
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t hexbuf[8192];
static char strbuf[8192];

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

static void put_hex(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
}

static void js(const char *key, shmb_pb_str s)
{
    printf(",\"%s\":\"", key);
    put_hex(s.ptr, s.len);
    printf("\"");
}

static void ju(const char *key, uint64_t v)
{
    printf(",\"%s\":\"%" PRIu64 "\"", key, v);
}

static void ji(const char *key, long long v)
{
    printf(",\"%s\":%lld", key, v);
}

static void decode_reply(const uint8_t *b, size_t n)
{
    shmb_pb_reply r;
    if (shmb_pb_decode_reply(b, n, &r) < 0) {
        printf("{\"error\":\"EBADMSG\"}\n");
        return;
    }
    printf("{\"request_id\":\"%" PRIu64 "\"", r.request_id);
    switch (r.kind) {
    case SHMB_PB_REPLY_ACQUIRE:
        printf(",\"kind\":\"acquire\"");
        ju("lease_id", r.u.acquire.lease_id);
        js("region", r.u.acquire.region);
        ju("size_bytes", r.u.acquire.size_bytes);
        ji("mode", r.u.acquire.mode);
        js("grant", r.u.acquire.grant);
        js("backend", r.u.acquire.backend);
        break;
    case SHMB_PB_REPLY_RELEASE:
        printf(",\"kind\":\"release\"");
        ju("lease_id", r.u.release.lease_id);
        break;
    case SHMB_PB_REPLY_ERROR:
        printf(",\"kind\":\"error\"");
        ji("code", r.u.error.code);
        js("reason", r.u.error.reason);
        js("message", r.u.error.message);
        break;
    case SHMB_PB_REPLY_REVOCATION:
        printf(",\"kind\":\"revocation\"");
        ju("lease_id", r.u.revocation.lease_id);
        js("region", r.u.revocation.region);
        js("reason", r.u.revocation.reason);
        ji("grace_ms", r.u.revocation.grace_ms);
        break;
    case SHMB_PB_REPLY_OFFER:
        printf(",\"kind\":\"offer\"");
        ji("accepted", r.u.offer.accepted);
        ju("lease_id", r.u.offer.lease_id);
        break;
    default:
        printf(",\"kind\":\"none\"");
    }
    printf("}\n");
}

static void decode_request(const uint8_t *b, size_t n)
{
    shmb_pb_request q;
    if (shmb_pb_decode_request(b, n, &q) < 0) {
        printf("{\"error\":\"EBADMSG\"}\n");
        return;
    }
    printf("{\"request_id\":\"%" PRIu64 "\"", q.request_id);
    switch (q.kind) {
    case SHMB_PB_REQ_ACQUIRE:
        printf(",\"kind\":\"acquire\"");
        js("region", q.u.acquire.region);
        ji("mode", q.u.acquire.mode);
        break;
    case SHMB_PB_REQ_RELEASE:
        printf(",\"kind\":\"release\"");
        ju("lease_id", q.u.release.lease_id);
        break;
    case SHMB_PB_REQ_OFFER:
        printf(",\"kind\":\"offer\"");
        js("region", q.u.offer.region);
        ju("lease_id", q.u.offer.lease_id);
        ji("mode", q.u.offer.mode);
        break;
    default:
        printf(",\"kind\":\"none\"");
    }
    printf("}\n");
}

static void encode(const shmb_pb_request *q)
{
    uint8_t out[SHMB_PROTO_MAX_PACKET];
    long n = shmb_pb_encode_request(q, out, sizeof out);
    if (n < 0) {
        printf("error %ld\n", n);
        return;
    }
    put_hex(out, (size_t)n);
    printf("\n");
}

int main(void)
{
    static char line[20000];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32], a[8200];
        uint64_t id = 0, lease = 0;
        int mode = 0;
        size_t n = 0;
        shmb_pb_request q;
        line[strcspn(line, "\n")] = '\0';
        memset(&q, 0, sizeof q);
        if (sscanf(line, "%31s", cmd) != 1)
            continue;
        if (!strcmp(cmd, "decode-reply") || !strcmp(cmd, "decode-request")) {
            const char *hex = line + strlen(cmd);
            while (*hex == ' ')
                hex++;
            if (unhex(hex, hexbuf, sizeof hexbuf, &n) < 0) {
                printf("{\"error\":\"BADHEX\"}\n");
                continue;
            }
            /* Exact-size copy so valgrind catches over-reads. */
            uint8_t *copy = malloc(n ? n : 1);
            memcpy(copy, hexbuf, n);
            if (!strcmp(cmd, "decode-reply"))
                decode_reply(copy, n);
            else
                decode_request(copy, n);
            free(copy);
        } else if (!strcmp(cmd, "acquire") &&
                   sscanf(line, "%*s %" SCNu64 " %8199s %d", &id, a, &mode) == 3) {
            if (!strcmp(a, "-"))
                a[0] = '\0';
            unhex(a, (uint8_t *)strbuf, sizeof strbuf, &n);
            q.request_id = id;
            q.kind = SHMB_PB_REQ_ACQUIRE;
            q.u.acquire.region.ptr = strbuf;
            q.u.acquire.region.len = n;
            q.u.acquire.mode = mode;
            encode(&q);
        } else if (!strcmp(cmd, "release") && sscanf(line, "%*s %" SCNu64 " %" SCNu64, &id, &lease) == 2) {
            q.request_id = id;
            q.kind = SHMB_PB_REQ_RELEASE;
            q.u.release.lease_id = lease;
            encode(&q);
        } else if (!strcmp(cmd, "offer") &&
                   sscanf(line, "%*s %" SCNu64 " %8199s %" SCNu64 " %d", &id, a, &lease, &mode) == 4) {
            if (!strcmp(a, "-"))
                a[0] = '\0';
            unhex(a, (uint8_t *)strbuf, sizeof strbuf, &n);
            q.request_id = id;
            q.kind = SHMB_PB_REQ_OFFER;
            q.u.offer.region.ptr = strbuf;
            q.u.offer.region.len = n;
            q.u.offer.lease_id = lease;
            q.u.offer.mode = mode;
            encode(&q);
        } else {
            printf("error bad-command\n");
        }
        fflush(stdout);
    }
    (void)tu_summary;
    (void)tu_count_fds;
    return 0;
}
