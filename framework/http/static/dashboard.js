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
const MAX_STREAM_CHARS = 200_000; // characters of the submitted job's stream shown (the last)
const MAX_RESPONSE_CHARS = 200_000; // characters of the submitted job's response shown (the first)
const STREAM_BLOCK_CHARS = 4_096; // the stream is drawn in blocks of about this many characters
const PREVIEW_CHARS = 2_000; // characters of JSON made for an event's details or a tooltip
const WORKERS_POLL_MS = 15_000; // remote workers can leave without an event
const RECONCILE_MS = 500; // after events were lost: ask the server how the jobs in flight are
const RECONCILE_MAX = 50; // jobs asked about at a time
const QUIET_MS = 2_000; // a job in flight this long without an event: ask about it too
const RECONNECT_MS = 3_000;
const FLOOD_EVENTS = 100; // events in one frame that make a flood: the view is then drawn...
const FLOOD_DRAW_MS = 500; // ...at most this often (the jobs and the counts still are each frame)

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

/** Compact JSON of a value, cut at `max` characters (ending with "…"), made without
 *  serialising all of a large value: a response of megabytes costs a preview's length. */
function preview(value, max = PREVIEW_CHARS) {
  const out = [];
  let size = 0;
  const put = (text) => {
    out.push(text);
    size += text.length;
    return size <= max;
  };
  const walk = (v) => {
    if (v === null || typeof v !== "object") {
      const text = typeof v === "string" && v.length > max ? `${JSON.stringify(v.slice(0, max))}` : JSON.stringify(v);
      return put(text === undefined ? "null" : text);
    }
    if (Array.isArray(v)) {
      if (!put("[")) return false;
      for (let i = 0; i < v.length; i += 1) {
        if ((i && !put(",")) || !walk(v[i])) return false;
      }
      return put("]");
    }
    if (!put("{")) return false;
    let first = true;
    for (const key in v) {
      if (!Object.hasOwn(v, key)) continue;
      if ((!first && !put(",")) || !put(`${JSON.stringify(key)}:`) || !walk(v[key])) return false;
      first = false;
    }
    return put("}");
  };
  walk(value);
  return clip(out.join(""), max);
}

function count(n) {
  return n.toLocaleString("en-US");
}

/** A description (a docstring) as plain-text paragraphs: a blank line starts a paragraph,
 *  a hard-wrapped line joins the one before, a list item keeps its own line. */
function describe(text, className = "hint") {
  const box = h("div", { class: "description" });
  for (const paragraph of String(text ?? "").trim().split(/\n\s*\n/)) {
    if (!paragraph.trim()) continue;
    const lines = paragraph.split("\n").map((line) => line.trim());
    const joined = lines.reduce((acc, line) => (!acc ? line : /^([-*•]|\d+[.)])\s/.test(line) ? `${acc}\n${line}` : `${acc} ${line}`), "");
    box.append(h("p", { class: className }, joined));
  }
  return box;
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
          h("span", { class: "worker-name", title: worker.name }, worker.name),
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
        h("div", { class: "worker-head" }, h("span", { class: "worker-name", title: failed.name }, failed.name), h("span", { class: "badge failed" }, "failed to start")),
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
      h("code", { class: "job-name", title: name }, name),
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
    described.description ? describe(described.description) : null,
    ...schemas,
  );
}

// ------------------------------------------------------------------------- submit form

const form = {
  payloadEdited: false,
  run: null, // the job watched: see newRun
  download: null, // the object URL of the last response's download link
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
  $("#submit-job-description").replaceChildren(...(described?.description ? [describe(described.description)] : []));
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
  if (form.download) URL.revokeObjectURL(form.download);
  form.download = null;
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
  $("#result-stream-elided").hidden = true;
  $("#result-stream-block").hidden = true;
  $("#result-response").textContent = "";
  $("#result-response-elided").hidden = true;
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
  const run = newRun();
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
      drawRun(run);
      $("#cancel-button").disabled = true;
      $("#result-duration").textContent = duration(((run.ended ?? performance.now()) - run.started) / 1000);
    }
  }
}

