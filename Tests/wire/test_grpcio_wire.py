"""Wire test with a gRPC client that is not ours: Python grpcio, stubs generated from Protos/.

It starts a real aspire-server, calls Bootstrap.Init, opens AgentChannel.Connect as an agent
would (Hello, Welcome, a Command pushed through the Admin service, the CommandResult back), and
checks that calls without the right token are refused.
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest
from grpc_tools import protoc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("ASPIRE_BIN_DIR", os.path.join(ROOT, ".build", "debug"))
HOST = "127.0.0.12"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stubs"))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for proto in ("aspire/v1/agent.proto", "aspire/v1/admin.proto"):
        status = protoc.main([
            "protoc", f"-I{os.path.join(ROOT, 'Protos')}", f"-I{include}",
            f"--python_out={out}", f"--grpc_python_out={out}", proto,
        ])
        assert status == 0, f"protoc failed for {proto}"
    sys.path.insert(0, out)
    from aspire.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
    return agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc


@pytest.fixture(scope="module")
def server():
    data = tempfile.mkdtemp(prefix="aspire-wire-")
    log = open(os.path.join(data, "server.log"), "wb")
    process = subprocess.Popen(
        [os.path.join(BIN, "aspire-server"), "--data-dir", data, "--listen", f"{HOST}:0", "--http-listen", f"{HOST}:0", "--ping-interval", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    address_file = os.path.join(data, "grpc.addr")
    deadline = time.time() + 30
    while not os.path.exists(address_file):
        assert process.poll() is None, open(os.path.join(data, "server.log")).read()
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    address = open(address_file).read().strip()

    def read(name):
        with open(os.path.join(data, name), "rb") as f:
            return f.read().strip()

    yield {
        "address": address,
        "ca": read("tls/ca.pem"),
        "admin": read("admin.token").decode(),
        "enroll": read("enroll.token").decode(),
    }
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    shutil.rmtree(data, ignore_errors=True)


def channel(server):
    credentials = grpc.ssl_channel_credentials(root_certificates=server["ca"])
    return grpc.secure_channel(server["address"], credentials)


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


def test_init_accepts_with_enrollment_token(stubs, server):
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    with channel(server) as ch:
        bootstrap = agent_pb2_grpc.BootstrapStub(ch)
        answer = bootstrap.Init(
            agent_pb2.InitRequest(agent_sn="py-init", hostname="python", version="1", os="linux", arch="x86_64"),
            metadata=bearer(server["enroll"]), timeout=10,
        )
        assert answer.action == agent_pb2.InitResponse.ACTION_ACCEPT
        assert answer.node


def test_calls_without_the_right_token_are_refused(stubs, server):
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    with channel(server) as ch:
        with pytest.raises(grpc.RpcError) as missing:
            agent_pb2_grpc.BootstrapStub(ch).Init(agent_pb2.InitRequest(agent_sn="x"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as wrong:
            admin_pb2_grpc.AdminStub(ch).ListAgents(
                admin_pb2.ListAgentsRequest(), metadata=bearer(server["enroll"]), timeout=10
            )
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_agent_sn_is_invalid_argument(stubs, server):
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    with channel(server) as ch:
        with pytest.raises(grpc.RpcError) as error:
            agent_pb2_grpc.BootstrapStub(ch).Init(
                agent_pb2.InitRequest(agent_sn="../../etc/passwd"), metadata=bearer(server["enroll"]), timeout=10
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_connect_stream_carries_commands_and_results(stubs, server):
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    outgoing = queue.Queue()

    def requests():
        while True:
            message = outgoing.get()
            if message is None:
                return
            yield message

    with channel(server) as ch:
        stream = agent_pb2_grpc.AgentChannelStub(ch).Connect(requests(), metadata=bearer(server["enroll"]))
        outgoing.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
            agent_sn="py-agent", hostname="python-host", version="9.9", os="linux", arch="x86_64", tags={"lang": "py"},
        )))
        welcome = next(stream)
        assert welcome.WhichOneof("body") == "welcome"
        assert welcome.welcome.ping_interval == 1

        seen = {"command": None, "pings": 0, "acked": []}

        def agent_loop():
            for message in stream:
                kind = message.WhichOneof("body")
                if kind == "ping":
                    seen["pings"] += 1
                    outgoing.put(agent_pb2.AgentMessage(pong=agent_pb2.Pong(nonce=message.ping.nonce)))
                elif kind == "command":
                    command = message.command
                    seen["command"] = command
                    outgoing.put(agent_pb2.AgentMessage(result=agent_pb2.CommandResult(
                        id=command.id, resp=agent_pb2.CommandResult.RESP_SUCCESS, retcode=0,
                        message="Normal termination", data=b"ran: " + command.bash.cmd.encode(),
                    )))
                elif kind == "ack":
                    seen["acked"].extend(message.ack.ids)

        reader = threading.Thread(target=agent_loop, daemon=True)
        reader.start()

        admin = admin_pb2_grpc.AdminStub(ch)
        listed = admin.ListAgents(admin_pb2.ListAgentsRequest(), metadata=bearer(server["admin"]), timeout=10)
        agent = [a for a in listed.agents if a.agent_sn == "py-agent"]
        assert agent and agent[0].hostname == "python-host" and dict(agent[0].tags) == {"lang": "py"}

        request = admin_pb2.RunCommandRequest(
            agent_sn="py-agent",
            command=agent_pb2.Command(method="sync.bash", bash=agent_pb2.BashParams(cmd="uptime", timeout=5)),
        )
        response = admin.RunCommand(request, metadata=bearer(server["admin"]), timeout=20)
        assert response.result.resp == agent_pb2.CommandResult.RESP_SUCCESS
        assert response.result.data == b"ran: uptime"
        assert seen["command"].method == "sync.bash"
        assert seen["command"].bash.timeout == 5
        assert response.result.id == seen["command"].id

        # Pings keep coming and are answered; the server acknowledges the result.
        deadline = time.time() + 10
        while (seen["pings"] < 2 or not seen["acked"]) and time.time() < deadline:
            time.sleep(0.1)
        assert seen["pings"] >= 2
        assert seen["command"].id in seen["acked"]
        outgoing.put(None)
        stream.cancel()


def test_upload_package_streams_and_is_hashed(stubs, server):
    import hashlib

    _, _, admin_pb2, admin_pb2_grpc = stubs
    content = bytes(range(256)) * 4096  # 1 MiB in several chunks
    info = admin_pb2.PackageInfo(name="PyAgent", version="1.0", os="linux", arch="x86_64", file="PyAgent-1.0.rpm")

    def parts():
        yield admin_pb2.UploadPackageRequest(info=info)
        for offset in range(0, len(content), 300_000):
            yield admin_pb2.UploadPackageRequest(chunk=content[offset:offset + 300_000])

    with channel(server) as ch:
        admin = admin_pb2_grpc.AdminStub(ch)
        package = admin.UploadPackage(parts(), metadata=bearer(server["admin"]), timeout=30)
        assert package.sha256 == hashlib.sha256(content).hexdigest()
        assert package.size == len(content)
        assert package.path == "packages/linux/x86_64/PyAgent-1.0.rpm"
        listing = admin.ListPackages(admin_pb2.ListPackagesRequest(name="PyAgent"), metadata=bearer(server["admin"]), timeout=10)
        assert [p.version for p in listing.packages] == ["1.0"]

        evil = admin_pb2.PackageInfo(name="x", version="1", os="linux", arch="x86_64", file="../../x")
        with pytest.raises(grpc.RpcError) as error:
            admin.UploadPackage(iter([admin_pb2.UploadPackageRequest(info=evil)]), metadata=bearer(server["admin"]), timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(error.value.trailing_metadata()).get("aspire-error-code") == "130005"


def test_agent_poll_reports_and_gets_jobs(stubs, server):
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    with channel(server) as ch:
        poll = agent_pb2_grpc.AgentPollStub(ch)
        report = agent_pb2.PollRequest(agent_sn="py-poll", status=agent_pb2.StatusReport(hostname="py-poll-host", version="1", step=60))
        assert list(poll.Report(report, metadata=bearer(server["enroll"]), timeout=10).commands) == []
        admin = admin_pb2_grpc.AdminStub(ch)
        task = admin.CreateTask(
            admin_pb2.CreateTaskRequest(command="getinfo.kernel", agents=["py-poll"]), metadata=bearer(server["admin"]), timeout=10
        )
        commands = poll.Report(report, metadata=bearer(server["enroll"]), timeout=10).commands
        assert [c.method for c in commands] == ["getinfo.kernel"]
        stored = poll.SubmitResults(
            agent_pb2.SubmitResultsRequest(agent_sn="py-poll", results=[agent_pb2.CommandResult(
                id=commands[0].id, resp=agent_pb2.CommandResult.RESP_SUCCESS, data=b"{}")]),
            metadata=bearer(server["enroll"]), timeout=10,
        )
        assert list(stored.stored) == [commands[0].id]
        detail = admin.GetTask(admin_pb2.GetTaskRequest(id=task.task.id), metadata=bearer(server["admin"]), timeout=10)
        assert detail.task.status == "done" and detail.task.complete == 1
        with pytest.raises(grpc.RpcError) as error:
            poll.Report(report, metadata=bearer(server["admin"]), timeout=10)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
