// libFuzzer harness for the only native protobuf parser in the project: the
// C client library's data-plane codec (clients/c/src/proto.c), which decodes
// whatever the peer on data.sock sends (and the broker-side test tools'
// requests). The Node addon parses no message itself (protobufjs decodes in
// JS; the addon only walks kernel-built SCM_RIGHTS headers).
//
// Properties: decoding any bytes never reads out of bounds or trips UBSan
// (clang -fsanitize=fuzzer,address,undefined); what decodes re-encodes within
// the packet limit, and decodes again to the same fields.
// Built and run by test/fuzz/c-proto.fuzz.test.ts.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static int same_str(shmb_pb_str a, shmb_pb_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t buf[SHMB_PROTO_MAX_PACKET * 2];
	shmb_pb_reply rep, rep2;
	if (shmb_pb_decode_reply(data, size, &rep) == 0) {
		long n = shmb_pb_encode_reply(&rep, buf, sizeof(buf));
		if (n >= 0) {
			if (shmb_pb_decode_reply(buf, (size_t)n, &rep2) != 0 || rep2.kind != rep.kind || rep2.request_id != rep.request_id)
				abort();
			if (rep.kind == SHMB_PB_REPLY_ACQUIRE &&
			    (rep2.u.acquire.lease_id != rep.u.acquire.lease_id || rep2.u.acquire.size_bytes != rep.u.acquire.size_bytes ||
			     !same_str(rep2.u.acquire.region, rep.u.acquire.region) || !same_str(rep2.u.acquire.backend, rep.u.acquire.backend)))
				abort();
			if (rep.kind == SHMB_PB_REPLY_ERROR && (rep2.u.error.code != rep.u.error.code || !same_str(rep2.u.error.reason, rep.u.error.reason)))
				abort();
			if (rep.kind == SHMB_PB_REPLY_REVOCATION &&
			    (rep2.u.revocation.lease_id != rep.u.revocation.lease_id || !same_str(rep2.u.revocation.region, rep.u.revocation.region)))
				abort();
		}
	}
	shmb_pb_request req, req2;
	if (shmb_pb_decode_request(data, size, &req) == 0) {
		long n = shmb_pb_encode_request(&req, buf, sizeof(buf));
		if (n >= 0) {
			if (shmb_pb_decode_request(buf, (size_t)n, &req2) != 0 || req2.kind != req.kind || req2.request_id != req.request_id)
				abort();
			if (req.kind == SHMB_PB_REQ_ACQUIRE && (!same_str(req2.u.acquire.region, req.u.acquire.region) || req2.u.acquire.mode != req.u.acquire.mode))
				abort();
			if (req.kind == SHMB_PB_REQ_RELEASE && req2.u.release.lease_id != req.u.release.lease_id)
				abort();
		}
	}
	return 0;
}
