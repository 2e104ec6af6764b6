// Aspire console: small enhancements; every page works without this file.

// Buttons marked .danger ask first.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.classList.contains("danger")) {
    const what = button.getAttribute("aria-label") || button.textContent;
    if (!window.confirm(`${what}?`)) event.preventDefault();
  }
});

// A run being followed: each host's state and output as they come. Text goes in with
// textContent, so whatever a host prints is shown, never run.
function followRun(section) {
  const id = section.dataset.run;
  const rows = new Map([...section.querySelectorAll("article.hostrun")].map((row) => [row.dataset.sn, row]));
  const field = (row, name) => row.querySelector(`[data-field="${name}"]`);
  const counts = () => {
    const states = [...rows.values()].map((row) => row.dataset.state);
    document.getElementById("run-ok").textContent = states.filter((s) => s === "ok").length;
    document.getElementById("run-failed").textContent = states.filter((s) => s === "failed" || s === "error").length;
  };
  const events = new EventSource(`/runs/${encodeURIComponent(id)}/events`);
  events.addEventListener("host", (message) => {
    const host = JSON.parse(message.data);
    const row = rows.get(host.sn);
    if (!row) return;
    row.dataset.state = host.state;
    const state = field(row, "state");
    state.textContent = host.state;
    state.className = `state state-${host.state}`;
    field(row, "code").textContent = host.code === undefined ? "" : String(host.code);
    field(row, "message").textContent = host.message || "";
    row.classList.toggle("bad", host.state === "failed" || host.state === "error");
    if (host.output !== undefined) field(row, "output").textContent = host.output;
    const task = field(row, "task");
    if (host.task) {
      task.textContent = `task ${host.task}`;
      task.href = `/tasks/${host.task}`;
      task.hidden = false;
    }
    counts();
  });
  events.addEventListener("output", (message) => {
    const piece = JSON.parse(message.data);
    const row = rows.get(piece.sn);
    if (row) field(row, "output").append(piece.text);
  });
  events.addEventListener("done", (message) => {
    events.close();
    const failed = JSON.parse(message.data).failed || [];
    section.removeAttribute("data-live");
    section.dataset.done = "true";
    document.getElementById("run-phase").textContent = "done.";
    const again = document.getElementById("run-again");
    if (failed.length > 0) {
      const link = again.querySelector("a");
      const url = new URL(link ? link.href : "/run", window.location.href);
      url.searchParams.set("agents", failed.join(","));
      if (link) link.href = url.pathname + url.search;
      again.hidden = false;
    }
  });
  events.onerror = () => {
    if (section.dataset.done) events.close();
  };
}

const run = document.querySelector("section.run[data-live]");
if (run) followRun(run);

// The host list: each row's status as it changes, from the same filters and page.
const hostTable = document.querySelector("table#hosts[data-live]");
if (hostTable) {
  const events = new EventSource(`/hosts/live${window.location.search}`);
  events.addEventListener("status", (message) => {
    const host = JSON.parse(message.data);
    const row = [...hostTable.querySelectorAll("tbody tr")].find((r) => r.dataset.sn === host.sn);
    if (!row) return;
    const status = row.querySelector('[data-field="status"]');
    if (status.textContent !== host.status) row.classList.add("changed");
    status.textContent = host.status;
    status.className = `state state-${host.status}`;
    row.querySelector('[data-field="modified"]').textContent = host.modified;
    row.querySelector('[data-field="node"]').textContent = host.node;
  });
  events.addEventListener("count", (message) => {
    const count = JSON.parse(message.data).count;
    const summary = document.getElementById("host-count");
    if (summary && String(count) !== summary.dataset.count) {
      summary.dataset.live = String(count);
      summary.setAttribute("title", `${count} hosts match now; reload for the list`);
    }
  });
  window.addEventListener("pagehide", () => events.close());
}

// An upload: its progress while the file goes, then the page the server answers with.
const upload = document.getElementById("upload");
if (upload) {
  upload.addEventListener("submit", (event) => {
    event.preventDefault();
    const progress = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    const request = new XMLHttpRequest();
    request.open("POST", upload.action);
    request.upload.addEventListener("progress", (step) => {
      if (!step.lengthComputable) return;
      progress.hidden = false;
      progress.value = Math.round((100 * step.loaded) / step.total);
      status.textContent = `${progress.value}%`;
    });
    request.addEventListener("load", () => {
      if (request.status < 400) {
        window.location.assign(request.responseURL);
        return;
      }
      // The error page's message, in place.
      const page = new DOMParser().parseFromString(request.responseText, "text/html");
      const error = page.querySelector(".error");
      status.textContent = error ? error.textContent : `upload failed (${request.status})`;
      status.className = "error";
    });
    request.addEventListener("error", () => { status.textContent = "the upload did not reach the server"; });
    status.textContent = "uploading…";
    request.send(new FormData(upload));
  });
}
