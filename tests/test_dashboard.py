"""The dashboard at ``/``, in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against a real ``framework run --http``.

One browser and one runner per module; the runner hosts the workers of
tests/dashboard_plugin.py and tests/dashboard_extremes_plugin.py (a flood, a worker that
failed to start, a 5,000-character name).
Without the browser the tests are skipped, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from dashboard_extremes_plugin import LONG_NAME
from dashboard_harness import Browser, CuttableProxy, Served, find_browser, new_driver, serve

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

IN_CI = os.environ.get("CI", "").lower() == "true"
TOKEN = "dashboard-test-token"
T = TypeVar("T")


def _missing(what: str) -> None:
    message = f"{what}; install Debian's chromium and chromium-driver, and selenium (test extra)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Browser:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed")
    found = find_browser()
    if found is None:
        _missing("no chromium and chromedriver on the PATH")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def driver(browser: Browser) -> Iterator[WebDriver]:
    chrome = new_driver(browser)
    try:
        yield chrome
    finally:
        chrome.quit()


PLUGINS = ("dashboard_plugin", "dashboard_extremes_plugin")


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve(plugins=PLUGINS) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_script_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test fails on an uncaught error in the page's scripts."""
    yield
    if "driver" not in request.fixturenames:
        return
    chrome: WebDriver = request.getfixturevalue("driver")
    errors = [
        entry["message"]
        for entry in chrome.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") == "javascript"
    ]
    assert not errors, errors


def wait_for(
    chrome: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 10, what: str = ""
) -> T:
    from selenium.webdriver.support.ui import WebDriverWait

    result: T = WebDriverWait(chrome, timeout, poll_frequency=0.05).until(
        condition, message=what or getattr(condition, "__name__", "")
    )
    return result


def css(chrome: WebDriver, selector: str) -> list[WebElement]:
    from selenium.webdriver.common.by import By

    return chrome.find_elements(By.CSS_SELECTOR, selector)


def one(chrome: WebDriver, selector: str) -> WebElement:
    from selenium.webdriver.common.by import By

    return chrome.find_element(By.CSS_SELECTOR, selector)


def text(chrome: WebDriver, selector: str) -> str:
    """An element's text, hidden or not ("" when there is no such element)."""
    found: str = chrome.execute_script(
        "return document.querySelector(arguments[0])?.textContent ?? ''", selector
    )
    return found


SNAPSHOT = """
return [...document.querySelectorAll(arguments[0])].map((e) => ({
  ...e.dataset,
  text: e.textContent,
  value: e.value,
  duration: e.querySelector(".duration")?.textContent,
}));
"""


def snapshot(chrome: WebDriver, selector: str) -> list[dict[str, str]]:
    """The data attributes and text of the elements matching ``selector``, read at once
    (the page re-renders its lists: an element found earlier may be gone)."""
    found: list[dict[str, str]] = chrome.execute_script(SNAPSHOT, selector)
    return found


def open_dashboard(chrome: WebDriver, url: str) -> None:
    """Load the page and wait until it lists the workers and receives live events."""
    chrome.get(url)
    wait_for(chrome, lambda c: css(c, "body[data-ready]"), what="the page's first load")
    wait_for(chrome, lambda c: css(c, "#connection[data-state=live]"), what="the event stream")


@pytest.fixture
def page(driver: WebDriver, served: Served) -> WebDriver:
    open_dashboard(driver, served.url + "/")
    return driver


