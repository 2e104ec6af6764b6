"""Wire test with a gRPC client that is not ours: Python grpcio, stubs generated from Protos/.

It starts a real aspire-server, enrolls hosts as an agent would (a P-256 key and a certificate
request made with the `cryptography` package, signed by the node's CA for a join token), opens
AgentChannel.Connect over mutual TLS (Hello, Welcome, a Command pushed through the Admin
service, the CommandResult back), and checks that calls without the right credentials are
refused: no token, a wrong one, and a host's certificate used to speak for another host.
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

import json
import urllib.error
import urllib.request

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_tools import protoc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("ASPIRE_BIN_DIR", os.path.join(ROOT, ".build", "debug"))
HOST = "127.0.0.12"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stubs"))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for proto in ("aspire/v1/agent.proto", "aspire/v1/admin.proto", "aspire/v1/cluster.proto"):
        status = protoc.main([
            "protoc", f"-I{os.path.join(ROOT, 'Protos')}", f"-I{include}",
            f"--python_out={out}", f"--grpc_python_out={out}", proto,
        ])
        assert status == 0, f"protoc failed for {proto}"
    sys.path.insert(0, out)
    from aspire.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
    return agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc


def start_server(data, arguments, http=True):
    """Starts aspire-server on `data` with `arguments`; waits for its gRPC address (and, with
    `http`, its REST address). Returns the process and the two addresses."""
    log = open(os.path.join(data, "server.log"), "wb")
    process = subprocess.Popen(
        [os.path.join(BIN, "aspire-server"), "--data-dir", data] + arguments, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    addresses = []
    for name in ("grpc.addr", "http.addr") if http else ("grpc.addr",):
        path = os.path.join(data, name)
        while not os.path.exists(path):
            assert process.poll() is None, open(os.path.join(data, "server.log")).read()
            assert time.time() < deadline, f"server did not write {name}"
            time.sleep(0.05)
        addresses.append(open(path).read().strip())
    return process, addresses[0], addresses[1] if len(addresses) > 1 else None


@pytest.fixture(scope="module")
def server():
    data = tempfile.mkdtemp(prefix="aspire-wire-")
    process, address, http = start_server(
        data, ["--listen", f"{HOST}:0", "--http-listen", f"{HOST}:0", "--ping-interval", "1", "--seed-agents", "127.0.0.0/8"]
    )

    def read(name):
        with open(os.path.join(data, name), "rb") as f:
            return f.read().strip()

    yield {
        "process": process,
        "address": address,
        "http": http,
        "data": data,
        "ca": read("tls/ca.pem"),
        "admin": read("admin.token").decode(),
        "enroll": read("enroll.token").decode(),
    }
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)
    shutil.rmtree(data, ignore_errors=True)


def channel(server, identity=None):
    """TLS to the node; with a host's (key, certificate) it is mutual TLS."""
    if identity is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=server["ca"])
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=server["ca"], private_key=identity[0], certificate_chain=identity[1]
        )
    return grpc.secure_channel(server["address"], credentials)


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


def new_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key, pem


def csr(key, name):
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.DER)


def enroll(stubs, server, agent_sn, token=None):
    """Enrolls a new key as agent_sn; returns (key PEM, certificate PEM)."""
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    key, key_pem = new_key()
    with channel(server) as ch:
        answer = agent_pb2_grpc.BootstrapStub(ch).Enroll(
            agent_pb2.EnrollRequest(agent_sn=agent_sn, csr=csr(key, agent_sn), hostname=agent_sn),
            metadata=bearer(token or server["enroll"]), timeout=10,
        )
    certificate = x509.load_pem_x509_certificate(answer.certificate.encode())
    uris = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == [f"aspire://agent/{agent_sn}"]
    return key_pem, answer.certificate.encode()


def admin_stub(stubs, ch):
    return stubs[3].AdminStub(ch)


def host(stubs, server, agent_sn):
    _, _, admin_pb2, _ = stubs
    with channel(server) as ch:
        return admin_stub(stubs, ch).GetHost(admin_pb2.GetHostRequest(agent_sn=agent_sn), metadata=bearer(server["admin"]), timeout=10)


