"""Two real aspire-server nodes on one PostgreSQL, driven by grpcio (a client that is not ours):
a host enrolled at one node is held by the other; banned at the first, its stream on the second
is closed within seconds and its certificate is refused by both."""

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

import grpc
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_grpcio_wire  # noqa: E402
from test_grpcio_wire import bearer, enroll, hello_stream, start_server, stubs  # noqa: E402,F401  (stubs is a fixture)

POSTGRES = os.environ.get("ASPIRE_TEST_POSTGRES_URL", "")


def start_node(data, host, database):
    process, address, _ = start_server(
        data, ["--listen", f"{host}:0", "--http-listen", "off", "--database", database, "--node-name", os.path.basename(data)], http=False
    )
    return process, address


@pytest.fixture(scope="module")
def cluster():
    if not POSTGRES:
        pytest.skip("needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    if not shutil.which("psql"):
        pytest.skip("needs psql (Debian's postgresql-client) to make the test's database")
    name = "aspire_wire_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", POSTGRES, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    parts = urllib.parse.urlsplit(POSTGRES)
    database = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    root = tempfile.mkdtemp(prefix="aspire-wire-cluster-")
    first, second = os.path.join(root, "node1"), os.path.join(root, "node2")
    os.makedirs(first)
    p1, a1 = start_node(first, "127.0.0.13", database)
    # Nodes of one cluster share the CA and the tokens.
    os.makedirs(os.path.join(second, "tls"))
    for f in ("admin.token", "enroll.token", "tls/ca.pem", "tls/ca.key"):
        shutil.copy(os.path.join(first, f), os.path.join(second, f))
    os.chmod(second, 0o700)
    p2, a2 = start_node(second, "127.0.0.14", database)
    read = lambda f: open(os.path.join(first, f), "rb").read().strip()
    yield {"nodes": [a1, a2], "ca": read("tls/ca.pem"), "admin": read("admin.token").decode(), "enroll": read("enroll.token").decode()}
    for p in (p1, p2):
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["psql", POSTGRES, "-q", "-c", f"DROP DATABASE IF EXISTS {name}"], check=False)


def node(cluster, index):
    """One node of the cluster as the wire test's helpers take a server: its address, CA and tokens."""
    return {"address": cluster["nodes"][index], "ca": cluster["ca"], "admin": cluster["admin"], "enroll": cluster["enroll"]}


def channel(cluster, index, identity=None):
    return test_grpcio_wire.channel(node(cluster, index), identity)


def test_a_ban_on_one_node_closes_the_stream_on_the_other(stubs, cluster):
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    identity = enroll(stubs, node(cluster, 0), "py-roamer")

    with channel(cluster, 1, identity) as ch:
        # Enrolled at node 1, held by node 2: the store is one.
        messages = iter([agent_pb2.AgentMessage(hello=agent_pb2.Hello(agent_sn="py-roamer", hostname="roamer", version="1"))])

        def requests():
            yield next(messages)
            while True:
                time.sleep(0.2)
                if closed:
                    return
                yield agent_pb2.AgentMessage(pong=agent_pb2.Pong(nonce=0))

        closed = False
        stream = agent_pb2_grpc.AgentChannelStub(ch).Connect(requests())
        assert next(stream).WhichOneof("body") == "welcome"
        with channel(cluster, 0) as operator:
            banned = admin_pb2_grpc.AdminStub(operator).BanHost(
                admin_pb2.BanHostRequest(agent_sn="py-roamer", reason="lost"), metadata=bearer(cluster["admin"]), timeout=10
            )
        assert banned.identity == "banned"
        started = time.time()
        try:
            for _ in stream:
                pass
        except grpc.RpcError:
            pass
        closed = True
        assert time.time() - started < 10, "node 2 did not close the banned host's stream within seconds"

    for index in (0, 1):
        with channel(cluster, index, identity) as ch:
            with pytest.raises(grpc.RpcError) as refused:
                agent_pb2_grpc.BootstrapStub(ch).Init(agent_pb2.InitRequest(agent_sn="py-roamer"), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "banned" in refused.value.details()


def test_a_command_streams_through_a_node_that_does_not_hold_the_host(stubs, cluster):
    """grpcio's RunCommandStream on node 1 for a host whose stream node 2 holds: the host's output
    chunks come through before its result, and the result is stored as a task of one host."""
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    identity = enroll(stubs, node(cluster, 1), "py-streamer")
    with channel(cluster, 1, identity) as ch:
        stream, outgoing = hello_stream(stubs, ch, "py-streamer")
        assert next(stream).WhichOneof("body") == "welcome"
        commands = queue.Queue()

        def agent_loop():
            try:
                for message in stream:
                    if message.WhichOneof("body") == "command":
                        commands.put(message.command)
            except grpc.RpcError:
                pass

        threading.Thread(target=agent_loop, daemon=True).start()
        with channel(cluster, 0) as operator:
            events = admin_pb2_grpc.AdminStub(operator).RunCommandStream(
                admin_pb2.RunCommandRequest(agent_sn="py-streamer", command=agent_pb2.Command(
                    method="sync.bash", bash=agent_pb2.BashParams(cmd="make"))),
                metadata=bearer(cluster["admin"]), timeout=30,
            )
            accepted = next(events)
            assert accepted.WhichOneof("body") == "accepted" and accepted.accepted.held_by == "node2"
            command = commands.get(timeout=10)
            assert command.stream_output and command.id == accepted.accepted.command_id
            outgoing.put(agent_pb2.AgentMessage(output=agent_pb2.CommandOutput(
                id=command.id, seq=0, stream=agent_pb2.CommandOutput.STREAM_STDOUT, chunk=b"compiling\n")))
            first = next(events)
            assert first.WhichOneof("body") == "output" and first.output.chunk == b"compiling\n"
            outgoing.put(agent_pb2.AgentMessage(result=agent_pb2.CommandResult(
                id=command.id, resp=agent_pb2.CommandResult.RESP_SUCCESS, data=b"compiling\n")))
            last = next(events)
            assert last.WhichOneof("body") == "result" and last.result.data == b"compiling\n"
            # The caller has the result first; the store has it a moment later.
            deadline = time.time() + 10
            while True:
                task = admin_pb2_grpc.AdminStub(operator).GetTask(
                    admin_pb2.GetTaskRequest(id=accepted.accepted.task_id), metadata=bearer(cluster["admin"]), timeout=10)
                if task.subtasks[0].status == "succeeded" or time.time() > deadline:
                    break
                time.sleep(0.05)
            assert [s.id for s in task.subtasks] == [command.id] and task.subtasks[0].status == "succeeded"
        outgoing.put(None)
        stream.cancel()


def test_only_nodes_call_node_link(stubs, cluster):
    """NodeLink takes a node's certificate only: an operator's token or an agent's certificate is refused."""
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    from aspire.v1 import cluster_pb2, cluster_pb2_grpc
    identity = enroll(stubs, node(cluster, 0), "py-intruder")
    with channel(cluster, 0) as ch:
        with pytest.raises(grpc.RpcError) as refused:
            cluster_pb2_grpc.NodeLinkStub(ch).Wake(cluster_pb2.WakeRequest(agent_sns=["x"]), metadata=bearer(cluster["admin"]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel(cluster, 1, identity) as ch:
        with pytest.raises(grpc.RpcError) as refused:
            cluster_pb2_grpc.NodeLinkStub(ch).Wake(cluster_pb2.WakeRequest(agent_sns=["x"]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
