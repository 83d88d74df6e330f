"""A grpcurl-like client on gRPC's C core (Debian's python3-grpcio) and
Google's protobuf runtime (python3-protobuf): it knows nothing about
shmbroker. It learns every type from the server's reflection service, builds
a descriptor pool from the files it returns (fetching missing dependencies by
file name, as a real descriptor-database client does), and calls methods with
proto3 JSON requests.

A failed call's google.rpc.Status (the grpc-status-details-bin trailer) is
decoded with Google's own google/rpc protos, never with the server's.

usage: pyreflect.py SOCKET CLIENT_DESCRIPTOR_SET COMMANDS_JSON
CLIENT_DESCRIPTOR_SET: what protoc built (--include_imports) of gRPC's
reflection proto (Debian's grpc-proto) and google/rpc/{status,error_details}.proto.
COMMANDS_JSON is a list of ["list"], ["describe", SYMBOL],
["call", "pkg.Service/Method", REQUEST_JSON_OBJECT] or ["decode_status", HEX];
one JSON line per command is printed: {"ok": ...}, {"error": {"code": NAME,
"details": ..., "status": google.rpc.Status as proto3 JSON}} for a failed call,
or {"reflection_error": "CODE: message"} for a reflection lookup refused.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def message_class(pool_or_desc):
    desc = pool_or_desc
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def client_pool(path):
    """The client's own types (reflection, google.rpc), from the descriptor set protoc built."""
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:  # --include_imports writes dependencies first
        pool.Add(fd)
    return pool


def status_to_dict(pool, raw):
    status = message_class(pool.FindMessageTypeByName("google.rpc.Status"))()
    status.ParseFromString(raw)
    out = {"code": status.code, "message": status.message, "details": []}
    for any_msg in status.details:
        type_name = any_msg.type_url.split("/")[-1]
        detail = message_class(pool.FindMessageTypeByName(type_name))()
        if not any_msg.Unpack(detail):
            raise ValueError(f"cannot unpack {any_msg.type_url}")
        out["details"].append({"@type": type_name, **json_format.MessageToDict(detail)})
    return out


class Reflector:
    def __init__(self, channel, req_cls, resp_cls):
        self.call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        self.req_cls = req_cls
        self.pool = descriptor_pool.DescriptorPool()
        self.files = {}  # name -> FileDescriptorProto, as received
        self.added = set()

    def ask(self, **kwargs):
        (resp,) = list(self.call(iter([self.req_cls(**kwargs)])))
        if resp.HasField("error_response"):
            raise LookupError(f"{resp.error_response.error_code}: {resp.error_response.error_message}")
        return resp

    def take_files(self, resp):
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            self.files.setdefault(fd.name, fd)

    def add_file(self, name):
        """Adds a file to the pool after its dependencies, asking the server for any it did not send."""
        if name in self.added:
            return
        if name not in self.files:
            self.take_files(self.ask(file_by_filename=name))
        fd = self.files[name]
        for dep in fd.dependency:
            self.add_file(dep)
        self.pool.Add(fd)
        self.added.add(name)

    def resolve(self, symbol):
        resp = self.ask(file_containing_symbol=symbol)
        self.take_files(resp)
        first = descriptor_pb2.FileDescriptorProto()
        first.ParseFromString(resp.file_descriptor_response.file_descriptor_proto[0])
        self.add_file(first.name)
        return first


def describe(r, symbol):
    first = r.resolve(symbol)
    m = r.pool.FindMessageTypeByName(symbol)
    return {
        "file": first.name,
        "dependencies": list(first.dependency),
        "fields": [
            {
                "name": f.name,
                "json_name": f.json_name,
                "number": f.number,
                "type": f.type,
                "message_type": f.message_type.full_name if f.message_type else None,
                "enum_type": f.enum_type.full_name if f.enum_type else None,
            }
            for f in m.fields
        ],
    }


def call(r, channel, path, request):
    service_name, method_name = path.split("/")
    r.resolve(service_name)
    method = r.pool.FindServiceByName(service_name).FindMethodByName(method_name)
    req_cls = message_class(method.input_type)
    resp_cls = message_class(method.output_type)
    stub = channel.unary_unary(f"/{service_name}/{method_name}", request_serializer=req_cls.SerializeToString, response_deserializer=resp_cls.FromString)
    response = stub(json_format.ParseDict(request, req_cls()), timeout=20)
    return json_format.MessageToDict(response)


def main():
    sock, client_fds, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    pool = client_pool(client_fds)
    req_cls = message_class(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest"))
    resp_cls = message_class(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse"))
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        r = Reflector(channel, req_cls, resp_cls)
        for cmd in commands:
            try:
                if cmd[0] == "list":
                    out = sorted(s.name for s in r.ask(list_services="*").list_services_response.service)
                elif cmd[0] == "describe":
                    out = describe(r, cmd[1])
                elif cmd[0] == "call":
                    out = call(r, channel, cmd[1], cmd[2])
                elif cmd[0] == "decode_status":
                    out = status_to_dict(pool, bytes.fromhex(cmd[1]))
                else:
                    raise ValueError(f"unknown command {cmd[0]}")
                print(json.dumps({"ok": out}), flush=True)
            except LookupError as e:
                print(json.dumps({"reflection_error": str(e)}), flush=True)
            except grpc.RpcError as e:
                err = {"code": e.code().name, "details": e.details()}
                for key, value in e.trailing_metadata() or ():
                    if key == "grpc-status-details-bin":
                        err["status"] = status_to_dict(pool, value)
                print(json.dumps({"error": err}), flush=True)


if __name__ == "__main__":
    main()
