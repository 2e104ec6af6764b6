"""Malformed and oversized protobuf messages on every gRPC method of a real node, from grpcio.

Each method of every service in Protos/ (found from the descriptors, so a new method is fuzzed the day it
is added) gets raw bytes instead of its request: garbage, truncated varints and lengths, wrong wire
types, a length prefix far past the end, deep nesting, and a message over the node's 8 MiB limit; with the
admin token, with an enrolled host's certificate, and with no credentials. Every answer must be a
status a client can act on (never UNKNOWN, INTERNAL or a dropped connection), and the node must keep
serving: an ordinary call works after each method's round and at the end, and the process is alive.
"""

import random

import grpc

from test_grpcio_wire import bearer, channel, enroll, server, stubs  # noqa: F401 (fixtures)

ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # a stream the node rightly keeps open past the short deadline
}

REFUSED = {
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
}


def payloads():
    rng = random.Random(20261202)
    nested = b""
    for _ in range(200):  # 200 levels of a message in field 1: past protobuf's recursion limit of 100
        nested = b"\x0a" + encode_varint(len(nested)) + nested
    return {
        "garbage": bytes(rng.randrange(256) for _ in range(97)),
        "truncated varint": b"\x08\xff\xff",
        "truncated length": b"\x0a\x05ab",
        "length past the end": b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 10,
        "wrong wire type": b"\x0d\x01\x02\x03\x04\x15\x00\x00\x00\x00\x0f",
        "group tags": b"\x0b\x0c\x13\x14",
        "field number 0": b"\x00\x01",
        "invalid UTF-8 string": b"\x0a\x03\xff\xfe\xfd",
        "deep nesting": nested,
        "oversized": b"\x0a" + encode_varint(9 << 20) + b"y" * (9 << 20),
    }


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def methods(stubs):
    agent_pb2, _, admin_pb2, _ = stubs
    from aspire.v1 import cluster_pb2
    for module in (agent_pb2, admin_pb2, cluster_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming


def call(ch, path, client_streaming, server_streaming, body, metadata):
    """Sends `body` as the request (or as each of two stream messages); answers the status code."""
    identity = lambda raw: raw  # noqa: E731
    try:
        if client_streaming and server_streaming:
            responses = ch.stream_stream(path, request_serializer=identity, response_deserializer=identity)(
                iter([body, body]), metadata=metadata, timeout=5
            )
            for _ in responses:
                pass
        elif client_streaming:
            ch.stream_unary(path, request_serializer=identity, response_deserializer=identity)(iter([body, body]), metadata=metadata, timeout=5)
        elif server_streaming:
            for _ in ch.unary_stream(path, request_serializer=identity, response_deserializer=identity)(body, metadata=metadata, timeout=5):
                pass
        else:
            ch.unary_unary(path, request_serializer=identity, response_deserializer=identity)(body, metadata=metadata, timeout=5)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        return error.code(), error.details()


def still_serving(stubs, server):
    _, _, admin_pb2, admin_pb2_grpc = stubs
    with channel(server) as ch:
        admin_pb2_grpc.AdminStub(ch).ListAgents(admin_pb2.ListAgentsRequest(), metadata=bearer(server["admin"]), timeout=10)


def test_malformed_messages_on_every_method(stubs, server):  # noqa: F811
    identity = enroll(stubs, server, "fuzz-host")
    found = list(methods(stubs))
    assert len(found) > 40, f"only {len(found)} methods found in the descriptors"
    bodies = payloads()
    failures = []
    for path, client_streaming, server_streaming in found:
        for credentials in ("admin", "host", "none"):
            with channel(server, identity if credentials == "host" else None) as ch:
                metadata = bearer(server["admin"]) if credentials == "admin" else ()
                for name, body in bodies.items():
                    if name == "oversized" and credentials != "admin":
                        continue  # 9 MiB each: once per method is enough
                    code, details = call(ch, path, client_streaming, server_streaming, body, metadata)
                    if code not in ACCEPTABLE:
                        failures.append(f"{path} ({credentials}, {name}): {code.name} {details}")
                    # Refused before it is read: grpc-swift-nio-transport resets the stream (RST_STREAM
                    # CANCEL, as grpc-java does) where grpc-go answers RESOURCE_EXHAUSTED; either is a
                    # refusal, as is the credentials' refusal that comes first on a stream.
                    if name == "oversized" and code not in REFUSED:
                        failures.append(f"{path} (oversized): {code.name} {details}, not refused")
        still_serving(stubs, server)
    assert not failures, "\n".join(failures)
    assert server["process"].poll() is None, "the node died"
    still_serving(stubs, server)


def test_undecodable_request_is_invalid_argument(stubs, server):  # noqa: F811
    """The answer to bytes that are not the request says so (and names no internals)."""
    with channel(server) as ch:
        code, details = call(ch, "/aspire.v1.Admin/ListAgents", False, False, b"\x0a\xff\xff\xff\xff\x0f", bearer(server["admin"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
