"""The web console in a real browser (Debian's chromium, headless, driven by selenium) against a
real aspire-server with real boot agents: sign-in, every tab against the REST answers, filters
and deep links, a tag bound in the page seen by aspirectl, forged forms refused, HTML from the
fleet shown as text. Screenshots of each tab, light and dark, desktop and narrow, go to
$ASPIRE_SCREENSHOTS (default .build/screenshots)."""

import getpass
import hashlib
import http.server
import json
import os
import shutil
import signal
import tarfile
import io
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.ui import Select
from selenium.webdriver.support.ui import WebDriverWait as SeleniumWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("ASPIRE_BIN_DIR", os.path.join(ROOT, ".build", "debug"))
SHOTS = os.environ.get("ASPIRE_SCREENSHOTS", os.path.join(ROOT, ".build", "screenshots"))
HOST = "127.0.3.10"
EVIL = "<img src=x onerror=\"document.title='pwned'\">"
SUBAGENT_MARK = "sleep 100127"


class WebDriverWait(SeleniumWait):
    """Selenium's wait, which also waits through a page being replaced under it: an element gone
    stale, and chromedriver's own word for the same race when the replacing page is mid-load
    ("Node with given id does not belong to the document"). Any other error still ends the wait."""

    REPLACED = "does not belong to the document"

    def __init__(self, browser, timeout):
        super().__init__(browser, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

    def until(self, method, message=""):
        def replaced_is_not_yet(driver):
            try:
                return method(driver)
            except WebDriverException as error:
                if self.REPLACED in (error.msg or ""):
                    return False
                raise
        return super().until(replaced_is_not_yet, message)


def wait_for(condition, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rest(node, method, path, body=None, token=None, content_type="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{node['http']}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token or node['admin']}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=20) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def node():
    data = tempfile.mkdtemp(prefix="aspire-console-")
    server_data = os.path.join(data, "node")
    os.makedirs(server_data)
    log = open(os.path.join(data, "server.log"), "wb")
    server = subprocess.Popen(
        [os.path.join(BIN, "aspire-server"), "serve", "--data-dir", server_data, "--listen", f"{HOST}:0",
         "--http-listen", f"{HOST}:0", "--node-name", "console-node", "--seed-agents", "127.0.0.0/8"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    for name in ("grpc.addr", "http.addr"):
        wait_for(lambda: os.path.exists(os.path.join(server_data, name)) or server.poll() is not None, name)
        assert server.poll() is None, open(os.path.join(data, "server.log")).read()
    read = lambda name: open(os.path.join(server_data, name)).read().strip()
    info = {"data": data, "server_data": server_data, "grpc": read("grpc.addr"), "http": read("http.addr"),
            "admin": read("admin.token"), "ca": os.path.join(server_data, "tls", "ca.pem")}
    agents = []
    for sn, tag in (("web-1", "role=web"), ("web-2", "role=web"), ("db-1", "role=db")):
        agent_log = open(os.path.join(data, f"{sn}.log"), "wb")
        agents.append(subprocess.Popen(
            [os.path.join(BIN, "boot"), "-f", "--data-dir", os.path.join(data, sn), "--plugins-dir", os.path.join(data, f"{sn}.plugins"),
             "--control-socket", os.path.join(data, f"{sn}.sock"), "--ca", info["ca"], "--token-file", os.path.join(server_data, "enroll.token"),
             "--agent-sn", sn, "--server", info["grpc"], "--tag", tag, "--backoff-cap", "1", "--start-delay", "0",
             "--agents-root", os.path.join(data, f"{sn}.agents"), "--limits", "rlimits", "--health-window", "1"],
            stdout=agent_log, stderr=subprocess.STDOUT,
        ))
    # A host of the seed's plain-HTTP kind whose name carries HTML.
    request = urllib.request.Request(
        f"http://{info['http']}/agent/status", data=json.dumps({"agentsn": "evil-1", "hostname": EVIL, "version": "1", "step": 60}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()
    wait_for(lambda: rest(info, "GET", "/api/v1/server/hosts?status=online")["count"] == 4, "four hosts online")
    yield info
    # Sub-agents outlive their agents by design: stop the test's own.
    subprocess.run(["pkill", "-f", SUBAGENT_MARK], check=False)
    for process in agents + [server]:
        process.send_signal(signal.SIGTERM)
    for process in agents + [server]:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def sign_in(browser, node, token, next_path="/"):
    browser.get(f"http://{node['http']}/signin?next={urllib.parse.quote(next_path, safe='')}")
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    field.submit()


def cells(browser, table_id, column):
    rows = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    # The host list's first column holds the selection boxes.
    offset = 1 if table_id == "hosts" else 0
    return [row.find_elements(By.TAG_NAME, "td")[column + offset].text for row in rows]


def shoot(browser, name):
    os.makedirs(SHOTS, exist_ok=True)
    for width, height, size in ((1280, 900, "desktop"), (390, 844, "narrow")):
        browser.set_window_size(width, height)
        for scheme in ("light", "dark"):
            browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
            height_needed = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(width, max(height, min(height_needed + 40, 4000)))
            browser.save_screenshot(os.path.join(SHOTS, f"{name}-{scheme}-{size}.png"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.set_window_size(1280, 900)


def test_sign_in_refuses_a_wrong_token_and_pages_need_a_session(node, browser):
    browser.delete_all_cookies()
    browser.get(f"http://{node['http']}/hosts?status=online")
    assert urllib.parse.urlparse(browser.current_url).path == "/signin"
    shoot(browser, "signin")
    sign_in(browser, node, "not-a-token", "/hosts")
    # The refusal is a new page: wait for it (the sign-in page being left may still be the one found).
    WebDriverWait(browser, 10).until(lambda b: "not valid" in b.find_element(By.ID, "signin-error").text)
    assert browser.get_cookie("aspire_session") is None
    # The token never travels in a URL, and the page never shows it.
    assert "not-a-token" not in browser.current_url and "not-a-token" not in browser.page_source


def test_every_tab_shows_what_the_store_holds(node, browser):
    browser.delete_all_cookies()
    sign_in(browser, node, node["admin"], "/")
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "hosts-total"))
    cookie = browser.get_cookie("aspire_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert node["admin"] not in browser.page_source and node["admin"] not in browser.current_url

    # Dashboard: the counts of the REST dashboard.
    dashboard = rest(node, "GET", "/api/v1/server/dashboard")
    hosts = dashboard["hosts"]
    assert int(browser.find_element(By.ID, "hosts-total").text) == hosts["total"] == 4
    assert int(browser.find_element(By.ID, "hosts-online").text) == hosts["online"]
    assert int(browser.find_element(By.ID, "hosts-offline").text) == hosts["offline"]
    assert cells(browser, "nodes", 0) == ["console-node"]
    # The day's chart, from the counts the node keeps every 5 minutes.
    assert dashboard["history"] and browser.find_elements(By.CSS_SELECTOR, "#history svg polygon")
    shoot(browser, "dashboard")

    # Hosts: the seed's columns, every host the REST list has.
    browser.find_element(By.LINK_TEXT, "Hosts").click()
    listed = rest(node, "GET", "/api/v1/server/hosts?limit=1000")
    assert sorted(cells(browser, "hosts", 0)) == sorted(h["agentsn"] for h in listed["hosts"])
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#hosts thead th")][1:]
    assert headers[:9] == ["AgentSN", "Region", "Host name", "Management IP", "OS", "Arch", "Version", "Status", "Last change"]
    assert int(browser.find_element(By.ID, "host-count").get_attribute("data-count")) == listed["count"]
    shoot(browser, "hosts")

    # Tags: key, value, host count as REST says, each linking to its hosts.
    browser.find_element(By.LINK_TEXT, "Tags").click()
    tags = {(t["name"], t["value"]): t["hosts"] for t in rest(node, "GET", "/api/v1/server/tags")["tags"]}
    shown = {(n, v): int(c) for n, v, c in zip(cells(browser, "tags", 0), cells(browser, "tags", 1), cells(browser, "tags", 2))}
    assert shown == tags and shown[("role", "web")] == 2
    browser.find_element(By.CSS_SELECTOR, "#tags a[href*='role%3Dweb']").click()
    assert sorted(cells(browser, "hosts", 0)) == ["web-1", "web-2"]
    shoot(browser, "tags")

    # Agent versions: an uploaded package with its path and SHA256.
    content = b"#!/bin/sh\necho console\n" * 100
    rest(node, "POST", "/api/v1/server/package/raw?name=ConsoleAgent&version=1.2&os=linux&arch=x86_64&file=console-agent.tar.gz",
         content, content_type="application/octet-stream")
    browser.find_element(By.LINK_TEXT, "Agent versions").click()
    row = browser.find_element(By.XPATH, "//table[@id='packages']//tr[td[1]='ConsoleAgent']")
    texts = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert texts[1:4] == ["1.2", "linux", "x86_64"]
    assert "console-agent.tar.gz" in texts[4]
    assert "aspirectl deploy ConsoleAgent 1.2" in texts[5]
    assert texts[6] == hashlib.sha256(content).hexdigest()
    shoot(browser, "versions")


def test_filters_live_in_the_url(node, browser):
    browser.get(f"http://{node['http']}/hosts")
    Select(browser.find_element(By.NAME, "status")).select_by_value("online")
    browser.find_element(By.NAME, "tag").send_keys("role=db")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "tag=role%3Ddb" in b.current_url or "tag=role=db" in b.current_url)
    assert "status=online" in browser.current_url
    assert cells(browser, "hosts", 0) == ["db-1"]
    # The link restores the same list in a fresh page.
    link = browser.current_url
    browser.get(f"http://{node['http']}/")
    browser.get(link)
    assert cells(browser, "hosts", 0) == ["db-1"]
    assert Select(browser.find_element(By.NAME, "status")).first_selected_option.get_attribute("value") == "online"
    # Host name prefix and node, as deep links.
    browser.get(f"http://{node['http']}/hosts?hostname=vm&node=console-node")
    assert sorted(cells(browser, "hosts", 0)) == sorted(
        h["agentsn"] for h in rest(node, "GET", "/api/v1/server/hosts?hostname=vm&node=console-node")["hosts"]
    )


def test_a_hosts_facts_on_demand(node, browser):
    browser.get(f"http://{node['http']}/hosts/web-1")
    Select(browser.find_element(By.ID, "facts-topic")).select_by_value("os")
    browser.find_element(By.ID, "facts-read").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "facts-output"))
    facts = json.loads(browser.find_element(By.ID, "facts-output").text)
    with open("/etc/os-release") as release:
        expected = dict(line.strip().split("=", 1) for line in release if "=" in line)
    assert facts["id"] == expected["ID"].strip('"')
    assert facts["arch"] == os.uname().machine


def test_a_tag_bound_in_the_page_is_seen_by_aspirectl(node, browser):
    browser.get(f"http://{node['http']}/hosts/web-1")
    assert browser.find_element(By.CSS_SELECTOR, "#facts").text.count("web-1") >= 1
    form = browser.find_element(By.CSS_SELECTOR, "form.bind")
    form.find_element(By.NAME, "name").send_keys("canary")
    form.find_element(By.NAME, "value").send_keys("yes")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "canary=yes" in b.find_element(By.ID, "host-tags").text)
    shoot(browser, "host")
    listed = subprocess.run(
        [os.path.join(BIN, "aspirectl"), "hosts", "--server", node["grpc"], "--ca", node["ca"],
         "--token-file", os.path.join(node["server_data"], "admin.token"), "--tag", "canary=yes", "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert [h["agentSn"] for h in json.loads(listed.stdout)["hosts"]] == ["web-1"], listed.stdout
    # Unbound in the page: gone for aspirectl too.
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Unbind canary=yes']").click()
    WebDriverWait(browser, 10).until(lambda b: "canary=yes" not in b.find_element(By.ID, "host-tags").text)
    assert rest(node, "GET", "/api/v1/server/hosts?tag=canary=yes")["count"] == 0


def start_agent(node, sn, tag):
    log = open(os.path.join(node["data"], f"{sn}.log"), "wb")
    return subprocess.Popen(
        [os.path.join(BIN, "boot"), "-f", "--data-dir", os.path.join(node["data"], sn), "--plugins-dir", os.path.join(node["data"], f"{sn}.plugins"),
         "--control-socket", os.path.join(node["data"], f"{sn}.sock"), "--ca", node["ca"], "--token-file", os.path.join(node["server_data"], "enroll.token"),
         "--agent-sn", sn, "--server", node["grpc"], "--tag", tag, "--backoff-cap", "1", "--start-delay", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )


def test_host_status_changes_without_a_reload(node, browser):
    agent = start_agent(node, "live-1", "role=live")
    try:
        wait_for(lambda: rest(node, "GET", "/api/v1/server/hosts?tag=role=live&status=online")["count"] == 1, "live-1 online")
        browser.get(f"http://{node['http']}/hosts?tag=role%3Dlive")
        status = lambda: browser.find_element(By.CSS_SELECTOR, "tr[data-sn='live-1'] [data-field=status]").text
        assert status() == "online"
        browser.execute_script("window.stillThisPage = true")
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        WebDriverWait(browser, 20).until(lambda b: status() == "offline")
        assert browser.execute_script("return window.stillThisPage === true")
    finally:
        if agent.poll() is None:
            agent.kill()


def test_a_run_streams_each_hosts_output_before_it_ends(node, browser):
    # Picked on the host list: the ticked hosts fill the Run page.
    browser.get(f"http://{node['http']}/hosts?tag=role%3Dweb")
    for box in browser.find_elements(By.CSS_SELECTOR, "#hosts input[type=checkbox]"):
        box.click()
    browser.find_element(By.CSS_SELECTOR, "button[form=selection]").click()
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path == "/run")
    assert sorted(browser.find_element(By.ID, "agents").get_attribute("value").split()) == ["web-1", "web-2"]
    agents = browser.find_element(By.ID, "agents")
    agents.clear()
    agents.send_keys("web-1\ndb-1\nnobody-here")
    browser.find_element(By.ID, "command").send_keys('echo "first <b>line</b> on $(hostname)"; sleep 4; echo last; exit 3')
    browser.find_element(By.ID, "user").send_keys(getpass.getuser())
    browser.find_element(By.CSS_SELECTOR, "form.runform button[type=submit]").click()

    # The dry run: the resolved targets and their count, nothing sent yet.
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "preview-count"))
    assert browser.find_element(By.ID, "preview-count").get_attribute("data-online") == "2"
    statuses = dict(zip(cells(browser, "targets", 0), cells(browser, "targets", 2)))
    assert statuses == {"web-1": "online", "db-1": "online", "nobody-here": "unknown"}
    tasks_before = rest(node, "GET", "/api/v1/server/task")["count"]
    shoot(browser, "run-preview")
    browser.find_element(By.ID, "confirm").click()

    # Followed live: the first line is on the page while the command still runs.
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path.startswith("/runs/"))
    row = lambda sn: browser.find_element(By.CSS_SELECTOR, f"article.hostrun[data-sn='{sn}']")
    WebDriverWait(browser, 15).until(lambda b: "first <b>line</b>" in row("web-1").find_element(By.CSS_SELECTOR, "pre.output").text)
    assert row("web-1").get_attribute("data-state") == "running"
    assert "last" not in row("web-1").find_element(By.CSS_SELECTOR, "pre.output").text
    assert not browser.find_elements(By.CSS_SELECTOR, "pre.output b")
    # Then the end: exit status 3 on both, failures marked, a way to run again on them.
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "run").get_attribute("data-done") == "true")
    for sn in ("web-1", "db-1"):
        assert row(sn).get_attribute("data-state") == "failed"
        assert row(sn).find_element(By.CSS_SELECTOR, "[data-field=code]").text == "3"
        assert "last" in row(sn).find_element(By.CSS_SELECTOR, "pre.output").text
    assert browser.find_element(By.ID, "run-failed").text == "2"
    shoot(browser, "run")
    # Each host's command is a task of the server's, as one sent by REST or aspirectl.
    assert rest(node, "GET", "/api/v1/server/task")["count"] == tasks_before + 2
    # Reloaded, the page shows the same without following anything.
    browser.refresh()
    assert row("db-1").find_element(By.CSS_SELECTOR, "[data-field=code]").text == "3"
    # Its task, from the run: the host's part with its exit status and output.
    task_link = row("web-1").find_element(By.CSS_SELECTOR, "[data-field=task]")
    task_id = task_link.text.split()[-1]
    task_link.click()
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path == f"/tasks/{task_id}")
    assert cells(browser, "subtasks", 0) == ["web-1"] and cells(browser, "subtasks", 2) == ["3"]
    stored = rest(node, "GET", f"/api/v1/server/task?id={task_id}")
    assert stored["task"]["count"] == 1
    shoot(browser, "task")
    # The host's page lists it among its recent results.
    browser.get(f"http://{node['http']}/hosts/web-1")
    results = browser.find_element(By.ID, "host-results")
    assert results.find_element(By.LINK_TEXT, task_id) and "3" in cells(browser, "host-results", 3)
    browser.back()
    # The Tasks tab lists what REST lists.
    browser.find_element(By.LINK_TEXT, "Tasks").click()
    listed = rest(node, "GET", "/api/v1/server/task")
    assert len(cells(browser, "tasks", 0)) == min(listed["count"], 50) and task_id in cells(browser, "tasks", 0)
    shoot(browser, "tasks")
    browser.back()
    browser.back()
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path.startswith("/runs/"))
    browser.find_element(By.LINK_TEXT, "Run again on the failed hosts").click()
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path == "/run")
    assert sorted(browser.find_element(By.ID, "agents").get_attribute("value").split()) == ["db-1", "web-1"]
    assert "exit 3" in browser.find_element(By.ID, "command").get_attribute("value")


