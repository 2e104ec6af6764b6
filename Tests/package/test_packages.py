"""The packages as an operator meets them, on this machine (root, no Swift needed by what they hold).

scripts/package.sh builds aspire-boot and aspire-server (.deb and .rpm) from the debug build; then:
- the static binaries run a real command end to end with the toolchain's directory hidden (a mount
  namespace with an empty tmpfs over it): nothing of Swift is needed on a host;
- `dpkg -i` installs both: user, directories and modes, units, configuration, man pages,
  completions; the server started as its unit starts it (its user, its ExecStart, the
  configuration file) tells systemd it is ready (READY=1 on $NOTIFY_SOCKET); the agent started as
  its unit starts it enrolls from /etc/aspire and runs a command and a sub-agent;
- `dpkg -i` of the next version and a restart as systemd does it (KillMode=process: only the
  agent's own process is stopped) keep the agent's identity, its certificate and the sub-agent
  running; the operator's configuration is kept;
- `dpkg -r`, then `dpkg -P`, remove the binaries, then the configuration, and keep the state;
- `systemd-analyze verify` passes on both units; the .rpm holds the same files (`rpm -qlp`), its
  configuration is `noreplace`, its scripts run the same set-up.

It changes the machine (/usr/bin, /etc/aspire, /var/lib/aspire*, the aspire user), so it runs only
as root on a host where none of that exists, and removes what it made.
"""

import gzip
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST = "127.0.0.43"
TOOLCHAIN = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("swift") or "/opt/swift/usr/bin/swift"))))
VERSION = re.search(r'current = "([^"]+)"', open(os.path.join(ROOT, "Sources/RPC/Support/AspireVersion.swift")).read()).group(1)
LEFTOVERS = ["/etc/aspire", "/var/lib/aspire", "/var/lib/aspire-boot", "/opt/aspire", "/usr/bin/boot", "/usr/bin/aspire-server"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installs packages: needs root"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg"),
    pytest.mark.skipif(
        any(os.path.exists(path) for path in LEFTOVERS) and not os.environ.get("ASPIRE_PACKAGE_TEST_FORCE"),
        reason="Aspire is installed on this host already: the test installs and removes its packages",
    ),
]


def run(*arguments, check=True, **options):
    result = subprocess.run(list(arguments), capture_output=True, text=True, **options)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(arguments)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    work = tmp_path_factory.mktemp("packages")
    first, second = str(work / "v1"), str(work / "v2")
    run(os.path.join(ROOT, "scripts", "package.sh"), "--debug", "--version", "0.1.0", "--out", first, cwd=ROOT)
    run(os.path.join(ROOT, "scripts", "package.sh"), "--debug", "--version", "0.1.1", "--from", first, "--out", second, cwd=ROOT)

    def named(directory, pattern):
        found = [os.path.join(dirpath, name) for dirpath, _, names in os.walk(directory) for name in names if name.startswith(pattern)]
        assert len(found) == 1, f"{pattern} in {directory}: {found}"
        return found[0]

    yield {
        "bin": os.path.join(first, "bin"),
        "boot1": named(first, "aspire-boot_0.1.0_"), "server1": named(first, "aspire-server_0.1.0_"),
        "boot2": named(second, "aspire-boot_0.1.1_"),
        "rpm_boot": named(first, "aspire-boot-0.1.0-1."), "rpm_server": named(first, "aspire-server-0.1.0-1."),
    }


def hidden_toolchain(command):
    """`command` in a mount namespace where the Swift toolchain's directory is an empty tmpfs."""
    script = f'mount -t tmpfs none "{TOOLCHAIN}" && [ -z "$(ls -A "{TOOLCHAIN}")" ] && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"] + command


def wait_for_file(path, process, log, timeout=60):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, f"exited {process.returncode}:\n{open(log).read()}"
        assert time.time() < deadline, f"{path} not written:\n{open(log).read()}"
        time.sleep(0.05)
    return open(path).read().strip()