/** The job the form watches. What arrives is gathered here and drawn once per animation
 *  frame: a stream of thousands of chunks a second costs a few DOM changes a frame. */
function newRun() {
  return {
    controller: new AbortController(),
    jobId: null,
    started: performance.now(),
    ended: null, // when its response arrived (the time shown is the job's, not the drawing's)
    frame: 0, // a requested animation frame, 0 when none
    stream: [], // chunks not drawn yet
    streamPending: 0, // their characters
    streamTotal: 0, // characters received in all
    streamShown: 0, // characters in the stream's blocks
    updates: [], // updates not drawn yet (the last MAX_UPDATES_SHOWN at most)
    updatesTotal: 0,
  };
}

function drawSoon(run) {
  if (!run.frame) run.frame = requestAnimationFrame(() => drawRun(run));
}

/** Draw what arrived since the last frame: new updates, and the stream's new text. */
function drawRun(run) {
  if (run.frame) cancelAnimationFrame(run.frame);
  run.frame = 0;
  if (form.run !== run) return;
  if (run.updates.length) {
    const list = $("#result-updates");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    list.append(...run.updates.map((update) => h("li", { dataset: { id: update.id } }, update.text)));
    run.updates = [];
    while (list.childElementCount > MAX_UPDATES_SHOWN) list.firstElementChild.remove();
    $("#result-updates-count").textContent = String(run.updatesTotal);
    $("#result-updates-block").hidden = false;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }
  if (run.stream.length) {
    const pre = $("#result-stream");
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    appendStream(run, pre, run.stream.join(""));
    run.stream = [];
    run.streamPending = 0;
    const elided = run.streamTotal - run.streamShown;
    if (elided > 0) {
      $("#result-stream-elided").textContent = `the first ${count(elided)} characters are not shown`;
      $("#result-stream-elided").hidden = false;
    }
    $("#result-stream-block").hidden = false;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}

/** Add text to the stream's view, which holds it in blocks of about STREAM_BLOCK_CHARS:
 *  laying out a block costs its own length, where one text of MAX_STREAM_CHARS would be
 *  laid out again whole at each frame. A block ends after a line end when there is one
 *  near its end, else after a space, so that blocks rarely end a line early. Only the
 *  last MAX_STREAM_CHARS are kept. */
function appendStream(run, pre, text) {
  let rest = text;
  while (rest) {
    let block = pre.lastElementChild;
    if (!block || block.dataset.full) {
      block = pre.appendChild(h("span", { class: "block" }));
      block.append(document.createTextNode(""));
    }
    const node = block.firstChild;
    const room = STREAM_BLOCK_CHARS - node.length;
    const take = rest.length <= room ? rest.length : breakAt(rest, room);
    if (take < rest.length) block.dataset.full = "true";
    node.appendData(rest.slice(0, take));
    run.streamShown += take;
    rest = rest.slice(take);
  }
  while (run.streamShown > MAX_STREAM_CHARS) {
    const first = pre.firstElementChild.firstChild;
    const over = run.streamShown - MAX_STREAM_CHARS;
    if (first.length <= over) {
      run.streamShown -= first.length;
      pre.firstElementChild.remove();
    } else {
      const at = isLowSurrogate(first.substringData(over, 1)) ? over + 1 : over;
      first.deleteData(0, at);
      run.streamShown -= at;
    }
  }
}

/** How much of `text` to put in a block with `room` characters left: up to a line end in
 *  its last quarter, else up to a space, else `room` (never between a surrogate pair). */
function breakAt(text, room) {
  if (room <= 0) return 0;
  const from = Math.floor((room * 3) / 4);
  const newline = text.lastIndexOf("\n", room - 1);
  if (newline >= from) return newline + 1;
  const space = text.lastIndexOf(" ", room - 1);
  if (space >= from) return space + 1;
  return isLowSurrogate(text.slice(room, room + 1)) ? room + 1 : room;
}

/** Whether a text starts with the second half of a surrogate pair (not a place to cut). */
function isLowSurrogate(text) {
  const code = text.charCodeAt(0);
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Where to cut a text near `at`: not between the halves of a surrogate pair. */
function cutAt(text, at) {
  return isLowSurrogate(text.slice(at, at + 1)) ? at + 1 : at;
}

/** Show the response: the first MAX_RESPONSE_CHARS of it, and a link to all of it. */
function showResponse(response) {
  const full = json(response, 2) ?? "null";
  $("#result-response").textContent = full.length > MAX_RESPONSE_CHARS ? full.slice(0, cutAt(full, MAX_RESPONSE_CHARS)) : full;
  const note = $("#result-response-elided");
  if (full.length > MAX_RESPONSE_CHARS) {
    form.download = URL.createObjectURL(new Blob([full], { type: "application/json" }));
    note.replaceChildren(
      `the first ${count($("#result-response").textContent.length)} of ${count(full.length)} characters are shown; `,
      h("a", { href: form.download, download: `response-${form.run?.jobId ?? "job"}.json` }, "download all"),
    );
    note.hidden = false;
  }
  $("#result-response-block").hidden = false;
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
    case "update":
      run.updates.push({ id: message.id ?? "", text: json(data) });
      if (run.updates.length > 2 * MAX_UPDATES_SHOWN) run.updates.splice(0, run.updates.length - MAX_UPDATES_SHOWN);
      run.updatesTotal += 1;
      drawSoon(run);
      return false;
    case "stream_start":
      $("#result-stream-block").hidden = false;
      $("#result-stream-state").textContent = "streaming…";
      return false;
    case "stream_data": {
      const chunk = typeof data === "string" ? data : `${json(data)}\n`;
      run.stream.push(chunk);
      run.streamPending += chunk.length;
      run.streamTotal += chunk.length;
      if (run.streamPending > 2 * MAX_STREAM_CHARS) {
        // Not drawn for a while (a hidden tab has no animation frames): keep the end only.
        const kept = run.stream.join("");
        run.stream = [kept.slice(cutAt(kept, kept.length - MAX_STREAM_CHARS))];
        run.streamPending = run.stream[0].length;
      }
      drawSoon(run);
      return false;
    }
    case "stream_end":
      $("#result-stream-state").textContent = "ended";
      return false;
    case "response":
      run.ended = performance.now();
      drawRun(run);
      setResultStatus(data.status);
      showResponse(data.response);
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
    job.summary = preview(event.data?.response ?? null, 500);
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
        h("td", { class: "clamp", title: job.worker }, job.worker),
        h("td", { class: "clamp", title: jobLabel(job.name) }, h("code", {}, jobLabel(job.name))),
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
        { dataset: { jobId: job.jobId, worker: job.worker, status: job.status, source: job.source }, title: job.summary },
        h("td", {}, h("span", { class: "status", dataset: { status: job.status } }, job.status)),
        h("td", { class: "clamp", title: job.worker }, job.worker),
        h("td", { class: "clamp", title: jobLabel(job.name) }, h("code", {}, jobLabel(job.name))),
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
  for (const el of document.querySelectorAll("#workers .worker .badge.busy")) {
    const busy = running.get(el.closest(".worker").dataset.worker) ?? 0;
    el.dataset.busy = String(busy);
    el.textContent = `${busy} running`;
    el.hidden = busy === 0;
  }
}

/** A job id that shows only that job's events when clicked (one listener for the page:
 *  see wire). */
function jobIdButton(jobId) {
  return h("button", { type: "button", class: "link mono", title: `Show only the events of job ${jobId}`, dataset: { filterJob: jobId } }, shortId(jobId));
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
      return `${jobLabel(data.name)} from ${data.requester ?? "?"} ${preview(data.payload ?? {})}`;
    case "response":
    case "cancelled":
      return `${data.status ?? kind} ${preview(data.response ?? {})}`;
    case "stream":
      return event.content !== "" ? clip(event.content, PREVIEW_CHARS) : preview(data);
    case "runner-stop":
    case "worker-failed":
      return event.content;
    default:
      return event.content ? clip(event.content, PREVIEW_CHARS) : Object.keys(data).length ? preview(data) : "";
  }
}

const events = {
  buffer: [], // {event, kind}, the last MAX_EVENT_BUFFER
  queue: [], // received, not yet rendered (rendered once per animation frame)
  frame: 0, // the animation frame requested to render them, 0 when none
  rowsDue: 0, // performance.now() before which the table is not drawn again (a flood)
  drawTimer: 0, // the timer that draws the held-back rows once rowsDue has passed
  unshown: [], // events held back from the table until rowsDue
  follow: true, // the table is scrolled to its end: keep it there as rows arrive
  paused: false,
  held: 0, // events received while paused
  total: 0,
  dropped: 0, // events the runner dropped for this page (its "dropped" events)
  gaps: 0, // other events missing from the sequence (lost while disconnected)
  dropCredit: 0, // dropped events whose gap in the sequence is still to come
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

/** An empty event row, cloned for each event (cheaper than building one: a flood of
 *  events draws hundreds of rows at a time). */
const EVENT_ROW = h(
  "div",
  { class: "event-row", role: "row" },
  h("span", { role: "cell", class: "num time" }),
  h("span", { role: "cell", class: "num seq" }),
  h("span", { role: "cell" }, h("span", { class: "kind" })),
  h("span", { role: "cell", class: "worker-cell" }),
  h("span", { role: "cell" }, h("button", { type: "button", class: "link mono" })),
  h("span", { role: "cell", class: "details" }),
);

function eventRow(item) {
  const { event, kind } = item;
  const jobId = String(event.thread_id ?? "");
  const text = details(event, kind);
  const isError = event.is_error || kind === "worker-failed" || (kind === "response" && event.data?.status && event.data.status !== "completed");
  const row = EVENT_ROW.cloneNode(true);
  row.className = `event-row kind-${kind}${isError ? " is-error" : ""}`;
  Object.assign(row.dataset, { seq: String(event.sequence_id), kind, worker: event.node_name, jobId });
  if (event.data?.status) row.dataset.status = event.data.status;
  const [time, seq, what, worker, job, detail] = row.children;
  time.textContent = clock(event.timestamp);
  seq.textContent = String(event.sequence_id);
  what.firstChild.className = `kind ${kind}`;
  what.firstChild.textContent = KIND_LABELS[kind] ?? kind;
  worker.textContent = event.node_name;
  worker.title = event.node_name;
  if (jobId) {
    const button = job.firstChild;
    button.dataset.filterJob = jobId;
    button.title = `Show only the events of job ${jobId}`;
    button.textContent = shortId(jobId);
  } else {
    job.firstChild.remove();
  }
  detail.textContent = clip(text, 300);
  detail.title = clip(text, 2000);
  return row;
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
  if (!events.frame) events.frame = requestAnimationFrame(flushEvents);
}

/** Count the events this page missed. The runner says how many it dropped when the page
 *  fell behind (a "dropped" event); sequence ids go up by one per event within a run, so a
 *  gap is a loss too: one the runner announced (counted once, as dropped), or one from a
 *  reconnection beyond what the runner keeps. A response may be among them: ask about the
 *  jobs in flight. */
function noteSequence(event) {
  const last = events.lastSeq.get(event.run_id);
  events.lastSeq.set(event.run_id, event.sequence_id);
  if (last === undefined || event.sequence_id <= last + 1) return;
  const gap = event.sequence_id - last - 1;
  const announced = Math.min(gap, events.dropCredit);
  events.dropCredit -= announced;
  if (gap > announced) {
    events.gaps += gap - announced;
    showMissed();
  }
  reconcileSoon();
}

function onDropped(message) {
  let lost;
  try {
    lost = JSON.parse(message.data).dropped;
  } catch {
    lost = null;
  }
  if (!Number.isSafeInteger(lost) || lost <= 0) {
    console.warn("not a dropped event:", message.data);
    return;
  }
  events.dropped += lost;
  events.dropCredit += lost;
  showMissed();
  reconcileSoon();
}

function showMissed() {
  const missed = events.dropped + events.gaps;
  const why = [];
  if (events.dropped) why.push(`${count(events.dropped)} dropped by the runner: the page fell behind`);
  if (events.gaps) why.push(`${count(events.gaps)} lost while the page was disconnected`);
  const note = $("#events-missed");
  note.textContent = `${count(missed)} event${missed === 1 ? "" : "s"} missed (${why.join("; ")})`;
  note.dataset.dropped = String(events.dropped);
  note.dataset.gaps = String(events.gaps);
  note.hidden = false;
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
      job.summary = preview(summary.response ?? null, 500);
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

/** Apply what arrived since the last frame: jobs, workers, then the table. In a flood (a
 *  fast stream sends thousands of events a second) the table is drawn a few times a
 *  second, from the last MAX_EVENT_ROWS events, so that the page keeps answering. */
function flushEvents() {
  events.frame = 0;
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
    for (const item of batch) if (matches(item)) events.unshown.push(item);
    if (events.unshown.length > MAX_EVENT_ROWS) events.unshown.splice(0, events.unshown.length - MAX_EVENT_ROWS);
    const now = performance.now();
    if (now >= events.rowsDue) {
      const rows = events.unshown;
      events.unshown = [];
      appendRows(rows);
      events.rowsDue = rows.length > FLOOD_EVENTS ? now + FLOOD_DRAW_MS : 0;
    } else if (events.unshown.length && !events.drawTimer) {
      events.drawTimer = setTimeout(() => {
        events.drawTimer = 0;
        if (!events.frame) events.frame = requestAnimationFrame(flushEvents);
      }, events.rowsDue - now);
    }
  }
  $("#event-rate").textContent = `${events.total} event${events.total === 1 ? "" : "s"}`;
}

function appendRows(items) {
  const body = $("#events-body");
  const rows = items.slice(-MAX_EVENT_ROWS).map(eventRow);
  const scroller = body.closest(".events-scroll");
  const excess = body.childElementCount + rows.length - MAX_EVENT_ROWS;
  if (rows.length >= MAX_EVENT_ROWS) {
    body.replaceChildren(...rows);
  } else {
    if (excess > 0) {
      const old = document.createRange(); // the oldest rows, removed at once
      old.setStartBefore(body.firstElementChild);
      old.setEndAfter(body.children[excess - 1]);
      old.deleteContents();
    }
    body.append(...rows);
  }
  $("#events-empty").hidden = body.childElementCount > 0;
  if (events.follow) scroller.scrollTop = scroller.scrollHeight;
}

function rerenderEvents() {
  events.unshown = [];
  events.rowsDue = 0;
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
    events.dropCredit = 0; // a new connection: the runner announces its own drops again
    setConnection("live", "live");
    hideNotice("auth");
    loadHealth(); // the runner may have been restarted under another name
    refreshWorkers();
  };
  source.onmessage = onEvent;
  source.addEventListener("dropped", onDropped);
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
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-filter-job]");
    if (button) filterByJob(button.dataset.filterJob);
  });
  const scroller = $(".events-scroll");
  scroller.addEventListener("scroll", () => {
    events.follow = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  }, { passive: true });
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
