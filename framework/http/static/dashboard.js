// The dashboard served by `framework run` at "/": the workers, the jobs in flight and their
// outcomes, the live event stream, and a form to submit a job and watch it.
//
// It speaks only the runner's HTTP API, same origin: with a token, the server set an
// HttpOnly cookie when the page was opened as /?token=..., and every fetch and EventSource
// here carries it without this script ever seeing the token.

import { readEventStream } from "./sse.js";
import { skeleton } from "./skeleton.js";

const MAX_EVENT_ROWS = 500; // rows kept in the event table
const MAX_EVENT_BUFFER = 2000; // events kept to re-filter the table
const MAX_RECENT_JOBS = 50; // outcomes kept in "Recent outcomes"
const MAX_TRACKED_JOBS = 1000; // jobs in flight remembered (a lost response must not leak)
const MAX_UPDATES_SHOWN = 200; // updates listed for the submitted job
const MAX_STREAM_CHARS = 200_000; // characters of the submitted job's stream kept
const WORKERS_POLL_MS = 15_000; // remote workers can leave without an event
const RECONCILE_MS = 500; // after events were lost: ask the server how the jobs in flight are
const RECONCILE_MAX = 50; // jobs asked about at a time
const QUIET_MS = 2_000; // a job in flight this long without an event: ask about it too
const RECONNECT_MS = 3_000;

const $ = (selector) => document.querySelector(selector);

// ------------------------------------------------------------------------------ helpers

/** Build an element: h("td", {class: "x", dataset: {seq: 1}}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function json(value, indent) {
  try {
    return JSON.stringify(value, null, indent);
  } catch {
    return String(value);
  }
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A job id short enough for a table cell (ids share a per-runner prefix: keep the end). */
function shortId(jobId) {
  return jobId.length > 24 ? `${jobId.slice(0, 8)}…${jobId.slice(-12)}` : jobId;
}

/** Local time of a timestamp in seconds: HH:MM:SS, with milliseconds when asked. */
function clock(seconds, millis = true) {
  const d = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return millis ? `${time}.${pad(d.getMilliseconds(), 3)}` : time;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
}

function jobLabel(name) {
  return name === null || name === undefined || name === "" ? "(default)" : name;
}