def hello_stream(stubs, ch, agent_sn, tags=None):
    """Opens Connect and says Hello as agent_sn (with tags); returns (stream, outgoing queue)."""
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    outgoing = queue.Queue()

    def requests():
        while True:
            message = outgoing.get()
            if message is None:
                return
            yield message

    stream = agent_pb2_grpc.AgentChannelStub(ch).Connect(requests())
    outgoing.put(agent_pb2.AgentMessage(hello=agent_pb2.Hello(
        agent_sn=agent_sn, hostname=agent_sn, version="1", os="linux", arch="x86_64", tags=tags or {})))
    return stream, outgoing


def test_enrolled_host_says_init(stubs, server):
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    identity = enroll(stubs, server, "py-init")
    with channel(server, identity) as ch:
        answer = agent_pb2_grpc.BootstrapStub(ch).Init(
            agent_pb2.InitRequest(agent_sn="py-init", hostname="python", version="1", os="linux", arch="x86_64"), timeout=10,
        )
        assert answer.action == agent_pb2.InitResponse.ACTION_ACCEPT
        assert answer.node
    assert host(stubs, server, "py-init").identity == "enrolled"


def test_calls_without_the_right_credentials_are_refused(stubs, server):
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
        # The join token buys an enrollment, not a stream: Connect needs a certificate.
        stream = agent_pb2_grpc.AgentChannelStub(ch).Connect(iter([]), metadata=bearer(server["enroll"]))
        with pytest.raises(grpc.RpcError) as no_certificate:
            next(stream)
        assert no_certificate.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "client certificate" in no_certificate.value.details()
        with pytest.raises(grpc.RpcError) as unknown:
            key, _ = new_key()
            agent_pb2_grpc.BootstrapStub(ch).Enroll(
                agent_pb2.EnrollRequest(agent_sn="py-x", csr=csr(key, "py-x")), metadata=bearer("not-a-join-token"), timeout=10
            )
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "unknown join token" in unknown.value.details()