def wait(what, predicate, timeout=60, interval=0.2):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


INSTALLED = ["/usr/bin/aspirectl"]


def ctl(aspirectl, server, *arguments, data="/var/lib/aspire", check=True):
    """aspirectl (a command line: the binary, maybe wrapped) against `server`."""
    return run(*aspirectl, arguments[0], "--server", server, "--server-data", data, *arguments[1:], check=check)


def connected_agent(aspirectl, server, data="/var/lib/aspire"):
    """The AgentSN of the one agent connected, once it is."""
    def listed():
        lines = ctl(aspirectl, server, "agents", data=data, check=False).stdout.splitlines()[1:]
        return lines[0].split()[0] if lines else None
    return wait("the agent to connect", listed)


# Symbols of the modules the agent must not link: Foundation itself, CoreFoundation, ICU.
FOUNDATION_SYMBOL = re.compile(r"\$s10Foundation|\$s30FoundationInternationalization|\bucal_open|\b_?CFStringCreate")


def test_agent_links_no_foundation_or_icu(packages):
    """The agent's binaries take FoundationEssentials only: not Foundation, CoreFoundation or ICU
    (some 40 MB of code and data, bench/README.md), which the server does link."""
    debug = os.path.join(os.path.dirname(packages["bin"]), "debug")
    for binary in ("boot", "BasicAgentCtl", "aspire-server"):
        symbols = run("nm", os.path.join(debug, binary + ".debug")).stdout
        assert "$s20FoundationEssentials" in symbols, f"{binary}: no symbols to check"
        found = [line for line in symbols.splitlines() if FOUNDATION_SYMBOL.search(line)]
        if binary == "aspire-server":
            assert found, "the check finds nothing even where Foundation is linked"
        else:
            assert not found, f"{binary} links Foundation: {found[:5]}"


def test_binaries_need_no_toolchain(packages, tmp_path):
    """Server, agent and aspirectl, static, with the toolchain hidden: a command runs end to end."""
    binaries = packages["bin"]
    for binary in ("boot", "aspire-server", "aspirectl", "BasicAgentCtl"):
        linked = run("ldd", os.path.join(binaries, binary), check=False).stdout
        assert "swift" not in linked and "Foundation" not in linked, linked
        version = run(*hidden_toolchain([os.path.join(binaries, binary), "--version"]))
        assert version.stdout.strip() == VERSION, version
    # The dynamically linked debug build cannot start there: the namespace really hides Swift.
    dynamic = run(*hidden_toolchain([os.path.join(ROOT, ".build", "debug", "BasicAgentCtl"), "--help"]), check=False)
    assert dynamic.returncode != 0 and "libswift" in dynamic.stderr, dynamic

    data, agent_data = str(tmp_path / "server"), str(tmp_path / "agent")
    environment = dict(os.environ, ASPIRE_SERVER_CONFIG="none", ASPIRE_BOOT_CONFIG="none")
    server_log = str(tmp_path / "server.log")
    server = subprocess.Popen(
        hidden_toolchain([os.path.join(binaries, "aspire-server"), "--data-dir", data, "--listen", f"{HOST}:0", "--http-listen", "off"]),
        stdout=open(server_log, "wb"), stderr=subprocess.STDOUT, env=environment,
    )
    agent = None
    try:
        address = wait_for_file(os.path.join(data, "grpc.addr"), server, server_log)
        agent_log = str(tmp_path / "agent.log")
        agent = subprocess.Popen(
            hidden_toolchain([
                os.path.join(binaries, "boot"), "-f", "--server", address, "--ca", os.path.join(data, "tls", "ca.pem"),
                "--token-file", os.path.join(data, "enroll.token"), "--data-dir", agent_data, "--control-socket", "off",
                "--agents-root", str(tmp_path / "agents"), "--plugins-dir", str(tmp_path / "plugins"), "--start-delay", "0",
            ]),
            stdout=open(agent_log, "wb"), stderr=subprocess.STDOUT, env=environment,
        )
        aspirectl = hidden_toolchain([os.path.join(binaries, "aspirectl")])
        sn = connected_agent(aspirectl, address, data)
        result = ctl(aspirectl, address, "run", "--agent", sn, "--", "echo static $((6 * 7))", data=data)
        assert "static 42" in result.stdout, result
    finally:
        if agent is not None:
            stop(agent)
        stop(server)