// -------------------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === "object" ? body.error : null;
    super(error ? `${status}: ${error}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function errorFrom(response) {
  let body = null;
  const text = await response.text();
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text.trim() || response.statusText, detail: null };
  }
  if (response.status === 401) showAuthNotice();
  return new ApiError(response.status, body);
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (!response.ok) throw await errorFrom(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** An error as readable DOM: its status, its message, and the fields at fault. */
function renderError(error) {
  const box = document.createDocumentFragment();
  if (!(error instanceof ApiError)) {
    box.append(h("strong", {}, error.message || String(error)));
    return box;
  }
  const { status, body } = error;
  box.append(h("strong", {}, `${status} `, body?.error ?? "error"));
  const detail = body?.detail;
  if (Array.isArray(detail)) {
    const list = h("ul", { class: "fields" });
    for (const item of detail) {
      if (item && typeof item === "object" && ("field" in item || "reason" in item)) {
        list.append(h("li", {}, item.field ? h("code", {}, item.field) : null, item.field ? ": " : "", item.reason ?? json(item)));
      } else {
        list.append(h("li", {}, typeof item === "string" ? item : json(item)));
      }
    }
    box.append(list);
  } else if (detail !== null && detail !== undefined && detail !== "") {
    box.append(h("div", { class: "detail" }, typeof detail === "string" ? detail : json(detail, 2)));
  }
  if (status === 401) {
    box.append(h("div", { class: "detail" }, "Open this page once as /?token=YOUR_TOKEN to sign in."));
  }
  return box;
}

function showAuthNotice() {
  const notice = $("#notice");
  notice.replaceChildren(
    h("strong", {}, "This runner needs a token. "),
    "Open this page once as ",
    h("code", {}, `${location.origin}/?token=YOUR_TOKEN`),
    " (the token is then kept in an HttpOnly cookie for this browser), or ask whoever runs it.",
  );
  notice.dataset.kind = "auth";
  notice.hidden = false;
}

function hideNotice(kind) {
  const notice = $("#notice");
  if (!kind || notice.dataset.kind === kind) notice.hidden = true;
}

// ------------------------------------------------------------------------------ workers

const state = {
  workers: [], // as GET /v1/workers lists them
  failed: [], // workers that failed to start: {name, error}
  seenWorkers: new Set(), // names seen in events too (for the filter)
};

let workersTimer = null;
let workersInFlight = null;

/** Reload the workers soon (events come in bursts at start-up: one request for a burst). */
function refreshWorkersSoon() {
  if (workersTimer) return;
  workersTimer = setTimeout(() => {
    workersTimer = null;
    refreshWorkers();
  }, 150);
}

async function refreshWorkers() {
  if (workersInFlight) return workersInFlight;
  workersInFlight = (async () => {
    try {
      const body = await api("/v1/workers");
      state.workers = [...(body.workers ?? [])].sort((a, b) => a.name.localeCompare(b.name));
      state.failed = body.failed ?? [];
      hideNotice("auth");
      renderWorkers();
      renderWorkerChoices();
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) console.warn("workers:", error);
    } finally {
      workersInFlight = null;
    }
  })();
  return workersInFlight;
}

function renderWorkers() {
  const list = $("#workers");
  const running = runningByWorker();
  list.replaceChildren(
    ...state.workers.map((worker) => {
      const busy = running.get(worker.name) ?? 0;
      return h(
        "li",
        {
          class: "worker",
          dataset: {
            worker: worker.name,
            local: String(worker.local),
            active: String(worker.active),
          },
        },
        h(
          "div",
          { class: "worker-head" },
          h("span", { class: "worker-name" }, worker.name),
          h("span", { class: `badge ${worker.local ? "local" : "remote"}` }, worker.local ? "local" : `remote · ${worker.runner}`),
          h("span", { class: `badge ${worker.active ? "active" : "inactive"}` }, worker.active ? "active" : "inactive"),
          h("span", { class: "badge busy", dataset: { busy: String(busy) }, hidden: busy === 0 }, `${busy} running`),
        ),
        h("ul", { class: "worker-jobs" }, ...describedJobs(worker).map((described) => renderDescribedJob(worker, described))),
      );
    }),
    ...state.failed.map((failed) =>
      h(
        "li",
        { class: "worker failed", dataset: { worker: failed.name, failed: "true" } },
        h("div", { class: "worker-head" }, h("span", { class: "worker-name" }, failed.name), h("span", { class: "badge failed" }, "failed to start")),
        h("p", { class: "hint error-text" }, failed.error),
      ),
    ),
  );
  $("#workers-count").textContent = String(state.workers.length);
  $("#workers-empty").hidden = state.workers.length + state.failed.length > 0;
}

function describedJobs(worker) {
  const jobs = worker.jobs ?? [];
  return jobs.length ? jobs : [{ name: null, description: "", input_schema: null, output_schema: null, streaming: false }];
}

function renderDescribedJob(worker, described) {
  const name = jobLabel(described.name);
  const schemas = [];
  if (described.input_schema) {
    schemas.push(h("details", { class: "schema" }, h("summary", {}, "input schema"), h("pre", {}, json(described.input_schema, 2))));
  }
  if (described.output_schema) {
    schemas.push(h("details", { class: "schema" }, h("summary", {}, "output schema"), h("pre", {}, json(described.output_schema, 2))));
  }
  return h(
    "li",
    { class: "described-job", dataset: { job: described.name ?? "" } },
    h(
      "div",
      { class: "job-line" },
      h("code", { class: "job-name" }, name),
      described.streaming ? h("span", { class: "badge stream" }, "streams") : null,
      h(
        "button",
        {
          type: "button",
          class: "link try",
          "aria-label": `Fill the form for ${name} on ${worker.name}`,
          onclick: () => chooseInForm(worker.name, described.name ?? ""),
        },
        "try it",
      ),
    ),
    described.description ? h("p", { class: "hint" }, described.description) : null,
    ...schemas,
  );
}

// ------------------------------------------------------------------------- submit form

const form = {
  payloadEdited: false,
  run: null, // {controller, jobId, started}
};

function renderWorkerChoices() {
  const select = $("#submit-worker");
  const previous = select.value;
  select.replaceChildren(
    ...state.workers.map((worker) =>
      h("option", { value: worker.name }, worker.name + (worker.active ? "" : " (inactive)") + (worker.local ? "" : ` @ ${worker.runner}`)),
    ),
  );
  if (state.workers.some((w) => w.name === previous)) select.value = previous;
  if (select.value !== previous) renderJobChoices();
  renderFilterChoices();
}

function selectedWorker() {
  return state.workers.find((w) => w.name === $("#submit-worker").value);
}

function renderJobChoices() {
  const select = $("#submit-job");
  const previous = select.value;
  const worker = selectedWorker();
  const options = worker
    ? describedJobs(worker).map((d) => h("option", { value: d.name ?? "" }, jobLabel(d.name) + (d.streaming ? " · streams" : "")))
    : [];
  options.push(h("option", { value: "\u0000other" }, "another name…"));
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  onJobChosen();
}

function selectedDescription() {
  const worker = selectedWorker();
  const name = $("#submit-job").value;
  if (!worker || name === "\u0000other") return null;
  return describedJobs(worker).find((d) => (d.name ?? "") === name) ?? null;
}

function onJobChosen() {
  const other = $("#submit-job").value === "\u0000other";
  $("#submit-job-other").hidden = !other;
  const described = selectedDescription();
  $("#submit-job-description").textContent = described?.description ?? "";
  if (!form.payloadEdited) {
    const example = described?.input_schema ? skeleton(described.input_schema) : {};
    $("#submit-payload").value = json(example && typeof example === "object" ? example : {}, 2);
  }
}

function chooseInForm(workerName, jobName) {
  $("#submit-worker").value = workerName;
  form.payloadEdited = false;
  renderJobChoices();
  $("#submit-job").value = jobName;
  onJobChosen();
  $("#submit-payload").focus();
}

function parseObject(text, what) {
  if (!text.trim()) return undefined;
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`The ${what} is not valid JSON: ${error.message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`The ${what} must be a JSON object ({...}), not ${Array.isArray(value) ? "an array" : typeof value === "object" ? "null" : `a ${typeof value}`}.`);
  }
  return value;
}

