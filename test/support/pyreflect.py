"""A grpcurl-like client on gRPC's C core (Debian's python3-grpcio) and
Google's protobuf runtime (python3-protobuf): it knows nothing about
shmbroker. It learns every type from the server's reflection service, builds
a descriptor pool from the files it returns (fetching missing dependencies by
file name, as a real descriptor-database client does), and calls methods with
proto3 JSON requests.

usage: pyreflect.py SOCKET REFLECTION_DESCRIPTOR_SET COMMANDS_JSON
COMMANDS_JSON is a list of ["list"], ["describe", SYMBOL] or
["call", "pkg.Service/Method", REQUEST_JSON_OBJECT]; one JSON line per command
is printed: {"ok": ...}, {"error": {"code": NAME, "details": ...}} for a failed
call, or {"reflection_error": "CODE: message"} for a reflection lookup refused.
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


def reflection_types(path):
    """The reflection request/response classes, from the descriptor set protoc built of Debian's grpc-proto."""
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    req = message_class(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest"))
    resp = message_class(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse"))
    return req, resp


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
    sock, reflection_fds, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    req_cls, resp_cls = reflection_types(reflection_fds)
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
                else:
                    raise ValueError(f"unknown command {cmd[0]}")
                print(json.dumps({"ok": out}), flush=True)
            except LookupError as e:
                print(json.dumps({"reflection_error": str(e)}), flush=True)
            except grpc.RpcError as e:
                print(json.dumps({"error": {"code": e.code().name, "details": e.details()}}), flush=True)


if __name__ == "__main__":
    main()