def unit_command(unit):
    """ExecStart= and User= of an installed unit, as systemd would run it."""
    values = {}
    for line in open(f"/usr/lib/systemd/system/{unit}"):
        if "=" in line and not line.startswith("#"):
            key, value = line.strip().split("=", 1)
            values[key] = value
    return values["ExecStart"].split(), values.get("User")


def start_as_unit(unit, log, notify=None):
    command, user = unit_command(unit)
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] + command
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if notify:
        environment["NOTIFY_SOCKET"] = notify
    return subprocess.Popen(command, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=environment, cwd="/")


def mini_agent(directory):
    """A sub-agent package: `control start|stop|status` around a sleeping process."""
    root = os.path.join(directory, "mini")
    os.makedirs(root)
    control = os.path.join(root, "control")
    with open(control, "w") as f:
        f.write(
            "#!/bin/sh\n"
            'here="$(cd "$(dirname "$0")" && pwd)"\n'
            'case "$1" in\n'
            '  start) setsid sleep 100000 >/dev/null 2>&1 < /dev/null & echo $! > "$here/pid" ;;\n'
            '  stop) kill "$(cat "$here/pid")" ;;\n'
            '  status) if kill -0 "$(cat "$here/pid" 2>/dev/null)" 2>/dev/null; then echo started; else echo stoped; fi ;;\n'
            "esac\n"
        )
    os.chmod(control, 0o755)
    package = os.path.join(directory, "mini-1.0.tar.gz")
    with tarfile.open(package, "w:gz") as archive:
        archive.add(control, arcname="control")
    return package


def purge():
    run("dpkg", "--purge", "aspire-boot", "aspire-server", check=False)
    for path in ("/var/lib/aspire", "/var/lib/aspire-boot", "/var/lib/aspire-plugins", "/opt/aspire", "/etc/aspire", "/run/aspire-boot.pid"):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
    run("userdel", "aspire", check=False)
    run("groupdel", "aspire", check=False)