function buildRequest() {
  const worker = $("#submit-worker").value;
  if (!worker) throw new Error("Choose a worker first (none is ready yet).");
  const body = { worker };
  const chosen = $("#submit-job").value;
  const name = chosen === "\u0000other" ? $("#submit-job-other").value.trim() : chosen;
  if (name) body.name = name;
  const payload = parseObject($("#submit-payload").value, "payload");
  if (payload !== undefined) body.payload = payload;
  const timeout = $("#submit-timeout").value.trim();
  if (timeout) {
    const seconds = Number(timeout);
    if (!Number.isFinite(seconds)) throw new Error(`The timeout must be a number of seconds, not ${JSON.stringify(timeout)}.`);
    body.timeout = seconds;
  }
  const headers = parseObject($("#submit-headers").value, "headers");
  if (headers !== undefined) body.headers = headers;
  return body;
}

function resetResult() {
  const result = $("#result");
  result.hidden = false;
  result.dataset.status = "sending";
  setResultStatus("sending");
  $("#result-job-id").textContent = "";
  $("#result-duration").textContent = "";
  $("#result-error").hidden = true;
  $("#result-error").replaceChildren();
  $("#result-updates").replaceChildren();
  $("#result-updates-count").textContent = "";
  $("#result-updates-block").hidden = true;
  $("#result-stream").textContent = "";
  $("#result-stream-state").textContent = "";
  $("#result-stream-block").hidden = true;
  $("#result-response").textContent = "";
  $("#result-response-block").hidden = true;
}

function setResultStatus(status) {
  const badge = $("#result-status");
  badge.textContent = status;
  badge.dataset.status = status;
  $("#result").dataset.status = status;
}

function showResultError(error) {
  const box = $("#result-error");
  box.replaceChildren(renderError(error));
  box.hidden = false;
}