def test_schedules_plugins_and_audit_tabs(node, browser):
    rest(node, "POST", "/api/v1/server/schedule", {"name": "nightly", "expr": "0 30 2 * * *", "command": "echo '<i>nightly</i>'",
                                                   "user": "root", "agents": ["web-1"], "tz": "UTC"})
    browser.get(f"http://{node['http']}/")
    browser.find_element(By.LINK_TEXT, "Schedules").click()
    stored = rest(node, "GET", "/api/v1/server/schedule?name=nightly&next=3")["schedules"][0]
    row = browser.find_element(By.XPATH, "//table[@id='schedules']//tr[td[1]='nightly']")
    texts = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert texts[2] == "echo '<i>nightly</i>'" and not row.find_elements(By.TAG_NAME, "i")
    shown = [t.text for t in row.find_elements(By.TAG_NAME, "time")]
    assert len(shown) == 3 == len(stored["next"])
    # The same instants (the page in UTC to the second, REST in ISO 8601).
    assert [t.replace(" UTC", "").replace(" ", "T") for t in shown] == [n[:19] for n in stored["next"]]
    shoot(browser, "schedules")

    browser.find_element(By.LINK_TEXT, "Plugins").click()
    metrics = rest(node, "GET", "/api/v1/server/metric")
    assert int(browser.find_element(By.ID, "metric-count").get_attribute("data-count")) == metrics["count"]
    shoot(browser, "plugins")

    # Rows arrive as the fleet acts (dispatches are audited too): the page's count lies
    # between REST's before and after.
    before = rest(node, "GET", "/api/v1/server/audit?limit=1")["count"]
    browser.find_element(By.LINK_TEXT, "Audit").click()
    after = rest(node, "GET", "/api/v1/server/audit?limit=1")["count"]
    assert 0 < before <= int(browser.find_element(By.ID, "audit-count").get_attribute("data-count")) <= after
    assert "CreateSchedule" in browser.find_element(By.ID, "audit").text
    shoot(browser, "audit")