def test_deb_install_upgrade_remove(packages, tmp_path):
    purge()
    server = agent = None
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        run("dpkg", "-i", packages["server1"], packages["boot1"])

        # What the packages laid out.
        for path in ("/usr/bin/boot", "/usr/bin/BasicAgentCtl", "/usr/bin/aspire-server", "/usr/bin/aspirectl"):
            assert os.access(path, os.X_OK), path
        user = pwd.getpwnam("aspire")
        assert user.pw_shell.endswith("nologin")
        state = os.stat("/var/lib/aspire")
        assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (user.pw_uid, 0o700)
        assert stat.S_IMODE(os.stat("/var/lib/aspire-boot").st_mode) == 0o700
        config = os.stat("/etc/aspire/server.conf")
        assert (config.st_uid, config.st_gid, stat.S_IMODE(config.st_mode)) == (0, user.pw_gid, 0o640)
        assert stat.S_IMODE(os.stat("/etc/aspire/boot.conf").st_mode) == 0o600
        for page in ("boot", "aspire-server", "aspirectl", "BasicAgentCtl"):
            text = gzip.open(f"/usr/share/man/man1/{page}.1.gz", "rt").read()
            assert ".Dt " in text and "--help" not in text.split(".Sh")[0], page
        assert "deployment" in gzip.open("/usr/share/man/man1/aspirectl.1.gz", "rt").read()
        completion = run("bash", "-c", "source /usr/share/bash-completion/completions/aspirectl && complete -p aspirectl")
        assert "aspirectl" in completion.stdout
        assert os.path.exists("/usr/share/zsh/vendor-completions/_aspirectl")
        assert os.path.exists("/usr/share/fish/vendor_completions.d/aspirectl.fish")

        # The units, checked by systemd's own verifier.
        verify = run("systemd-analyze", "verify", "/usr/lib/systemd/system/aspire-server.service",
                     "/usr/lib/systemd/system/aspire-boot.service", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # The server, configured in its file, started as its unit starts it: its user, and
        # READY=1 once it listens.
        with open("/etc/aspire/server.conf", "a") as f:
            f.write(f"listen {HOST}:0\nhttp-listen {HOST}:0\nnode-name packaged\n")
        # An abstract socket (as sd_notify allows: "@name"), which the aspire user reaches.
        notify_name = f"aspire-package-test-{os.getpid()}"
        notify.bind("\0" + notify_name)
        notify.settimeout(60)
        server_log = str(tmp_path / "server.log")
        server = start_as_unit("aspire-server.service", server_log, notify="@" + notify_name)
        messages = []
        while not any("READY=1" in message for message in messages):
            try:
                messages.append(notify.recv(4096).decode())
            except socket.timeout:
                raise AssertionError(f"no READY=1 from the node: {messages}\n{open(server_log).read()}")
        address = open("/var/lib/aspire/grpc.addr").read().strip()
        assert any(f"STATUS=serving agents and admin calls on {address}" in message for message in messages), messages
        owner = os.stat("/var/lib/aspire/admin.token").st_uid
        assert owner == user.pw_uid, "the node runs as the aspire user"
        assert run("ps", "-o", "user=", "-p", str(server.pid)).stdout.strip() == "aspire"
        assert "packaged" in ctl(INSTALLED, address, "nodes").stdout, "the node's name comes from server.conf"

        # The agent, as the install steps say: the CA and a join token in /etc/aspire, the
        # server in boot.conf.
        shutil.copy("/var/lib/aspire/tls/ca.pem", "/etc/aspire/ca.pem")
        shutil.copy("/var/lib/aspire/enroll.token", "/etc/aspire/enroll.token")
        os.chmod("/etc/aspire/enroll.token", 0o600)
        text = open("/etc/aspire/boot.conf").read().replace("server aspire.example.com:8443", f"server {address}")
        open("/etc/aspire/boot.conf", "w").write(text + "tag svc=packaged\nstart-delay 0\ncontrol-socket off\n")
        agent_log = str(tmp_path / "agent.log")
        agent = start_as_unit("aspire-boot.service", agent_log)
        sn = connected_agent(INSTALLED, address)
        assert open("/var/lib/aspire-boot/agent.sn").read().strip() == sn
        hosts = ctl(INSTALLED, address, "hosts", "--tag", "svc=packaged").stdout
        assert sn in hosts, hosts
        result = ctl(INSTALLED, address, "run", "--agent", sn, "--", "id -un; echo packaged")
        assert "root" in result.stdout and "packaged" in result.stdout, result.stdout

        # A sub-agent, running before the upgrade.
        package = mini_agent(str(tmp_path))
        deployed = ctl(INSTALLED, address, "deploy", "mini", "1.0", "--agent", sn, "--file", package)
        assert "running" in deployed.stdout + deployed.stderr, deployed
        pid = int(wait("the sub-agent's pid", lambda: os.path.exists("/opt/aspire/agents/mini/1.0/pid")
                       and open("/opt/aspire/agents/mini/1.0/pid").read().strip()))
        certificate = open("/var/lib/aspire-boot/agent.pem", "rb").read()

        # The upgrade: the new package, then the restart systemd does (KillMode=process).
        run("dpkg", "-i", packages["boot2"])
        assert run("dpkg-query", "-W", "-f=${Version}", "aspire-boot").stdout == "0.1.1"
        assert f"server {address}" in open("/etc/aspire/boot.conf").read(), "the operator's configuration is kept"
        stop(agent)
        os.kill(pid, 0)  # stopping the agent left the sub-agent running
        agent = start_as_unit("aspire-boot.service", agent_log)
        wait("the agent to reconnect", lambda: ctl(INSTALLED, address, "run", "--agent", sn, "--", "echo again", check=False).returncode == 0)
        assert open("/var/lib/aspire-boot/agent.sn").read().strip() == sn
        os.kill(pid, 0)
        subagents = ctl(INSTALLED, address, "subagents", "--agent", sn).stdout
        assert "mini" in subagents and "1.0" in subagents, subagents
        assert str(pid) in subagents or "running" in subagents, subagents
        kept = open("/var/lib/aspire-boot/agent.pem", "rb").read()
        assert kept == certificate, "the host's certificate is kept"

        # Removal keeps configuration and state; purge removes the configuration.
        stop(agent)
        stop(server)
        run("dpkg", "-r", "aspire-boot", "aspire-server")
        assert not os.path.exists("/usr/bin/boot") and not os.path.exists("/usr/bin/aspire-server")
        assert os.path.exists("/etc/aspire/boot.conf") and os.path.exists("/var/lib/aspire-boot/agent.sn")
        run("dpkg", "-P", "aspire-boot", "aspire-server")
        assert not os.path.exists("/etc/aspire/boot.conf") and not os.path.exists("/etc/aspire/server.conf")
        assert os.path.exists("/var/lib/aspire/admin.token"), "purging keeps the node's state"
    finally:
        notify.close()
        for process in (agent, server):
            if process is not None:
                stop(process)
        if os.path.exists("/opt/aspire/agents/mini/1.0/pid"):
            run("sh", "-c", "kill $(cat /opt/aspire/agents/mini/1.0/pid)", check=False)
        purge()


def test_rpm_contents(packages):
    if shutil.which("rpm") is None or shutil.which("cpio") is None:
        pytest.skip("needs rpm and cpio (Debian's packages)")
    files = run("rpm", "-qlp", packages["rpm_boot"]).stdout.split()
    for path in ("/usr/bin/boot", "/usr/bin/BasicAgentCtl", "/usr/lib/systemd/system/aspire-boot.service",
                 "/etc/aspire/boot.conf", "/usr/lib/aspire/setup-boot", "/usr/share/man/man1/boot.1.gz"):
        assert path in files, (path, files)
    assert run("rpm", "-qcp", packages["rpm_boot"]).stdout.split() == ["/etc/aspire/boot.conf"]
    requires = run("rpm", "-qp", "--requires", packages["rpm_boot"]).stdout
    assert all(name in requires for name in ("bash", "tar", "gzip", "tzdata")), requires
    scripts = run("rpm", "-qp", "--scripts", packages["rpm_boot"]).stdout
    assert "/usr/lib/aspire/setup-boot" in scripts and "try-restart aspire-boot.service" in scripts, scripts

    files = run("rpm", "-qlp", packages["rpm_server"]).stdout.split()
    for path in ("/usr/bin/aspire-server", "/usr/bin/aspirectl", "/usr/lib/systemd/system/aspire-server.service",
                 "/etc/aspire/server.conf", "/usr/share/bash-completion/completions/aspirectl", "/usr/share/man/man1/aspirectl.1.gz"):
        assert path in files, (path, files)
    listing = run("rpm", "-qlvp", packages["rpm_server"]).stdout
    line = next(line for line in listing.splitlines() if line.endswith("/etc/aspire/server.conf"))
    assert line.startswith("-rw-r-----") and " aspire " in line, line
    scripts = run("rpm", "-qp", "--scripts", packages["rpm_server"]).stdout
    assert "groupadd --system aspire" in scripts and "/usr/lib/aspire/setup-server" in scripts, scripts
    # The same binaries as the .deb.
    extracted = run("sh", "-c", f"rpm2cpio '{packages['rpm_boot']}' | cpio -i --to-stdout ./usr/bin/boot 2>/dev/null | sha256sum").stdout.split()[0]
    assert extracted == run("sha256sum", os.path.join(packages["bin"], "boot")).stdout.split()[0]