async function submitJob(event) {
  event.preventDefault();
  let body;
  try {
    body = buildRequest();
  } catch (error) {
    resetResult();
    setResultStatus("not sent");
    showResultError(error);
    return;
  }
  form.run?.controller.abort(); // one job watched at a time (browsers allow few connections)
  const run = { controller: new AbortController(), jobId: null, started: performance.now() };
  form.run = run;
  resetResult();
  $("#cancel-button").disabled = true;
  let response;
  try {
    response = await fetch("/v1/jobs", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: run.controller.signal,
    });
    if (!response.ok) throw await errorFrom(response);
    setResultStatus("running");
    let ended = false;
    for await (const message of readEventStream(response)) {
      if (form.run !== run) return;
      ended = onJobMessage(run, message) || ended;
    }
    if (!ended && form.run === run) {
      setResultStatus("disconnected");
      showResultError(new Error("The connection closed before the job's response arrived; its outcome is under Jobs."));
    }
  } catch (error) {
    if (error.name === "AbortError" || form.run !== run) return;
    setResultStatus(error instanceof ApiError ? "refused" : "disconnected");
    showResultError(error);
  } finally {
    if (form.run === run) {
      $("#cancel-button").disabled = true;
      $("#result-duration").textContent = duration((performance.now() - run.started) / 1000);
    }
  }
}

/** Show one event of the submitted job's stream; true for its response. */
function onJobMessage(run, message) {
  let data = null;
  try {
    data = message.data ? JSON.parse(message.data) : null;
  } catch {
    data = message.data;
  }
  switch (message.event) {
    case "job":
      run.jobId = data.job_id;
      $("#result-job-id").textContent = data.job_id;
      $("#cancel-button").disabled = false;
      return false;
    case "update": {
      const list = $("#result-updates");
      list.append(h("li", { dataset: { id: message.id ?? "" } }, json(data)));
      while (list.childElementCount > MAX_UPDATES_SHOWN) list.firstElementChild.remove();
      list.scrollTop = list.scrollHeight;
      $("#result-updates-count").textContent = String(Number($("#result-updates-count").textContent || 0) + 1);
      $("#result-updates-block").hidden = false;
      return false;
    }
    case "stream_start":
      $("#result-stream-block").hidden = false;
      $("#result-stream-state").textContent = "streaming…";
      return false;
    case "stream_data": {
      $("#result-stream-block").hidden = false;
      const pre = $("#result-stream");
      pre.append(typeof data === "string" ? data : `${json(data)}\n`);
      if (pre.textContent.length > MAX_STREAM_CHARS) pre.textContent = pre.textContent.slice(-MAX_STREAM_CHARS);
      pre.scrollTop = pre.scrollHeight;
      return false;
    }
    case "stream_end":
      $("#result-stream-state").textContent = "ended";
      return false;
    case "response":
      setResultStatus(data.status);
      $("#result-response").textContent = json(data.response, 2);
      $("#result-response-block").hidden = false;
      $("#cancel-button").disabled = true;
      return true;
    case "error":
      showResultError(new ApiError(data?.status ?? 500, data));
      return false;
    default:
      return false;
  }
}