def test_a_viewer_sees_only_what_its_role_allows(node, browser):
    created = rest(node, "POST", "/api/v1/server/operator", {"name": "vera", "role": "viewer"})
    browser.delete_all_cookies()
    sign_in(browser, node, created["secret"], "/tags")
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path == "/tags")
    tabs = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "header nav a")]
    assert tabs == ["Dashboard", "Hosts", "Tasks", "Agent versions", "Deployments", "Tags", "Schedules", "Plugins"]
    assert "vera" in browser.find_element(By.CSS_SELECTOR, ".who").text
    # No form it may not send.
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/tags']")
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/tags/delete']")
    # Sent anyway (with its own CSRF token), the service refuses it and nothing is made.
    browser.get(f"http://{node['http']}/run?agents=web-1&command=id&user=root")
    assert "vera (viewer) may not run commands" in browser.find_element(By.CSS_SELECTOR, "main").text
    assert not browser.find_elements(By.CSS_SELECTOR, "form.runform")
    browser.get(f"http://{node['http']}/audit")
    assert "may not" in browser.find_element(By.CSS_SELECTOR, "main").text
    # Back to the admin for the tests that follow.
    browser.delete_all_cookies()
    sign_in(browser, node, node["admin"], "/")
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "hosts-total"))


def mini_agent():
    """A sub-agent package: a control script (start|stop|status) and the program it starts."""
    control = b"""#!/bin/sh
cd "$(dirname "$0")"
case "$1" in
start) nohup ./agent.sh >> agent.out 2>&1 & echo $! > agent.pid; echo started ;;
stop) [ -f agent.pid ] && kill "$(cat agent.pid)" 2>/dev/null; rm -f agent.pid; echo stoped ;;
status) if [ -f agent.pid ] && kill -0 "$(cat agent.pid)" 2>/dev/null; then echo started; else echo stoped; fi ;;
esac
"""
    program = f"#!/bin/sh\nexec {SUBAGENT_MARK}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in (("control", control), ("agent.sh", program)):
            entry = tarfile.TarInfo(name)
            entry.size, entry.mode = len(content), 0o755
            archive.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()