def choose(chrome: WebDriver, selector: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(one(chrome, selector)).select_by_value(value)


def fill(chrome: WebDriver, selector: str, value: str) -> None:
    field = one(chrome, selector)
    field.clear()
    field.send_keys(value)


def submit_from_form(chrome: WebDriver, worker: str, job: str, payload: Any) -> str:
    """Submit a job with the form; return its job id once the server has announced it."""
    choose(chrome, "#submit-worker", worker)
    choose(chrome, "#submit-job", job)
    fill(chrome, "#submit-payload", json.dumps(payload))
    one(chrome, "#submit-button").click()
    return wait_for(chrome, lambda c: text(c, "#result-job-id"), what="the job id")


def seconds(duration: str) -> float:
    """A duration cell's text ("850 ms", "1.52 s") in seconds."""
    match = re.fullmatch(r"([\d.]+) (ms|s)", duration)
    assert match, duration
    return float(match[1]) / (1000 if match[2] == "ms" else 1)


# ----------------------------------------------------------------------------- workers


def test_the_page_shows_the_workers_with_their_jobs_and_input_schemas(page: WebDriver) -> None:
    wait_for(page, lambda c: css(c, '#workers [data-worker="narrator"]'), what="narrator")
    names = [li["worker"] for li in snapshot(page, "#workers > li:not([data-failed])")]
    assert names == sorted(names) and {"echo", "narrator"} <= set(names)
    (narrator,) = snapshot(page, '#workers [data-worker="narrator"]')
    assert narrator["local"] == "true" and narrator["active"] == "true"
    jobs = [li["job"] for li in snapshot(page, '[data-worker="narrator"] [data-job]')]
    assert sorted(jobs) == ["refuse", "tell", "wait"]
    tell = text(page, '[data-worker="narrator"] [data-job="tell"]')
    assert "streams" in tell
    assert "Tell a story about a topic" in tell
    schema = json.loads(text(page, '[data-worker="narrator"] [data-job="tell"] .schema pre'))
    assert schema["required"] == ["topic"]
    # The default handler of a worker is "(default)".
    assert "(default)" in text(page, '[data-worker="echo"] [data-job=""]')
    # The form offers the same workers and jobs.
    options = [o["value"] for o in snapshot(page, "#submit-worker option")]
    assert options == names


def test_a_worker_that_failed_to_start_is_listed_and_the_views_still_fill(
    page: WebDriver, served: Served
) -> None:
    """A failed worker's entry has no running-jobs badge: the jobs view, and the event view
    rendered after it, must not depend on one."""
    (failed,) = snapshot(page, '#workers [data-worker="unready"]')
    assert failed["failed"] == "true"
    assert "cannot reach the database at db.internal:5432" in failed["text"]
    assert not css(page, '#submit-worker option[value="unready"]')
    job_id = run_job(served, "echo", n=2)
    row = f'#events-body .event-row[data-job-id="{job_id}"]'
    wait_for(page, lambda c: css(c, f'{row}[data-kind="response"]'), what="the job's events")
    assert [r["kind"] for r in snapshot(page, row)] == ["request", "response"]
    wait_for_response_row(page, job_id)


def test_descriptions_are_plain_text_in_paragraphs(page: WebDriver) -> None:
    """A docstring's backquotes and angle brackets stay as written; its hard-wrapped lines
    join into one paragraph, and a blank line starts the next."""
    described = f'#workers [data-worker="{LONG_NAME}"] .description'
    paragraphs = [p["text"] for p in wait_for(page, lambda c: snapshot(c, f"{described} p"))]
    assert paragraphs == [
        'Answer with `{"said": ...}`: the `text` field of the payload, ``verbatim``, and '
        "`*not*` markdown; a <b>tag</b> stays text too.",
        "A second paragraph.",
    ]
    assert not css(page, f"{described} b")
    choose(page, "#submit-worker", LONG_NAME)
    form_paragraphs = [p["text"] for p in snapshot(page, "#submit-job-description p")]
    assert form_paragraphs == paragraphs


PAGE_FITS = """
const panels = [...document.querySelectorAll(".layout > .panel, .layout > .center > .panel")];
const boxes = panels.map((p) => p.getBoundingClientRect());
const overlaps = [];
boxes.forEach((a, i) => boxes.forEach((b, j) => {
  if (i < j && a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1
      && b.top < a.bottom - 1) overlaps.push([panels[i].id, panels[j].id]);
}));
return {
  page: document.documentElement.scrollWidth,
  viewport: document.documentElement.clientWidth,
  overflowing: panels.filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.id),
  overlaps,
  nameHeight: document.querySelector(arguments[0]).getBoundingClientRect().height,
};
"""


def test_a_very_long_worker_name_wraps_or_is_clipped_within_the_page(
    page: WebDriver, served: Served
) -> None:
    worker = f'#workers [data-worker="{LONG_NAME}"]'
    wait_for(page, lambda c: css(c, worker), what="the long-named worker")
    job_id = submit_from_form(page, LONG_NAME, "y" * 300, {"text": "z" * 3000})
    wait_for(page, lambda c: text(c, "#result-status") == "completed", what="the response")
    wait_for_response_row(page, job_id)
    choose(page, "#event-filter-worker", LONG_NAME)
    wait_for(page, lambda c: css(c, f'#events-body .event-row[data-job-id="{job_id}"]'))
    size = page.get_window_size()
    try:
        for width in (1400, 1000, 640):
            page.set_window_size(width, size["height"])
            fits = page.execute_script(PAGE_FITS, f"{worker} .worker-name")
            assert fits["page"] <= fits["viewport"], (width, fits)
            assert fits["overflowing"] == [] and fits["overlaps"] == [], (width, fits)
            assert fits["nameHeight"] < 80, (width, fits)  # clamped to a few lines
    finally:
        page.set_window_size(size["width"], size["height"])
    # The name is whole where the page has room for it: in the element's title.
    assert one(page, f"{worker} .worker-name").get_attribute("title") == LONG_NAME


# ----------------------------------------------------------------------------- the form


def test_a_job_submitted_from_the_form_shows_its_updates_stream_and_response(
    page: WebDriver,
) -> None:
    choose(page, "#submit-worker", "narrator")
    choose(page, "#submit-job", "tell")
    # The payload starts as a skeleton of the job's input schema.
    skeleton = json.loads(str(one(page, "#submit-payload").get_attribute("value")))
    assert skeleton == {"topic": "", "words": 5, "delay": 0.2}
    assert "Tell a story" in text(page, "#submit-job-description")

    job_id = submit_from_form(page, "narrator", "tell", {"topic": "owl", "words": 6, "delay": 0.2})
    # The stream shows as it arrives, while the job still runs.
    wait_for(page, lambda c: "owl-0" in text(c, "#result-stream"), what="the first chunk")
    assert text(page, "#result-status") == "running"
    assert "owl-5" not in text(page, "#result-stream")

    wait_for(page, lambda c: text(c, "#result-status") == "completed", what="the response")
    assert text(page, "#result-stream") == "owl-0 owl-1 owl-2 owl-3 owl-4 owl-5 "
    updates = [json.loads(li["text"]) for li in snapshot(page, "#result-updates li")]
    assert updates == [
        {"status": "thinking"},
        {"done": 0, "of": 6},
        {"done": 2, "of": 6},
        {"done": 4, "of": 6},
    ]
    assert json.loads(text(page, "#result-response")) == {"chunks": 6}
    assert one(page, "#cancel-button").get_attribute("disabled") is not None
    # The outcome is listed under the recent jobs, with its duration.
    (row,) = wait_for(page, lambda c: snapshot(c, f'#jobs-recent tr[data-job-id="{job_id}"]'))
    assert row["status"] == "completed"
    assert 1.0 <= seconds(row["duration"]) < 10


def watch_latency(chrome: WebDriver, until: Callable[[WebDriver], bool], timeout: float) -> float:
    """Poll the page until ``until`` holds; return the longest a WebDriver call took (one
    waits while the page's scripts hold its main thread)."""
    deadline = time.monotonic() + timeout
    longest = 0.0
    while True:
        started = time.monotonic()
        done = until(chrome)
        longest = max(longest, time.monotonic() - started)
        if done:
            return longest
        assert time.monotonic() < deadline, f"not done within {timeout} s"
        time.sleep(0.02)


def server_duration(served: Served, job_id: str) -> float:
    with served.client() as client:
        duration: float = client.get(f"/v1/jobs/{job_id}").json()["duration"]
    return duration


def test_a_long_fast_stream_renders_at_once_and_the_page_stays_responsive(
    page: WebDriver, served: Served
) -> None:
    """20,000 chunks and 5,000 updates in about a second: the page draws them once per
    frame, keeps the last 200 KB of the stream, and answers all the while."""
    started = time.monotonic()
    job_id = submit_from_form(page, "flood", "stream", {"chunks": 20_000, "every": 4})
    stream_end = "chunk-19999 "

    def rendered(c: WebDriver) -> bool:
        return text(c, "#result-status") == "completed" and text(c, "#result-stream").endswith(
            stream_end
        )

    longest = watch_latency(page, rendered, timeout=15)
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed
    assert longest < 1.0, longest
    shown = text(page, "#result-stream")
    total = sum(len(f"chunk-{i} ") for i in range(20_000))
    assert len(shown) <= 200_000 and total - len(shown) > 0
    assert shown == "".join(f"chunk-{i} " for i in range(20_000))[-len(shown) :]
    assert text(page, "#result-stream-elided") == (
        f"the first {total - len(shown):,} characters are not shown"
    )
    assert text(page, "#result-updates-count") == "5000"
    updates = [json.loads(li["text"]) for li in snapshot(page, "#result-updates li")]
    assert len(updates) == 200 and updates[-1] == {"chunk": 19_996}
    # The time shown is the job's, not the time the page took to draw it.
    assert seconds(text(page, "#result-duration")) <= server_duration(served, job_id) + 0.5


def test_a_response_of_megabytes_does_not_freeze_the_page(page: WebDriver, served: Served) -> None:
    started = time.monotonic()
    job_id = submit_from_form(page, "flood", "big", {"megabytes": 5})

    def rendered(c: WebDriver) -> bool:
        return text(c, "#result-status") == "completed" and bool(text(c, "#result-response"))

    longest = watch_latency(page, rendered, timeout=15)
    assert time.monotonic() - started < 5
    assert longest < 1.5, longest
    shown = text(page, "#result-response")
    assert shown.startswith('{\n  "text": "0123456789') and len(shown) <= 200_000
    note = text(page, "#result-response-elided")
    assert re.fullmatch(r"the first [\d,]+ of [\d,]+ characters are shown; download all", note)
    link = one(page, "#result-response-elided a[download]")
    assert str(link.get_attribute("href")).startswith("blob:")
    assert seconds(text(page, "#result-duration")) <= server_duration(served, job_id) + 0.5
    wait_for_response_row(page, job_id)  # the jobs view and the event view take it too
    row = f'#events-body .event-row[data-job-id="{job_id}"][data-kind="response"] .details'
    (details,) = wait_for(page, lambda c: snapshot(c, row))
    # The live view gets events over 64 KiB without their large fields.
    assert details["text"].startswith("completed {}")


SPLIT_LINES = """
const done = arguments[arguments.length - 1];
import("/static/sse.js").then(({ LineSplitter }) => {
  const lines = new LineSplitter();
  const out = [];
  for (const piece of arguments[0]) out.push(...lines.push(piece));
  out.push(lines.end());
  done(out);
}, (error) => done(String(error)));
"""


@pytest.mark.parametrize(
    ("pieces", "lines"),
    [
        (
            ["data: a", "bc\n", "\nid: 1\r", "\ndata: x\r\r"],
            ["data: abc", "", "id: 1", "data: x", "", ""],
        ),
        (["a\r", "b\n\r\n", "c"], ["a", "b", "", "c"]),
        (["x" * 10_000] * 30 + ["\n"], ["x" * 300_000, ""]),
    ],
)
def test_event_stream_lines_are_split_as_they_arrive(
    page: WebDriver, pieces: list[str], lines: list[str]
) -> None:
    """Each piece is scanned once; a line end split between pieces ("\\r" then "\\n") ends
    one line."""
    assert page.execute_async_script(SPLIT_LINES, pieces) == lines


def test_the_cancel_button_cancels_the_submitted_job(page: WebDriver) -> None:
    job_id = submit_from_form(page, "narrator", "wait", {})
    wait_for(page, lambda c: "started" in text(c, "#result-updates"), what="the first update")
    wait_for(page, lambda c: css(c, f'#jobs-inflight tr[data-job-id="{job_id}"]'))
    one(page, "#cancel-button").click()
    wait_for(page, lambda c: text(c, "#result-status") == "cancelled", what="cancelled")
    assert "error" in json.loads(text(page, "#result-response"))
    recent = f'#jobs-recent tr[data-job-id="{job_id}"]'
    wait_for(page, lambda c: css(c, f'{recent}[data-status="cancelled"]'))
    assert not css(page, f'#jobs-inflight tr[data-job-id="{job_id}"]')


def test_a_payload_that_is_not_json_is_not_sent(page: WebDriver, served: Served) -> None:
    choose(page, "#submit-worker", "echo")
    fill(page, "#submit-payload", "{not json")
    one(page, "#submit-button").click()
    wait_for(page, lambda c: text(c, "#result-status") == "not sent")
    assert "The payload is not valid JSON" in text(page, "#result-error")
    fill(page, "#submit-payload", "[1, 2]")
    one(page, "#submit-button").click()
    wait_for(page, lambda c: "must be a JSON object" in text(c, "#result-error"))


def test_the_servers_errors_are_shown_with_their_status_and_field(page: WebDriver) -> None:
    choose(page, "#submit-worker", "echo")
    fill(page, "#submit-payload", "{}")
    fill(page, "#submit-timeout", "-1")
    one(page, "#submit-button").click()
    wait_for(page, lambda c: text(c, "#result-status") == "refused")
    error = text(page, "#result-error")
    assert error.startswith("422 ")
    assert "timeout" in one(page, "#result-error .fields code").text
    fill(page, "#submit-timeout", "")


# ------------------------------------------------------------------------ the event view


def test_the_event_view_and_the_jobs_update_live(page: WebDriver, served: Served) -> None:
    with served.client() as client:
        answer = client.post(
            "/v1/jobs",
            params={"wait": "false"},
            json={"worker": "narrator", "name": "tell", "payload": {"topic": "live", "words": 4}},
        )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    # In flight while it runs, on its worker's card too.
    wait_for(page, lambda c: css(c, f'#jobs-inflight tr[data-job-id="{job_id}"]'), what="in flight")
    assert snapshot(page, '[data-worker="narrator"] .badge.busy')[0]["busy"] == "1"
    row = f'#events-body .event-row[data-job-id="{job_id}"]'
    wait_for(page, lambda c: css(c, f'{row}[data-kind="request"]'), what="the request event")
    wait_for(page, lambda c: css(c, f'{row}[data-kind="stream"]'), what="a stream event")
    wait_for(page, lambda c: css(c, f'{row}[data-kind="response"]'), what="the response event")
    events = snapshot(page, row)
    kinds = [r["kind"] for r in events]
    assert kinds[0] == "request" and kinds[-1] == "response"
    assert kinds.count("stream") == 4 and kinds.count("update") == 3
    details = snapshot(page, f'{row}[data-kind="stream"] .details')
    assert [d["text"] for d in details] == [
        "live-0 ",
        "live-1 ",
        "live-2 ",
        "live-3 ",
    ]
    sequence = [int(r["seq"]) for r in events]
    assert sequence == sorted(sequence)
    (recent,) = wait_for(page, lambda c: snapshot(c, f'#jobs-recent tr[data-job-id="{job_id}"]'))
    assert recent["status"] == "completed"
    assert not css(page, f'#jobs-inflight tr[data-job-id="{job_id}"]')


def run_job(served: Served, worker: str, name: str | None = None, **payload: Any) -> str:
    """Submit a job over HTTP and wait for its response; return its id."""
    with served.client() as client:
        answer = client.post("/v1/jobs", json={"worker": worker, "name": name, "payload": payload})
    assert answer.status_code == 200, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


def wait_for_response_row(chrome: WebDriver, job_id: str) -> None:
    wait_for(chrome, lambda c: css(c, f'#jobs-recent tr[data-job-id="{job_id}"]'))


def test_the_event_view_filters_by_worker_and_by_job(page: WebDriver, served: Served) -> None:
    told = run_job(served, "narrator", "tell", topic="f", words=2, delay=0)
    echoed = run_job(served, "echo", text="hi")
    wait_for_response_row(page, echoed)
    response = f'#events-body .event-row[data-job-id="{echoed}"][data-kind="response"]'
    wait_for(page, lambda c: css(c, response))

    def workers_shown(c: WebDriver) -> set[str]:
        return {r["worker"] for r in snapshot(c, "#events-body .event-row")}

    assert {"narrator", "echo"} <= workers_shown(page)
    choose(page, "#event-filter-worker", "echo")
    assert workers_shown(page) == {"echo"}
    choose(page, "#event-filter-worker", "")
    fill(page, "#event-filter-job", told)
    assert {r["jobId"] for r in snapshot(page, "#events-body .event-row")} == {told}
    one(page, "#event-show-stream").click()  # hide the stream chunks
    kinds = {r["kind"] for r in snapshot(page, "#events-body .event-row")}
    assert "stream" not in kinds and "response" in kinds
    one(page, "#event-show-stream").click()
    assert "stream" in {r["kind"] for r in snapshot(page, "#events-body .event-row")}
    # A click on a job id filters by that job.
    fill(page, "#event-filter-job", "")
    one(page, f'#jobs-recent tr[data-job-id="{echoed}"] button').click()
    assert one(page, "#event-filter-job").get_attribute("value") == echoed
    assert {r["jobId"] for r in snapshot(page, "#events-body .event-row")} == {echoed}


def test_pause_holds_new_rows_until_resumed(page: WebDriver, served: Served) -> None:
    one(page, "#events-pause").click()
    assert one(page, "#events-pause").get_attribute("aria-pressed") == "true"
    job_id = run_job(served, "echo", n=1)
    wait_for_response_row(page, job_id)  # the jobs view goes on while paused
    assert not css(page, f'#events-body .event-row[data-job-id="{job_id}"]')
    assert re.match(r"paused: \d+ new events? held", text(page, "#events-pending"))
    one(page, "#events-pause").click()
    shown = snapshot(page, f'#events-body .event-row[data-job-id="{job_id}"]')
    assert [row["kind"] for row in shown] == ["request", "response"]
    assert text(page, "#events-pending") == ""


def test_the_event_view_keeps_the_last_rows_only(page: WebDriver, served: Served) -> None:
    run_job(served, "narrator", "tell", topic="many", words=700, delay=0)  # > 1,000 events
    wait_for(page, lambda c: int(text(c, "#event-rate").split()[0]) > 500, what="500 events")
    wait_for(page, lambda c: len(css(c, "#events-body .event-row")) == 500, what="500 rows")
    sequence = [int(r["seq"]) for r in snapshot(page, "#events-body .event-row")]
    assert len(sequence) == 500 and sequence == sorted(sequence)


def test_a_job_whose_response_event_was_lost_still_gets_its_outcome(
    driver: WebDriver, served: Served
) -> None:
    """The connection drops while a job ends and more events follow than the server keeps
    for a resuming client: the page sees the gap in the sequence ids when it reconnects, and
    asks the server about the jobs it still has in flight."""
    proxy = CuttableProxy(int(served.url.rsplit(":", 1)[1]))
    try:
        open_dashboard(driver, proxy.url + "/")
        with served.client() as client:
            answer = client.post(
                "/v1/jobs", params={"wait": "false"}, json={"worker": "narrator", "name": "wait"}
            )
            job_id = answer.json()["job_id"]
            wait_for(driver, lambda c: css(c, f'#jobs-inflight tr[data-job-id="{job_id}"]'))
            proxy.cut()
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 202
        # More events than the server keeps for a client that resumes (4,096).
        run_job(served, "flood", "stream", chunks=5000)
        wait_for(driver, lambda c: one(c, "#events-missed").is_displayed(), what="a gap")
        assert re.fullmatch(
            r"\d+ events missed \(\d+ lost while the page was disconnected\)",
            text(driver, "#events-missed"),
        )
        (row,) = wait_for(driver, lambda c: snapshot(c, f'#jobs-recent tr[data-job-id="{job_id}"]'))
        assert row["status"] == "cancelled"
        assert row["source"] == "server"  # not from its response event, which was lost
        assert not css(driver, f'#jobs-inflight tr[data-job-id="{job_id}"]')
    finally:
        proxy.close()


def dropped_total(served: Served) -> float:
    """The runner's ``framework_events_dropped_total``."""
    with served.client() as client:
        metrics = client.get("/metrics").text
    found = re.search(r"^framework_events_dropped_total (\S+)$", metrics, re.MULTILINE)
    assert found, metrics
    return float(found[1])


def test_events_the_runner_dropped_for_a_page_that_fell_behind_are_counted_once(
    driver: WebDriver, served: Served
) -> None:
    """The page's connection stalls while a job sends more events than the runner keeps:
    the runner skips the page ahead with a ``dropped`` event, which the page counts (and
    not again as the gap in the sequence ids that follows it)."""
    proxy = CuttableProxy(int(served.url.rsplit(":", 1)[1]))
    try:
        open_dashboard(driver, proxy.url + "/")
        before = dropped_total(served)
        proxy.stall()
        run_job(served, "flood", "stream", chunks=12_000)
        assert dropped_total(served) > before, "the stalled page lost nothing"
        proxy.resume()
        wait_for(driver, lambda c: one(c, "#events-missed").is_displayed(), what="the notice")
        wait_for(
            driver,
            lambda c: text(c, "#events-body .event-row:last-child .kind") == "response",
            what="the page caught up",
        )
        lost = round(dropped_total(served) - before)
        assert text(driver, "#events-missed") == (
            f"{lost:,} events missed ({lost:,} dropped by the runner: the page fell behind)"
        )
    finally:
        proxy.close()


# ------------------------------------------------------------------------------ a token


@pytest.fixture(scope="module")
def served_with_token() -> Iterator[Served]:
    with serve(token=TOKEN) as running:
        yield running


def browser_fetch(chrome: WebDriver, path: str) -> int:
    """The status of a same-origin fetch made by the page."""
    status: int = chrome.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then((r) => done(r.status), () => done(-1));",
        path,
    )
    return status