async function cancelJob(jobId, report) {
  try {
    await api(`/v1/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
    report?.(null);
  } catch (error) {
    if (report) report(error);
    else alertError(error);
  }
}

function alertError(error) {
  const notice = $("#notice");
  notice.replaceChildren(renderError(error));
  notice.dataset.kind = "error";
  notice.hidden = false;
  setTimeout(() => hideNotice("error"), 8000);
}

// --------------------------------------------------------------------- jobs from events

const jobs = {
  running: new Map(), // key -> job
  recent: [], // newest first
  dirty: false,
};

function jobKey(worker, jobId) {
  return `${worker}\u0000${jobId}`;
}

function runningByWorker() {
  const counts = new Map();
  for (const job of jobs.running.values()) counts.set(job.worker, (counts.get(job.worker) ?? 0) + 1);
  return counts;
}

function trackJob(event, kind) {
  const jobId = String(event.thread_id);
  const key = jobKey(event.node_name, jobId);
  if (kind === "request") {
    jobs.running.set(key, {
      worker: event.node_name,
      jobId,
      name: event.data?.name ?? null,
      requester: event.data?.requester ?? "",
      start: event.timestamp,
      updates: 0,
      chunks: 0,
      seen: Date.now(), // when this page last heard of it
      unknown: false, // the server keeps no record of it (not submitted over HTTP)
    });
    if (jobs.running.size > MAX_TRACKED_JOBS) jobs.running.delete(jobs.running.keys().next().value);
  } else if (kind === "update" || kind === "stream") {
    const job = jobs.running.get(key);
    if (job) {
      job[kind === "update" ? "updates" : "chunks"] += 1;
      job.seen = Date.now();
    }
  } else if (kind === "response" || kind === "cancelled") {
    const job = jobs.running.get(key) ?? { worker: event.node_name, jobId, name: null, start: null, updates: 0, chunks: 0 };
    jobs.running.delete(key);
    job.status = event.data?.status ?? (kind === "cancelled" ? "cancelled" : event.is_error ? "error" : "completed");
    job.source = "event";
    job.end = event.timestamp;
    job.response = event.data?.response;
    jobs.recent.unshift(job);
    jobs.recent.length = Math.min(jobs.recent.length, MAX_RECENT_JOBS);
  } else {
    return;
  }
  jobs.dirty = true;
}

function renderJobs() {
  const inflight = $("#jobs-inflight tbody");
  inflight.replaceChildren(
    ...[...jobs.running.values()].reverse().map((job) =>
      h(
        "tr",
        { dataset: { jobId: job.jobId, worker: job.worker, status: "running" } },
        h("td", {}, job.worker),
        h("td", {}, h("code", {}, jobLabel(job.name))),
        h("td", {}, jobIdButton(job.jobId)),
        h("td", { class: "elapsed num", dataset: { start: String(job.start) } }, duration(Date.now() / 1000 - job.start)),
        h("td", { class: "num" }, job.updates),
        h("td", { class: "num" }, job.chunks),
        h("td", {}, h("button", { type: "button", class: "small", "aria-label": `Cancel job ${job.jobId}`, onclick: () => cancelJob(job.jobId) }, "cancel")),
      ),
    ),
  );
  $("#inflight-count").textContent = String(jobs.running.size);
  $("#inflight-empty").hidden = jobs.running.size > 0;
  inflight.closest(".table-x").hidden = jobs.running.size === 0;

  const recent = $("#jobs-recent tbody");
  recent.replaceChildren(
    ...jobs.recent.map((job) =>
      h(
        "tr",
        { dataset: { jobId: job.jobId, worker: job.worker, status: job.status, source: job.source }, title: clip(json(job.response) ?? "", 500) },
        h("td", {}, h("span", { class: "status", dataset: { status: job.status } }, job.status)),
        h("td", {}, job.worker),
        h("td", {}, h("code", {}, jobLabel(job.name))),
        h("td", {}, jobIdButton(job.jobId)),
        h("td", { class: "num duration" }, job.start === null ? "—" : duration(job.end - job.start)),
        h("td", { class: "num", title: clock(job.end) }, clock(job.end, false)),
      ),
    ),
  );
  $("#recent-count").textContent = String(jobs.recent.length);
  $("#recent-empty").hidden = jobs.recent.length > 0;
  recent.closest(".table-x").hidden = jobs.recent.length === 0;

  const running = runningByWorker();
  for (const badge of document.querySelectorAll("#workers .worker")) {
    const busy = running.get(badge.dataset.worker) ?? 0;
    const el = badge.querySelector(".badge.busy");
    el.dataset.busy = String(busy);
    el.textContent = `${busy} running`;
    el.hidden = busy === 0;
  }
}

function jobIdButton(jobId) {
  return h(
    "button",
    { type: "button", class: "link mono", title: `Show only the events of job ${jobId}`, onclick: () => filterByJob(jobId) },
    shortId(jobId),
  );
}

function tickDurations() {
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("#jobs-inflight td.elapsed")) {
    cell.textContent = duration(now - Number(cell.dataset.start));
  }
}

// ------------------------------------------------------------------------- event stream

/** What an event is about, from the table in the docs (workers-and-jobs.md, "Events"). */
function classify(event) {
  const hasJob = event.thread_id !== "" && event.thread_id !== null && event.thread_id !== undefined;
  switch (event.event) {
    case "graph_execution":
      return event.event_type === "start" ? "runner-start" : event.event_type === "end" ? "runner-stop" : `runner-${event.event_type}`;
    case "node_execution":
      if (!hasJob) return event.event_type === "start" ? "worker-ready" : event.event_type === "error" ? "worker-failed" : `worker-${event.event_type}`;
      switch (event.event_type) {
        case "start":
          return "request";
        case "update":
          return "update";
        case "result":
        case "error":
          return "response";
        case "interrupted":
          return "cancelled";
        default:
          return event.event_type;
      }
    case "streaming":
      return "stream";
    case "tool_execution":
      return event.event_type === "start" ? "tool-call" : event.event_type === "result" ? "tool-result" : `tool-${event.event_type}`;
    default:
      return `${event.event}-${event.event_type}`;
  }
}

const KIND_LABELS = {
  "runner-start": "runner started",
  "runner-stop": "runner stopped",
  "worker-ready": "worker ready",
  "worker-failed": "worker failed",
  request: "job started",
  update: "update",
  stream: "stream",
  response: "response",
  cancelled: "cancelled",
  "tool-call": "tool call",
  "tool-result": "tool result",
};

function details(event, kind) {
  const data = event.data ?? {};
  switch (kind) {
    case "request":
      return `${jobLabel(data.name)} from ${data.requester ?? "?"} ${json(data.payload ?? {})}`;
    case "response":
    case "cancelled":
      return `${data.status ?? kind} ${json(data.response ?? {})}`;
    case "stream":
      return event.content !== "" ? event.content : json(data);
    case "runner-stop":
    case "worker-failed":
      return event.content;
    default:
      return event.content || (Object.keys(data).length ? json(data) : "");
  }
}

const events = {
  buffer: [], // {event, kind}, the last MAX_EVENT_BUFFER
  queue: [], // received, not yet rendered (rendered once per animation frame)
  paused: false,
  held: 0, // events received while paused
  total: 0,
  missed: 0, // events the server dropped for this page (gaps in sequence_id)
  source: null,
  lastSeq: new Map(), // run_id -> the last sequence_id seen
};

const filters = { worker: "", job: "", stream: true };

function matches(item) {
  if (filters.worker && item.event.node_name !== filters.worker) return false;
  if (filters.job && !String(item.event.thread_id).startsWith(filters.job)) return false;
  if (!filters.stream && item.kind === "stream") return false;
  return true;
}

function eventRow(item) {
  const { event, kind } = item;
  const jobId = String(event.thread_id ?? "");
  const text = details(event, kind);
  const isError = event.is_error || kind === "worker-failed" || (kind === "response" && event.data?.status && event.data.status !== "completed");
  return h(
    "div",
    {
      class: `event-row kind-${kind}${isError ? " is-error" : ""}`,
      role: "row",
      dataset: { seq: String(event.sequence_id), kind, worker: event.node_name, jobId, status: event.data?.status },
    },
    h("span", { role: "cell", class: "num time" }, clock(event.timestamp)),
    h("span", { role: "cell", class: "num seq" }, event.sequence_id),
    h("span", { role: "cell" }, h("span", { class: `kind ${kind}` }, KIND_LABELS[kind] ?? kind)),
    h("span", { role: "cell", class: "worker-cell", title: event.node_name }, event.node_name),
    h("span", { role: "cell" }, jobId ? jobIdButton(jobId) : ""),
    h("span", { role: "cell", class: "details", title: clip(text, 2000) }, clip(text, 300)),
  );
}

function onEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    console.warn("not an event:", message.data);
    return;
  }
  const kind = classify(event);
  events.total += 1;
  noteSequence(event);
  events.queue.push({ event, kind });
  if (events.queue.length === 1) requestAnimationFrame(flushEvents);
}

/** Count the events the server dropped for this page: sequence ids go up by one per event
 *  within a run, so a gap is a loss. A response may be among them: ask about the jobs. */
function noteSequence(event) {
  const last = events.lastSeq.get(event.run_id);
  events.lastSeq.set(event.run_id, event.sequence_id);
  if (last === undefined || event.sequence_id <= last + 1) return;
  events.missed += event.sequence_id - last - 1;
  const note = $("#events-missed");
  note.textContent = `${events.missed} event${events.missed === 1 ? "" : "s"} missed (the page fell behind)`;
  note.hidden = false;
  reconcileSoon();
}

let reconcileTimer = null;

function reconcileSoon() {
  if (reconcileTimer) return;
  reconcileTimer = setTimeout(async () => {
    await reconcileJobs();
    reconcileTimer = null;
  }, RECONCILE_MS);
}

/** Ask the server how jobs in flight are (it knows those submitted over HTTP), for responses
 *  that never reached this page: all of them after a gap, else the quiet ones (the events
 *  lost last are followed by no gap until the next event). */
async function reconcileJobs(onlyQuiet = false) {
  const now = Date.now();
  const pending = [...jobs.running.values()]
    .filter((job) => !job.unknown && (!onlyQuiet || now - job.seen > QUIET_MS))
    .slice(0, RECONCILE_MAX);
  await Promise.all(
    pending.map(async (job) => {
      let summary;
      try {
        summary = await api(`/v1/jobs/${encodeURIComponent(job.jobId)}`);
      } catch (error) {
        // Not submitted over HTTP, or forgotten: its events are all there is.
        if (error instanceof ApiError && error.status === 404) job.unknown = true;
        return;
      }
      job.seen = Date.now();
      if (!summary || summary.status === "running" || summary.worker !== job.worker) return;
      const key = jobKey(job.worker, job.jobId);
      if (!jobs.running.has(key)) return;
      jobs.running.delete(key);
      job.status = summary.status;
      job.source = "server"; // its response event was lost
      job.response = summary.response;
      job.end = summary.duration === null || summary.duration === undefined ? Date.now() / 1000 : job.start + summary.duration;
      jobs.recent.unshift(job);
      jobs.recent.length = Math.min(jobs.recent.length, MAX_RECENT_JOBS);
      jobs.dirty = true;
    }),
  );
  if (jobs.dirty) {
    jobs.dirty = false;
    renderJobs();
  }
}

/** Apply what arrived since the last frame: jobs, workers, then the table. */
function flushEvents() {
  const batch = events.queue;
  events.queue = [];
  for (const item of batch) {
    const { event, kind } = item;
    if (kind === "worker-ready" || kind === "worker-failed" || kind === "runner-start") refreshWorkersSoon();
    if (event.node_name && !state.seenWorkers.has(event.node_name) && event.event !== "graph_execution") {
      state.seenWorkers.add(event.node_name);
      renderFilterChoices();
    }
    trackJob(event, kind);
    events.buffer.push(item);
  }
  if (events.buffer.length > MAX_EVENT_BUFFER) events.buffer.splice(0, events.buffer.length - MAX_EVENT_BUFFER);
  if (jobs.dirty) {
    jobs.dirty = false;
    renderJobs();
  }
  if (events.paused) {
    events.held += batch.length;
    $("#events-pending").textContent = `paused: ${events.held} new event${events.held === 1 ? "" : "s"} held`;
  } else {
    appendRows(batch.filter(matches));
  }
  $("#event-rate").textContent = `${events.total} event${events.total === 1 ? "" : "s"}`;
}

function appendRows(items) {
  const body = $("#events-body");
  const rows = items.slice(-MAX_EVENT_ROWS).map(eventRow);
  const scroller = body.closest(".events-scroll");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  body.append(...rows);
  while (body.childElementCount > MAX_EVENT_ROWS) body.firstElementChild.remove();
  $("#events-empty").hidden = body.childElementCount > 0;
  if (atBottom) scroller.scrollTop = scroller.scrollHeight;
}

function rerenderEvents() {
  $("#events-body").replaceChildren();
  appendRows(events.buffer.filter(matches));
  $("#events-empty").hidden = $("#events-body").childElementCount > 0;
}

function renderFilterChoices() {
  const select = $("#event-filter-worker");
  const previous = select.value;
  const names = new Set([...state.workers.map((w) => w.name), ...state.seenWorkers]);
  if (previous) names.add(previous);
  select.replaceChildren(h("option", { value: "" }, "all workers"), ...[...names].sort().map((name) => h("option", { value: name }, name)));
  select.value = previous;
}

function filterByJob(jobId) {
  $("#event-filter-job").value = jobId;
  filters.job = jobId;
  rerenderEvents();
  $("#events-panel").scrollIntoView({ behavior: "smooth", block: "start" });
}

function setPaused(paused) {
  events.paused = paused;
  const button = $("#events-pause");
  button.setAttribute("aria-pressed", String(paused));
  button.textContent = paused ? "Resume" : "Pause";
  if (!paused) {
    events.held = 0;
    $("#events-pending").textContent = "";
    rerenderEvents();
  }
}

function setConnection(stateName, text) {
  const pill = $("#connection");
  pill.dataset.state = stateName;
  pill.textContent = text;
}

function connectEvents() {
  events.source?.close();
  const source = new EventSource("/v1/events", { withCredentials: true });
  events.source = source;
  setConnection("connecting", "connecting…");
  source.onopen = () => {
    setConnection("live", "live");
    hideNotice("auth");
    loadHealth(); // the runner may have been restarted under another name
    refreshWorkers();
  };
  source.onmessage = onEvent;
  source.onerror = async () => {
    if (events.source !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // Refused (401, or the server is gone): find out which, then try again later.
      setConnection("down", "disconnected");
      try {
        await api("/v1/health");
        await api("/v1/workers");
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) setConnection("down", "needs a token");
      }
      setTimeout(() => {
        if (events.source === source) connectEvents();
      }, RECONNECT_MS);
    } else {
      setConnection("connecting", "reconnecting…");
    }
  };
}

async function loadHealth() {
  try {
    const health = await api("/v1/health");
    $("#runner-name").textContent = health.runner ?? "?";
    document.title = `${health.runner} · framework dashboard`;
  } catch (error) {
    $("#runner-name").textContent = "unreachable";
  }
}

// --------------------------------------------------------------------------------- start

function forgetTokenInAddress() {
  // The server has set its cookie: the token should not stay in the address bar, the
  // history or a bookmark.
  const url = new URL(location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

function wire() {
  $("#submit-form").addEventListener("submit", submitJob);
  $("#submit-worker").addEventListener("change", () => {
    form.payloadEdited = false;
    renderJobChoices();
  });
  $("#submit-job").addEventListener("change", () => {
    form.payloadEdited = false;
    onJobChosen();
  });
  $("#submit-payload").addEventListener("input", () => {
    form.payloadEdited = true;
  });
  $("#cancel-button").addEventListener("click", () => {
    const run = form.run;
    if (!run?.jobId) return;
    $("#cancel-button").disabled = true;
    cancelJob(run.jobId, (error) => {
      if (error && form.run === run) showResultError(error);
    });
  });
  $("#event-filter-worker").addEventListener("change", (e) => {
    filters.worker = e.target.value;
    rerenderEvents();
  });
  $("#event-filter-job").addEventListener("input", (e) => {
    filters.job = e.target.value.trim();
    rerenderEvents();
  });
  $("#event-show-stream").addEventListener("change", (e) => {
    filters.stream = e.target.checked;
    rerenderEvents();
  });
  $("#events-body").addEventListener("click", (e) => {
    const cell = e.target.closest(".details");
    if (cell) cell.classList.toggle("expanded");
  });
  $("#events-pause").addEventListener("click", () => setPaused(!events.paused));
  $("#events-clear").addEventListener("click", () => {
    events.buffer = [];
    rerenderEvents();
  });
}

function start() {
  forgetTokenInAddress();
  wire();
  loadHealth();
  refreshWorkers().then(() => {
    document.body.dataset.ready = "true";
  });
  connectEvents();
  setInterval(tickDurations, 250);
  setInterval(refreshWorkers, WORKERS_POLL_MS);
  setInterval(() => reconcileJobs(true), 1_000);
}

start();
