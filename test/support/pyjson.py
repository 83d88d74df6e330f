"""Parses CLI output with Google's protobuf runtime (Debian's python3-protobuf):
json_format.Parse, the proto3 JSON parser of another implementation, into
message classes built from a descriptor set that protoc (not buf, not
protobufjs) compiled from the .proto files. Unknown fields are errors.

usage: pyjson.py DESCRIPTOR_SET < lines of [TYPE_NAME, JSON_TEXT]
prints one line per input: {"ok": MessageToDict(parsed)} or {"error": text}.
"""
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def message_class(desc):
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def main():
    fds = descriptor_pb2.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    for line in sys.stdin:
        if not line.strip():
            continue
        type_name, text = json.loads(line)
        try:
            msg = json_format.Parse(text, message_class(pool.FindMessageTypeByName(type_name))())
            print(json.dumps({"ok": json_format.MessageToDict(msg)}), flush=True)
        except Exception as e:  # ParseError and friends: report, the test decides
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    main()