def test_with_a_token_the_page_opens_with_token_once_and_keeps_it_in_a_cookie(
    driver: WebDriver, served_with_token: Served
) -> None:
    url = served_with_token.url
    driver.delete_all_cookies()
    driver.get(url + "/")
    assert "needs a token" in driver.find_element("tag name", "body").text

    open_dashboard(driver, f"{url}/?token={TOKEN}")
    assert TOKEN not in driver.current_url
    wait_for(driver, lambda c: css(c, '#workers [data-worker="narrator"]'))
    (cookie,) = driver.get_cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert driver.execute_script("return document.cookie") == ""  # out of the scripts' reach
    assert TOKEN not in driver.page_source
    job_id = submit_from_form(driver, "echo", "", {"x": 1})
    wait_for(driver, lambda c: text(c, "#result-status") == "completed")
    wait_for(driver, lambda c: css(c, f'#events-body .event-row[data-job-id="{job_id}"]'))

    # Without the cookie, the API refuses the page's requests, and the page says what to do.
    driver.delete_all_cookies()
    assert browser_fetch(driver, "/v1/workers") == 401
    assert browser_fetch(driver, "/v1/health") == 200
    one(driver, "#submit-button").click()
    wait_for(driver, lambda c: text(c, "#result-status") == "refused")
    assert text(driver, "#result-error").startswith("401 ")
    assert "/?token=" in text(driver, "#notice")
    assert one(driver, "#notice").is_displayed()


def test_a_wrong_token_in_the_address_is_refused(
    driver: WebDriver, served_with_token: Served
) -> None:
    driver.delete_all_cookies()
    driver.get(f"{served_with_token.url}/?token=wrong")
    assert "the token is wrong" in driver.find_element("tag name", "body").text
    assert driver.get_cookies() == []
