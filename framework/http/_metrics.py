"""``GET /metrics``: the runner's jobs in the Prometheus text format.

Counted from the hooks (``on_job_started``, ``on_job_completed``), which, unlike events,
are never dropped: jobs by worker and status, jobs in flight, job durations, and the
events that publishers and ``/v1/events`` clients lost. The figures are of the jobs this
runner's workers run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from framework.bus.messages import JobResponseMessage
from framework.jobs import Job
from framework.worker import BaseWorker

# The *_created series only add noise to a scrape.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

MAX_TRACKED = 100_000
"""Started jobs whose start time is kept; beyond it the oldest are forgotten."""


class JobMetrics:
    """The Prometheus registry of one runner's HTTP service."""

    def __init__(
        self, events_dropped: Callable[[], int], jobs_in_flight: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "framework_jobs",
            "Jobs answered by this runner's workers, by worker and status.",
            ("worker", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "framework_job_duration_seconds",
            "Time from a job's handler starting to its response, by worker.",
            ("worker",),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._started: dict[tuple[str, str], float] = {}
        """When each running handler began, by job id and worker (a group's members share
        the job id)."""
        self.registry.register(_Gauges(events_dropped, jobs_in_flight, self._started))

    def job_started(self, job: Job, worker: BaseWorker) -> None:
        """``on_job_started``: remember when the handler began."""
        started = self._started
        if len(started) >= MAX_TRACKED:
            started.pop(next(iter(started)))
        started[job.job_id, worker.name] = time.perf_counter()

    def job_completed(self, response: JobResponseMessage, worker: BaseWorker) -> None:
        """``on_job_completed``: count the job and observe its duration."""
        self.jobs.labels(worker.name, str(response.status)).inc()
        began = self._started.pop((response.job_id, worker.name), None)
        if began is not None:
            self.duration.labels(worker.name).observe(time.perf_counter() - began)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _Gauges(Collector):
    """Figures read when scraped rather than kept up to date on the job path."""

    def __init__(
        self,
        events_dropped: Callable[[], int],
        jobs_in_flight: Callable[[], int],
        started: dict[tuple[str, str], float],
    ) -> None:
        self.events_dropped = events_dropped
        self.jobs_in_flight = jobs_in_flight
        self.started = started

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        running = GaugeMetricFamily(
            "framework_jobs_in_flight",
            "Jobs whose handler runs on this runner now.",
            value=len(self.started),
        )
        submitted = GaugeMetricFamily(
            "framework_http_jobs_running",
            "Jobs submitted over HTTP that have no response yet.",
            value=self.jobs_in_flight(),
        )
        dropped = CounterMetricFamily(
            "framework_events_dropped",
            "Runtime events lost by slow publishers and /v1/events clients.",
            value=self.events_dropped(),
        )
        return [running, submitted, dropped]