def test_bad_agent_sn_is_invalid_argument(stubs, server):
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    with channel(server) as ch:
        with pytest.raises(grpc.RpcError) as error:
            agent_pb2_grpc.BootstrapStub(ch).Init(
                agent_pb2.InitRequest(agent_sn="../../etc/passwd"), metadata=bearer(server["enroll"]), timeout=10
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as enrolling:
            key, _ = new_key()
            agent_pb2_grpc.BootstrapStub(ch).Enroll(
                agent_pb2.EnrollRequest(agent_sn="../../etc/passwd", csr=csr(key, "x")), metadata=bearer(server["enroll"]), timeout=10
            )
        assert enrolling.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_host_cannot_act_as_another(stubs, server):
    """Mallory holds what every host holds (the CA, the join token) and a certificate of her own."""
    agent_pb2, agent_pb2_grpc, admin_pb2, _ = stubs
    enroll(stubs, server, "py-victim")
    mallory = enroll(stubs, server, "py-mallory")
    with channel(server, mallory) as ch:
        with pytest.raises(grpc.RpcError) as init:
            agent_pb2_grpc.BootstrapStub(ch).Init(agent_pb2.InitRequest(agent_sn="py-victim"), timeout=10)
        assert init.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "py-mallory" in init.value.details()
        stream, outgoing = hello_stream(stubs, ch, "py-victim")
        with pytest.raises(grpc.RpcError) as hello:
            next(stream)
        assert hello.value.code() == grpc.StatusCode.PERMISSION_DENIED
        outgoing.put(None)
    # Enrolling again under the victim's name with the join token is refused while its
    # certificate lives.
    with pytest.raises(grpc.RpcError) as again:
        enroll(stubs, server, "py-victim")
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already enrolled" in again.value.details()
    # A self-made certificate naming the victim does not pass the handshake.
    key, key_pem = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "py-victim")])
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    forged = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("aspire://agent/py-victim")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with channel(server, (key_pem, forged.public_bytes(serialization.Encoding.PEM))) as ch:
        with pytest.raises(grpc.RpcError) as handshake:
            agent_pb2_grpc.BootstrapStub(ch).Init(agent_pb2.InitRequest(agent_sn="py-victim"), timeout=10)
        assert handshake.value.code() == grpc.StatusCode.UNAVAILABLE
    # The seed's plain-HTTP routes do not speak for a host that holds a certificate.
    body = json.dumps({"agentsn": "py-victim", "hostname": "mallory", "version": "1", "step": 60}).encode()
    request = urllib.request.Request(f"http://{server['http']}/agent/status", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as seed:
        urllib.request.urlopen(request, timeout=10)
    assert seed.value.code == 403
    assert "certificate" in json.loads(seed.value.read())["message"]
    # Nothing of Mallory's reached the victim's record.
    victim = host(stubs, server, "py-victim")
    assert victim.hostname == "py-victim" and victim.status == "register"


def test_ban_closes_the_stream_and_blocks_enrollment(stubs, server):
    agent_pb2, agent_pb2_grpc, admin_pb2, _ = stubs
    identity = enroll(stubs, server, "py-banned")
    with channel(server, identity) as ch:
        stream, outgoing = hello_stream(stubs, ch, "py-banned")
        assert next(stream).WhichOneof("body") == "welcome"
        with channel(server) as operator:
            banned = admin_stub(stubs, operator).BanHost(
                admin_pb2.BanHostRequest(agent_sn="py-banned", reason="stolen laptop"), metadata=bearer(server["admin"]), timeout=10
            )
        assert banned.identity == "banned"
        started = time.time()
        for _ in stream:
            pass
        assert time.time() - started < 10
        outgoing.put(None)
    with channel(server, identity) as ch:
        with pytest.raises(grpc.RpcError) as refused:
            agent_pb2_grpc.BootstrapStub(ch).Init(agent_pb2.InitRequest(agent_sn="py-banned"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "banned" in refused.value.details()
    with pytest.raises(grpc.RpcError) as enrolling:
        enroll(stubs, server, "py-banned")
    assert enrolling.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel(server) as operator:
        admin_stub(stubs, operator).BanHost(
            admin_pb2.BanHostRequest(agent_sn="py-banned", lift=True), metadata=bearer(server["admin"]), timeout=10
        )
    enroll(stubs, server, "py-banned")
    assert host(stubs, server, "py-banned").identity == "enrolled"


def test_join_tokens_are_counted_tagged_and_revocable(stubs, server):
    _, _, admin_pb2, _ = stubs
    with channel(server) as ch:
        admin = admin_stub(stubs, ch)
        created = admin.CreateJoinToken(
            admin_pb2.CreateJoinTokenRequest(ttl_seconds=3600, max_uses=1, tags={"env": "staging"}, note="wire"),
            metadata=bearer(server["admin"]), timeout=10,
        )
        assert created.secret and created.token.state == "usable" and created.token.max_uses == 1
        enroll(stubs, server, "py-joined", token=created.secret)
        assert {(t.name, t.value) for t in host(stubs, server, "py-joined").tags} == {("env", "staging")}
        with pytest.raises(grpc.RpcError) as used:
            enroll(stubs, server, "py-joined-2", token=created.secret)
        assert used.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "used up" in used.value.details()
        second = admin.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(), metadata=bearer(server["admin"]), timeout=10)
        revoked = admin.RevokeJoinToken(admin_pb2.RevokeJoinTokenRequest(id=second.token.id), metadata=bearer(server["admin"]), timeout=10)
        assert revoked.state == "revoked"
        with pytest.raises(grpc.RpcError) as refused:
            enroll(stubs, server, "py-joined-3", token=second.secret)
        assert "revoked" in refused.value.details()
        listed = admin.ListJoinTokens(admin_pb2.ListJoinTokensRequest(all=True), metadata=bearer(server["admin"]), timeout=10)
        assert {t.id for t in listed.tokens} >= {created.token.id, second.token.id}
        # Only digests are stored: no secret appears in the database file or the log.
        names = [n for n in os.listdir(server["data"]) if n.startswith("aspire.db")] + ["server.log"]
        assert "aspire.db" in names
        for name in names:
            with open(os.path.join(server["data"], name), "rb") as f:
                content = f.read()
            assert created.secret.encode() not in content and second.secret.encode() not in content


def test_connect_stream_carries_commands_and_results(stubs, server):
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    outgoing = queue.Queue()

    def requests():
        while True:
            message = outgoing.get()
            if message is None:
                return
            yield message

    identity = enroll(stubs, server, "py-agent")
    with channel(server, identity) as ch:
        stream = agent_pb2_grpc.AgentChannelStub(ch).Connect(requests())
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
    """AgentPoll is what the gateway calls for the seed's plain-HTTP agents, on its admin token."""
    agent_pb2, agent_pb2_grpc, admin_pb2, admin_pb2_grpc = stubs
    with channel(server) as ch:
        poll = agent_pb2_grpc.AgentPollStub(ch)
        report = agent_pb2.PollRequest(agent_sn="py-poll", status=agent_pb2.StatusReport(hostname="py-poll-host", version="1", step=60))
        assert list(poll.Report(report, metadata=bearer(server["admin"]), timeout=10).commands) == []
        admin = admin_pb2_grpc.AdminStub(ch)
        task = admin.CreateTask(
            admin_pb2.CreateTaskRequest(command="getinfo.kernel", agents=["py-poll"]), metadata=bearer(server["admin"]), timeout=10
        )
        commands = poll.Report(report, metadata=bearer(server["admin"]), timeout=10).commands
        assert [c.method for c in commands] == ["getinfo.kernel"]
        stored = poll.SubmitResults(
            agent_pb2.SubmitResultsRequest(agent_sn="py-poll", results=[agent_pb2.CommandResult(
                id=commands[0].id, resp=agent_pb2.CommandResult.RESP_SUCCESS, data=b"{}")]),
            metadata=bearer(server["admin"]), timeout=10,
        )
        assert list(stored.stored) == [commands[0].id]
        detail = admin.GetTask(admin_pb2.GetTaskRequest(id=task.task.id), metadata=bearer(server["admin"]), timeout=10)
        assert detail.task.status == "done" and detail.task.complete == 1
        # The join token opens no AgentPoll call: only the gateway's credential does.
        with pytest.raises(grpc.RpcError) as error:
            poll.Report(report, metadata=bearer(server["enroll"]), timeout=10)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_operator_scope_and_viewer(stubs, server):
    """An operator scoped to env=staging reaches no env=prod host; a viewer changes nothing."""
    agent_pb2, agent_pb2_grpc, admin_pb2, _ = stubs
    streams = []
    for sn, env in (("py-stg", "staging"), ("py-prod", "prod")):
        ch = channel(server, enroll(stubs, server, sn))
        stream, outgoing = hello_stream(stubs, ch, sn, tags={"env": env})
        assert next(stream).WhichOneof("body") == "welcome"
        streams.append((ch, stream, outgoing))
    try:
        with channel(server) as ch:
            admin = admin_stub(stubs, ch)
            stager = admin.CreateOperator(
                admin_pb2.CreateOperatorRequest(name="py-stager", role="operator", scope={"env": "staging"}),
                metadata=bearer(server["admin"]), timeout=10,
            ).secret
            viewer = admin.CreateOperator(
                admin_pb2.CreateOperatorRequest(name="py-viewer", role="viewer"), metadata=bearer(server["admin"]), timeout=10,
            ).secret
            before = admin.ListTasks(admin_pb2.ListTasksRequest(), metadata=bearer(server["admin"]), timeout=10).count

            def refused(call, token):
                with pytest.raises(grpc.RpcError) as error:
                    call(token)
                assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, error.value.details()
                return error.value.details()

            bash = lambda: agent_pb2.Command(method="sync.bash", bash=agent_pb2.BashParams(cmd="true"))
            assert "py-prod" in refused(lambda t: admin.RunCommand(
                admin_pb2.RunCommandRequest(agent_sn="py-prod", command=bash()), metadata=bearer(t), timeout=10), stager)
            refused(lambda t: admin.CreateTask(
                admin_pb2.CreateTaskRequest(command="sync.bash", agents=["py-prod"]), metadata=bearer(t), timeout=10), stager)
            refused(lambda t: admin.CreateTask(
                admin_pb2.CreateTaskRequest(command="sync.bash", tags={"env": "prod"}), metadata=bearer(t), timeout=10), stager)
            refused(lambda t: admin.CreateSchedule(admin_pb2.CreateScheduleRequest(
                schedule=agent_pb2.Schedule(name="py-prod-cron", expr="* * * * * *", command="true"), agents=["py-prod"]),
                metadata=bearer(t), timeout=10), stager)
            # A viewer reads, and changes nothing.
            assert admin.ListHosts(admin_pb2.ListHostsRequest(), metadata=bearer(viewer), timeout=10).count >= 2
            refused(lambda t: admin.CreateTask(
                admin_pb2.CreateTaskRequest(command="sync.bash", agents=["py-stg"]), metadata=bearer(t), timeout=10), viewer)
            refused(lambda t: admin.BanHost(admin_pb2.BanHostRequest(agent_sn="py-stg"), metadata=bearer(t), timeout=10), viewer)
            refused(lambda t: admin.CreateJoinToken(admin_pb2.CreateJoinTokenRequest(), metadata=bearer(t), timeout=10), viewer)
            # Nothing was created by the refusals; inside its scope the operator works.
            assert admin.ListTasks(admin_pb2.ListTasksRequest(), metadata=bearer(server["admin"]), timeout=10).count == before
            assert not [s for s in admin.ListSchedules(admin_pb2.ListSchedulesRequest(), metadata=bearer(server["admin"]), timeout=10).schedules
                        if s.schedule.name == "py-prod-cron"]
            created = admin.CreateTask(admin_pb2.CreateTaskRequest(
                command="sync.bash", tags={"env": "staging"}, parameters={"cmd": "true"}), metadata=bearer(stager), timeout=10)
            assert [s.agent_sn for s in created.subtasks] == ["py-stg"]
            trail = admin.ListAudit(admin_pb2.ListAuditRequest(operator="py-stager"), metadata=bearer(server["admin"]), timeout=10)
            outcomes = [(e.method, e.outcome.split(":")[0]) for e in trail.entries]
            assert ("CreateTask", "ok") in outcomes and ("RunCommand", "permissionDenied") in outcomes, outcomes
    finally:
        for ch, stream, outgoing in streams:
            outgoing.put(None)
            stream.cancel()
            ch.close()


def test_one_connection_holds_at_most_64_streams(stubs, server):
    """A client that opens stream after stream on one connection gets 64; the next call waits."""
    agent_pb2, agent_pb2_grpc, _, _ = stubs
    identity = enroll(stubs, server, "py-streams")
    with channel(server, identity) as ch:
        silent = queue.Queue()

        def nothing():
            while silent.get() is not None:
                pass
            return
            yield

        # Streams that never say Hello stay open (the node waits for it), each taking a place.
        streams = [agent_pb2_grpc.AgentChannelStub(ch).Connect(nothing()) for _ in range(64)]
        bootstrap = agent_pb2_grpc.BootstrapStub(ch)
        time.sleep(1)
        with pytest.raises(grpc.RpcError) as waiting:
            bootstrap.Init(agent_pb2.InitRequest(agent_sn="py-streams"), timeout=2)
        assert waiting.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for stream in streams[:8]:
            stream.cancel()
        answer = bootstrap.Init(agent_pb2.InitRequest(agent_sn="py-streams"), timeout=10)
        assert answer.action == agent_pb2.InitResponse.ACTION_ACCEPT
        for stream in streams:
            stream.cancel()
        for _ in streams:
            silent.put(None)