def test_upload_then_deploy_ends_with_the_sub_agent_running(node, browser):
    content = mini_agent()
    path = os.path.join(node["data"], "ConsoleMini-1.0.tar.gz")
    with open(path, "wb") as f:
        f.write(content)
    browser.get(f"http://{node['http']}/versions")
    form = browser.find_element(By.ID, "upload")

    def fill(sha256):
        for name, value in (("name", "ConsoleMini"), ("version", "1.0"), ("sha256", sha256)):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        form.find_element(By.NAME, "file").send_keys(path)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # A SHA256 that is not the file's: refused, said so, nothing stored.
    fill("0" * 64)
    WebDriverWait(browser, 20).until(lambda b: "sha256" in b.find_element(By.ID, "upload-status").text.lower())
    assert not rest(node, "GET", "/api/v1/server/package?name=ConsoleMini")["packages"]
    # The right one: stored, listed with it.
    fill(hashlib.sha256(content).hexdigest())
    WebDriverWait(browser, 20).until(lambda b: "Uploaded ConsoleMini 1.0" in b.find_element(By.CSS_SELECTOR, "main").text)
    row = browser.find_element(By.XPATH, "//table[@id='packages']//tr[td[1]='ConsoleMini']")
    assert row.find_element(By.CSS_SELECTOR, "code.hash").text == hashlib.sha256(content).hexdigest()

    # Deployed to one host, one at a time: the task ends and the host runs it.
    row.find_element(By.LINK_TEXT, "Deploy").click()
    browser.find_element(By.ID, "agents").send_keys("web-2")
    browser.find_element(By.ID, "max_concurrency").send_keys("1")
    shoot(browser, "deploy")
    browser.find_element(By.ID, "deploy").click()
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path.startswith("/tasks/"))
    task_id = urllib.parse.urlparse(browser.current_url).path.rsplit("/", 1)[1]

    def done():
        browser.refresh()
        return cells(browser, "subtasks", 1) == ["succeeded"]

    wait_for(done, "the install task to succeed", timeout=60)
    assert rest(node, "GET", f"/api/v1/server/task?id={task_id}")["task"]["command"] == "install"

    def running():
        browser.get(f"http://{node['http']}/hosts/web-2")
        return dict(zip(cells(browser, "subagents", 0), cells(browser, "subagents", 2))).get("ConsoleMini") == "running"

    wait_for(running, "ConsoleMini running on web-2", timeout=30)
    browser.get(f"http://{node['http']}/")
    assert "ConsoleMini" in browser.find_element(By.ID, "deployments").text
    # Taken off again, so nothing outlives the test.
    rest(node, "POST", "/api/v1/server/task", {"command": "uninstall", "agents": ["web-2"], "parameters": {"name": "ConsoleMini"}})


def test_forged_forms_change_nothing(node, browser):
    cookie = browser.get_cookie("aspire_session")["value"]

    def post(path, fields):
        request = urllib.request.Request(
            f"http://{node['http']}{path}", data=urllib.parse.urlencode(fields).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"aspire_session={cookie}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    # The session's cookie without its CSRF token, or with another: refused, nothing made.
    for fields in ({"name": "forged", "value": "1"}, {"name": "forged", "value": "1", "csrf": "guess"}):
        status, text = post("/tags", fields)
        assert status == 403 and "CSRF" in text
    assert not [t for t in rest(node, "GET", "/api/v1/server/tags")["tags"] if t["name"] == "forged"]

    # A page on another site that posts to the console: the browser sends no session cookie
    # (SameSite=Strict) and the console sends it to sign in; nothing is made.
    attacker_dir = tempfile.mkdtemp(prefix="attacker-")
    with open(os.path.join(attacker_dir, "index.html"), "w") as page:
        page.write(f"""<!doctype html><form id=f method=post action="http://{node['http']}/tags">
            <input name=name value=forged2><input name=value value=1></form><script>document.getElementById('f').submit()</script>""")
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=attacker_dir)
    attacker = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.2:{attacker.server_address[1]}/index.html")
        WebDriverWait(browser, 10).until(lambda b: node["http"] in b.current_url)
        assert urllib.parse.urlparse(browser.current_url).path in ("/signin", "/tags")
    finally:
        attacker.shutdown()
        shutil.rmtree(attacker_dir, ignore_errors=True)
    assert not [t for t in rest(node, "GET", "/api/v1/server/tags")["tags"] if t["name"] == "forged2"]
    # The real session still works.
    browser.get(f"http://{node['http']}/tags")
    assert urllib.parse.urlparse(browser.current_url).path == "/tags"


def test_html_from_the_fleet_is_shown_as_text(node, browser):
    browser.get(f"http://{node['http']}/hosts?hostname=%3Cimg")
    cell = browser.find_element(By.CSS_SELECTOR, "#hosts td.hostname")
    assert cell.text == EVIL
    assert not browser.find_elements(By.CSS_SELECTOR, "#hosts img")
    browser.get(f"http://{node['http']}/hosts/evil-1")
    assert browser.find_element(By.CSS_SELECTOR, "#facts dd.hostname").text == EVIL
    assert browser.title != "pwned" and EVIL in browser.title


def test_sign_out_ends_the_session(node, browser):
    browser.get(f"http://{node['http']}/")
    old = browser.get_cookie("aspire_session")["value"]
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    WebDriverWait(browser, 10).until(lambda b: urllib.parse.urlparse(b.current_url).path == "/signin")
    # The old cookie, sent again, opens nothing.
    request = urllib.request.Request(f"http://{node['http']}/hosts", headers={"Cookie": f"aspire_session={old}"})
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(request, timeout=10)
    assert answer.value.code == 302 and answer.value.headers["Location"].startswith("/signin")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
