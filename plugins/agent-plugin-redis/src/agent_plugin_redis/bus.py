"""``RedisBus``: runners in many processes, on many machines, as one system through Redis.

How a message travels:

- To a worker or runner in this process: handed to its inbox, as on the local bus.
- A job request to a remote worker hosted by one runner: published on that runner's
  channel (``<ns>:runner:<name>``). Hosted by several runners (replicas): added to the
  worker's stream (``<ns>:worker:<name>``), which every replica reads through one
  consumer group, so exactly one of them gets it.
- Replies (updates, stream items, the response) go back on the channel of the runner the
  request came from; cancels and update requests go to the runner that has the job.
- Heartbeats (which are also the announcements of each runner's workers) and a runner's
  ``bye`` go on the broadcast channel (``<ns>:all``): the only messages every runner reads.
  A worker's description goes there once, just before the heartbeat that first names it,
  and to the channel of each runner that joins later (it says ``hello``); so a runner
  usually knows what a remote worker answers by the time the worker is registered there.

Liveness and failures end jobs, never leave them hanging: a runner silent for ``misses``
heartbeats is lost (its workers leave the registry; every job it had ends ERROR with
"runner <name> lost"); a replica that dies holding a stream entry is found in the group's
pending list; a lost connection to Redis ends every job in flight ERROR, then the bus
reconnects with backoff and announces itself again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from agent_plugin_redis._durable import (
    IDEMPOTENCY_HEADER,
    Claimed,
    DurableScripts,
    durable_fields,
    idempotency_key,
    max_attempts_of,
    read_stored,
    stored_response,
)
from agent_plugin_redis._logsafe import logger
from agent_plugin_redis._publish_line import PublishLine
from agent_plugin_redis._session import Reconnecting
from agent_plugin_redis._settings import (
    CONNECTION_ERRORS,
    SENDS_AT_ONCE,
    RedisBusSettings,
    connect,
    pubsub_hard_limit,
)
from agent_plugin_redis._store import DurableJobs
from agent_plugin_redis._streams import GROUP, WorkerStreams, consumer_name
from agent_plugin_redis._subscriber import Subscriber
from framework.bus.base import Inbox, UndeliverableError
from framework.bus.local import LocalBus
from framework.bus.messages import (
    BusMessage,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
    JobUpdateRequestMessage,
    unknown_outcome,
)
from framework.bus.network.durable import DurableJob
from framework.bus.network.peers import MAX_PEERS, MAX_REMOTE_WORKERS, Peers
from framework.bus.network.routes import Route, Routes
from framework.bus.network.signing import (
    MAX_AGE,
    MAX_AHEAD,
    Rejection,
    Secret,
    Signer,
    SigningKeys,
    Verified,
    Verifier,
)
from framework.bus.network.wire import (
    NAME_LIMIT,
    Bye,
    Described,
    Heartbeat,
    Routed,
    RoutedEncoder,
    WireError,
    claimed_sender,
    decode_envelope,
    encode_description,
    encode_envelope,
    request_head,
    response_head,
)
from framework.config import ConfigError
from framework.types import JobDescription, JobStatus, WorkerReadyData
from framework.urls import redact_url

if TYPE_CHECKING:
    from framework.registry import WorkerRegistry
    from framework.runner import WorkerRunner


_REPLIES = (
    JobResponseMessage,
    JobUpdateMessage,
    JobStreamStartMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
)
_JOB_CONTROLS = (JobCancelMessage, JobUpdateRequestMessage)
_EARLY_CANCELS = 1000
"""Cancels kept for stream jobs not read yet (a cancel may overtake its request there)."""
_STREAM_BLOCK_MS = 1000
HEARTBEAT_LIMIT = 4 * 1024 * 1024
"""Bytes a broadcast message may have whatever ``max_message_size`` says: a heartbeat lists
all the workers of its runner, and one that is dropped makes the runner look lost."""
_ON_LINE_AT_MOST = 64 * 1024
"""A request to a worker's stream, or a durable job's response, of more bytes than this
goes on a pooled connection instead of the line: the small messages queued on the line
behind it are not held up while it is written."""
_READ_COUNT = 64
_COMPLAINTS_EVERY = 10.0
_GROUP_RETRY = 1.0
_SWEEP_EVERY = 5.0
"""Seconds between two looks for the consumers of gone sessions in the streams read here."""
_GONE_KEPT = 10_000
"""Consumer names of gone sessions remembered until their streams are cleaned up."""
_SIGNED_OVERHEAD = 59 + 1024
"""The most bytes signing adds to a message (its header, with the longest sender name)."""
_ENTRIES_SEEN = 10_000
"""Signed stream entries remembered, so that a copy of one added again is not run twice."""

Action = Callable[[], Awaitable[None]]
T = TypeVar("T")


def is_loopback(url: str) -> bool:
    """Whether the Redis of ``url`` is on this machine (localhost, 127.0.0.0/8, ::1), where
    only local processes can reach it."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedisUnavailableError(ConnectionError):
    """Redis could not be reached when the bus started; the text says where and what to do."""


@dataclass(slots=True)
class _Served:
    """A job request from another runner that a local worker is running."""

    origin: str
    stream: str | None = None
    entry: bytes | None = None
    consumer: str = ""
    """For a durable job: the consumer that read its entry, which must still hold it when
    the response is written (see ``_durable``)."""
    idempotency: str = ""
    """The key its response is kept under, for a request with an ``idempotency-key``."""


class RedisBus:
    """The ``redis://`` (and ``rediss://``) bus. Runners sharing a Redis database and a
    namespace form one system: see the module docstring for what travels where.

    Args:
        url: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS), with optional
            ``heartbeat``, ``misses``, ``max_message_size`` and ``namespace`` parameters.
        secret: the shared secret, or a list of them (the first signs, any verifies), that
            signs every message between runners; None or an empty list: unsigned.
            ``framework.config.bus_secrets(config)`` reads it as ``framework run`` does.

    Raises:
        SettingsError: a bad URL.
        ValueError: a secret that is empty or shorter than 16 bytes.
    """

    def __init__(self, url: str, *, secret: Secret | Sequence[Secret] | None = None) -> None:
        self.settings = RedisBusSettings.from_url(url)
        given = [] if secret is None else secret
        self._keys = SigningKeys(given) if isinstance(given, str | bytes) or given else None
        self._signer: Signer | None = None
        self._verifier: Verifier | None = None
        self._mismatched = 0
        self._stale_entries = 0
        self._entries_seen: OrderedDict[bytes, bytes] = OrderedDict()
        """MAC of a signed stream entry -> the entry that carried it (see ``_entry_body``)."""
        self._local = LocalBus()
        self._ns = self.settings.namespace
        self._broadcast = f"{self._ns}:all"
        self._channels: dict[str, str] = {}
        self._instance = uuid.uuid4().hex
        self._name = ""
        self._runner: WorkerRunner | None = None
        self._encoder = RoutedEncoder("")
        self._client: aioredis.Redis | None = None
        self._peers = Peers()
        self._streams = WorkerStreams(self._ns)
        self._scripts: DurableScripts | None = None
        self._store = DurableJobs(self._ns, self._keys)
        self._deliveries: dict[bytes, tuple[int, int]] = {}
        """Stream entry -> (max_attempts, attempt) of a durable request being read."""
        self._opened_at = time.monotonic()
        """When the current session with Redis opened."""
        self._announced: set[str] = set()
        """Local workers announced to the other runners (their streams exist)."""
        self._departing: set[str] = set()
        """Workers gone from here whose last replies may still wait on the publish line."""
        self._reading: set[str] = set()
        """Announced workers whose streams this runner reads (not those ending)."""
        self._leaving: set[str] = set()
        """Local workers that started ending: their streams are not read any more."""
        self._no_group: set[str] = set()
        """Announced workers whose stream group Redis refused to make (out of memory, a key
        of another type...): tried again every ``_GROUP_RETRY`` seconds."""
        self._routes = Routes(self._local)
        """(job id, target) -> where a request from here went."""
        self._served: dict[tuple[str, str, str], _Served] = {}
        """(job id, requester, worker) -> where a request served here came from."""
        self._early_cancels: OrderedDict[tuple[str, str, str], JobCancelMessage] = OrderedDict()
        self._stopping = False
        self._tg: TaskGroup | None = None
        self._serve_done = anyio.Event()
        self._link: Reconnecting | None = None
        self._line: PublishLine | None = None
        """The session's pipelined connection for the commands on a job's path (see
        ``PublishLine``)."""
        self._gate = asyncio.Semaphore(SENDS_AT_ONCE)
        """Bounds the connections senders hold, instead of redis-py's own bounded pool,
        which costs a condition and a timeout per command."""
        self._echo_at = 0.0
        """When this runner last read its own heartbeat back (see ``_heartbeat``)."""
        self._announce = anyio.Event()
        self._streams_changed = anyio.Event()
        self._hello = True
        self._settled = anyio.Event()
        """Set one heartbeat interval after the first session opened (``wait_settled``)."""
        self._described: set[str] = set()
        """Local workers whose descriptions this session has sent to every runner."""
        self._describe_to: set[str] = set()
        """Runners that joined (said hello) and are owed every description."""
        self._dropped = 0
        self._complained: dict[str, float] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        """Consumer names of sessions seen to end (this runner's earlier ones, and other
        runners' lost, restarted or ended ones): ``_sweep_streams`` removes them."""
        send, receive = anyio.create_memory_object_stream[Action](math.inf)
        self._actions: MemoryObjectSendStream[Action] = send
        self._action_queue: MemoryObjectReceiveStream[Action] = receive

    # ----------------------------------------------------------------- the Bus protocol

    def attach(self, runner: WorkerRunner) -> None:
        """Called by the runner before ``start``: its name is this bus's address in Redis."""
        self._runner = runner
        self._name = runner.name
        if self._keys is not None:
            self._signer = Signer(runner.name, self._keys)
            self._verifier = Verifier(self._keys, name=runner.name)
        self._encoder = RoutedEncoder(runner.name, self._signer)
        runner.registry.add_ready_listener(self._on_registered)
        runner.registry.add_gone_listener(self._on_unregistered)
        runner.registry.add_leaving_listener(self._on_leaving)

    @property
    def _registry(self) -> WorkerRegistry | None:
        return self._runner.registry if self._runner is not None else None

    @property
    def dropped_messages(self) -> int:
        """Messages read from Redis and dropped (too big, malformed, of an unknown type)."""
        return self._dropped

    @property
    def signed(self) -> bool:
        """Whether this bus signs its messages and accepts only signed ones (a secret)."""
        return self._keys is not None

    @property
    def rejected_messages(self) -> dict[str, int]:
        """Messages dropped by signature checks, by reason: those of ``Rejection``, and
        ``"sender mismatch"`` (signed by one runner, naming another). Empty without a
        secret."""
        if self._verifier is None:
            return {}
        counts = {str(reason): count for reason, count in self._verifier.rejections.items()}
        counts[Rejection.STALE] += self._stale_entries
        counts["sender mismatch"] = self._mismatched
        return counts

    def _seal(self, data: bytes, destination: str) -> bytes:
        """``data`` signed for ``destination`` (a channel or a stream), with a secret; as
        it is, without."""
        signer = self._signer
        return data if signer is None else signer.sign(data, destination)

    async def start(self) -> None:
        """Connect, subscribe and announce; raises ``RedisUnavailableError`` when Redis
        cannot be reached (the URL in the message has its password hidden)."""
        if self._runner is None:
            raise RuntimeError(
                "RedisBus.start() before attach(): give the bus to a WorkerRunner "
                "(WorkerRunner(bus=RedisBus(url))), which attaches it"
            )
        if len(self._name) > NAME_LIMIT:
            raise ConfigError(
                "the run configuration",
                "name",
                f"{self._name[:40]!r}... is longer than {NAME_LIMIT} characters, the longest "
                "runner name the Redis bus carries; give the runner a shorter name",
            )
        self._client = connect(self.settings.url)
        try:
            with anyio.fail_after(10):
                await self._client.ping()
        except (*CONNECTION_ERRORS, TimeoutError) as exc:
            await self._client.aclose()
            raise RedisUnavailableError(
                f"cannot reach Redis at {redact_url(self.settings.url)}: {exc}; is redis-server "
                "running there, and are the host, port and password right?"
            ) from None
        await self._check_output_limit(self._client)
        if self._keys is None and not is_loopback(self.settings.url):
            logger.warning(
                "%s: the bus to %s has no bus_secret: its messages are not signed, so any "
                "client of that Redis can act as a runner (send, answer, cancel or take "
                "jobs); set bus_secret (or FRAMEWORK_BUS_SECRET) on every runner",
                self._name,
                redact_url(self.settings.url),
            )
        self._scripts = DurableScripts(self._client, self._ns)

    async def _check_output_limit(self, client: aioredis.Redis) -> None:
        """A ``ConfigError`` when this Redis disconnects subscribers at a size this bus may
        be sent (a message over a quarter of the pub/sub ``client-output-buffer-limit``).
        A Redis that refuses ``CONFIG GET`` (an ACL user, a managed service) is not
        checked: its default is 32 MB, four times the biggest ``max_message_size``."""
        try:
            reply = await client.config_get("client-output-buffer-limit")
        except CONNECTION_ERRORS:
            return
        hard = pubsub_hard_limit(reply)
        size = self.settings.max_message_size
        if hard is not None and size > hard // 4:
            await client.aclose()
            raise ConfigError(
                "the bus URL",
                "max_message_size",
                f"{size} bytes is over a quarter of this Redis's pub/sub output buffer limit "
                f"(client-output-buffer-limit pubsub, hard limit {hard} bytes): Redis would "
                "disconnect a runner sent such a message; set max_message_size to at most "
                f"{hard // 4}, or raise the limit in redis.conf",
            )

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The bus's background work (the runner runs it after ``start``): the readers, the
        heartbeats and the reconnections, until ``stop``."""
        self._serve_done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._apply_actions, name="redis bus: registry updates")
                assert self._client is not None, "serve() before start()"
                self._link = Reconnecting(
                    self._name,
                    self._client,
                    self.settings.url,
                    setup=self._open,
                    loops=(
                        self._read_channels,
                        self._read_publish_replies,
                        self._read_streams,
                        self._heartbeat,
                        self._retry_groups,
                        self._sweep_streams,
                    ),
                    on_lost=self._connection_lost,
                )
                await tg.start(self._link.run, name="redis bus: connection")
                task_status.started()
        finally:
            self._tg = None
            self._serve_done.set()

    async def stop(self) -> None:
        """Say goodbye (the others drop this runner's workers at once), then disconnect."""
        connected = self._connected
        self._stopping = True
        if self._link is not None:
            self._link.stopping = True
        line = self._line
        if connected and line is not None:
            # What the jobs posted (their last replies) reaches Redis before the line closes.
            with anyio.move_on_after(self._silence_limit()):
                await line.flushed()
        if self._tg is not None:  # the readers stop first: nothing is taken after the bye
            self._tg.cancel_scope.cancel()
            await self._serve_done.wait()
        if connected and self._client is not None:
            bye = encode_envelope(Bye(runner=self._name, instance=self._instance))
            bye = self._seal(bye, self._broadcast)
            with anyio.move_on_after(1), contextlib.suppress(*CONNECTION_ERRORS):
                await self._client.publish(self._broadcast, bye)
        if self._client is not None:
            await self._client.aclose()
        await self._local.stop()

    # ----------------------------------------------------------------- DurableStore

    async def durable_jobs(self) -> list[DurableJob]:
        """The durable jobs of this bus's namespace, pending or dead (``framework jobs
        list``); works on a bus that was never started."""
        return await self._with_store(lambda client: self._store.listing(client))

    async def retry_durable_job(self, job_id: str) -> DurableJob:
        """Queue dead durable job ``job_id`` again for its worker (``framework jobs retry``).

        Raises:
            DurableJobError: no dead durable job has that id.
        """
        return await self._with_store(lambda client: self._store.retry(client, job_id))

    async def drop_durable_job(self, job_id: str) -> DurableJob:
        """Remove durable job ``job_id``, pending or dead (``framework jobs drop``).

        Raises:
            DurableJobError: no durable job has that id.
        """
        return await self._with_store(lambda client: self._store.drop(client, job_id))

    async def _with_store(self, action: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        client = connect(self.settings.url)
        try:
            return await action(client)
        except CONNECTION_ERRORS as exc:
            raise ConnectionError(
                f"cannot reach Redis at {redact_url(self.settings.url)}: {exc}"
            ) from None
        finally:
            await client.aclose()

    def subscribe(self, address: str) -> Inbox:
        """An inbox for a local worker or runner (announced once the worker is ready)."""
        return self._local.subscribe(address)

    def unsubscribe(self, address: str) -> None:
        """Close the inbox of ``address``."""
        self._local.unsubscribe(address)

    async def send(self, message: BusMessage) -> None:
        """Deliver ``message``: in-process when its target is here, else through Redis.

        Never raises for Redis trouble: a request that cannot be sent ends ERROR at its
        requester, anything else is dropped with a log line.

        Raises:
            UndeliverableError: no runner hosts the target (or, for a reply or a cancel,
                nothing is known of the job it belongs to).
        """
        target = message.target
        if target in self._local:
            self._local.send_nowait(message)
            return
        kind = type(message)
        if kind is JobRequestMessage:
            assert isinstance(message, JobRequestMessage)
            await self._send_request(message)
        elif kind in _REPLIES:
            await self._send_reply(message)
        elif kind in _JOB_CONTROLS:
            await self._send_job_control(message)
        else:
            hosts = self._peers.hosts(target)
            if not hosts:
                raise UndeliverableError(target)
            for runner in sorted(hosts):
                channel = self._channel(runner)
                data = self._encode(message, channel)
                if data is None:
                    return
                await self._publish(channel, data, message)

    async def wait_settled(self) -> None:
        """Return once this bus has heard from every runner that was on Redis when it
        connected: one heartbeat interval (its own ``heartbeat``) after its first session
        opened. Each of those runners answers a newcomer's hello with its heartbeat at
        once, and sends one every interval anyway; ``framework run --job WORKER`` then
        says at once that nobody hosts WORKER, instead of waiting for it."""
        await self._settled.wait()

    # ----------------------------------------------------------------- sending

    def _encode(self, message: BusMessage, destination: str) -> bytes | None:
        """The envelope of ``message`` for ``destination``, or None (logged) when it cannot
        travel."""
        try:
            return self._encoder.encode(message, destination)
        except WireError as exc:
            logger.warning(
                "%s: %s to %s not sent: %s", self._name, message.type, message.target, exc
            )
            return None

    def _channel(self, runner: str) -> str:
        channel = self._channels.get(runner)
        if channel is None:  # cached: this is on every message's path
            channel = self._channels[runner] = f"{self._ns}:runner:{runner}"
        return channel

    async def _send_request(self, message: JobRequestMessage) -> None:
        target = message.target
        hosts = self._peers.hosts(target)
        if not hosts:
            raise UndeliverableError(target)
        attempts = self._max_attempts(hosts, target, message.name)
        direct = len(hosts) == 1 and not attempts  # to the one host's channel
        # ... else to the worker's stream: the request is signed for where it goes.
        to = self._channel(next(iter(hosts))) if direct else self._streams.key(target)
        try:
            data = self._encoder.encode(message, to)
        except WireError as exc:
            reason = f"the job request cannot be sent through Redis: {exc}"
            self._routes.end_here(message.source, target, message.job_id, reason)
            return
        key = (message.job_id, target)
        limit = self._peers.limit(hosts, self.settings.max_message_size)
        if len(data) > limit:
            self._routes.end_here(
                message.source,
                target,
                message.job_id,
                f"the job request is {len(data)} bytes, over the bus's {limit}-byte limit "
                "(max_message_size in the bus URLs of this runner and of the worker's)",
            )
            return
        client = self._client
        if not self._connected or client is None:
            self._routes.end_here(message.source, target, message.job_id, self._offline_reason())
            return
        if direct:
            (runner,) = hosts
            self._routes.open(key, Route(message.source, runner))

            def refused(exc: ResponseError) -> None:
                reason = f"could not send the job through Redis: {exc}"
                self._routes.fail(key, reason, unknown=False)

            try:
                await self._post_on_line(self._channel(runner), data, refused)
            except CONNECTION_ERRORS as exc:
                self._routes.fail(
                    key,
                    f"could not send the job through Redis: {exc}",
                    unknown=not isinstance(exc, ResponseError),  # (refused: never sent)
                )
                self._break_session(exc)
            return
        route = self._routes.open(key, Route(message.source, None, durable=attempts > 0))
        extra = durable_fields(attempts, message.name) if attempts else None
        fields = self._streams.request_fields(message.job_id, data, extra)
        stream = to
        try:
            line = self._line_for(data)
            if line is not None:
                flat = (part for pair in fields.items() for part in pair)
                entry = await line.call("XADD", stream, b"*", *flat)
            else:
                async with self._gate:
                    entry = await client.xadd(stream, fields)  # type: ignore[arg-type]
            route.entry = bytes(entry)
        except CONNECTION_ERRORS as exc:
            self._routes.fail(
                key,
                f"could not send the job through Redis: {exc}",
                unknown=not isinstance(exc, ResponseError),
            )
            self._break_session(exc)

    def _max_attempts(self, hosts: set[str], worker: str, name: str | None) -> int:
        """The ``max_attempts`` of the handler a request goes to (the named one, else the
        default), as the first host with a description described it; 0 for a plain
        handler, or when no description has come yet."""
        for runner in sorted(hosts):
            jobs = self._peers.jobs(runner, worker)
            if not jobs:
                continue
            named = [j for j in jobs if j.name == name] if name is not None else []
            handler = named[0] if named else next((j for j in jobs if j.name is None), None)
            return handler.max_attempts or 0 if handler is not None and handler.durable else 0
        return 0

    async def _send_reply(self, message: BusMessage) -> None:
        job_id: str = message.job_id  # type: ignore[attr-defined]
        key = (job_id, message.target, message.source)
        is_response = type(message) is JobResponseMessage
        served = self._served.pop(key, None) if is_response else self._served.get(key)
        if served is None:
            raise UndeliverableError(message.target)
        channel = self._channel(served.origin)
        try:
            data, reason = self._encoder.encode(message, channel), ""
        except WireError as exc:  # a value JSON cannot carry: the worker checks them first
            data, reason = b"", str(exc)
        limit = self._peers.limit([served.origin], self.settings.max_message_size)
        if len(data) > limit:
            reason = (
                f"a {message.type} of {len(data)} bytes is over the bus's {limit}-byte limit "
                "(max_message_size in the bus URLs)"
            )
        if reason:
            if type(message) is not JobResponseMessage:
                logger.warning("%s: not sent to %s: %s", self._name, message.target, reason)
                return
            logger.warning("%s: job %s answered ERROR instead: %s", self._name, job_id, reason)
            message = JobResponseMessage.build(
                source=message.source,
                target=message.target,
                job_id=job_id,
                status=JobStatus.ERROR,
                response={"error": reason},
            )
            data = self._encoder.encode(message, channel)
        client = self._client
        if not self._connected or client is None:
            logger.warning(
                "%s: %s for job %s to %s lost: %s",
                self._name,
                message.type,
                job_id,
                message.target,
                self._offline_reason(),
            )
            return
        # A reply that needs nothing else once it is on its way is posted: everything its
        # job sends goes through the line, in order.
        posted = not (served.consumer or served.idempotency or (is_response and served.entry))
        try:
            if posted:
                await self._post_on_line(self._channel(served.origin), data, self._reply_refused)
            elif is_response and (served.consumer or served.idempotency):
                async with self._gate:
                    await self._finish(client, served, message, data)
            else:
                # An update of a job whose response may go on another connection (a
                # pipeline keeping it for an idempotency key, a big durable one's script) is
                # answered by Redis before that response is sent, so it cannot overtake
                # it; the response of a replicated job is published before its stream
                # entry is acknowledged.
                await self._publish_on_line(self._channel(served.origin), data)
                if is_response and served.entry is not None and served.stream is not None:
                    async with self._gate:
                        await self._streams.finish(client, served.stream, served.entry)
        except CONNECTION_ERRORS as exc:
            logger.warning("%s: %s for job %s lost: %s", self._name, message.type, job_id, exc)
            self._break_session(exc)
        except BaseException as exc:
            # Cancelled half-way (its worker cancelled meanwhile): the requester may wait
            # for nothing, so the session ends and the others end what they had here.
            # (Cheaper than shielding every response: a cancel scope per job.) A posted
            # reply is queued before its sender can be cancelled: nothing to end.
            if is_response and not posted:
                self._break_session(exc)
            raise

    def _reply_refused(self, error: ResponseError) -> None:
        """Redis refused a posted reply (out of memory, say): its requester learns of it
        only by its own timeout, or when this runner is lost."""
        logger.warning("%s: a reply was lost: Redis refused it: %s", self._name, error)

    async def _finish(
        self, client: aioredis.Redis, served: _Served, message: BusMessage, data: bytes
    ) -> None:
        """Write the response of a durable job, or of one with an idempotency key: for a
        durable one only while its entry is still this runner's (else a replica took it
        over: its response is the one), keeping it for the key when there is one."""
        assert isinstance(message, JobResponseMessage)
        stored = stored_response(message.status, message.response) if served.idempotency else ""
        ttl = self.settings.idempotency_ttl
        channel = self._channel(served.origin)
        if served.consumer and served.stream is not None and served.entry is not None:
            assert self._scripts is not None
            written = await self._scripts.finish(
                self._line_for(data) or client,
                stream=served.stream,
                entry=served.entry,
                consumer=served.consumer,
                channel=channel,
                response=data,
                idem_key=served.idempotency,
                stored=stored,
                idem_ttl=ttl,
            )
            if not written:
                logger.warning(
                    "%s: the response of durable job %s is not sent: its request is no longer "
                    "this runner's (a replica ran it again, or it was dropped)",
                    self._name,
                    message.job_id,
                )
            return
        async with client.pipeline(transaction=False) as pipe:
            pipe.publish(channel, data)
            if served.entry is not None and served.stream is not None:
                pipe.xack(served.stream, GROUP, served.entry)
                pipe.xdel(served.stream, served.entry)
            if stored:
                pipe.set(served.idempotency, stored, ex=ttl)
            await pipe.execute()

    async def _send_job_control(self, message: BusMessage) -> None:
        """A cancel or an update request goes to the runner that has the job; while a
        replicated job still waits in its stream, to every replica."""
        job_id: str = message.job_id  # type: ignore[attr-defined]
        route = self._routes.get((job_id, message.target))
        if route is None:
            raise UndeliverableError(message.target)
        runners = [route.runner] if route.runner else sorted(self._peers.hosts(message.target))
        for runner in runners:
            channel = self._channel(runner)
            data = self._encode(message, channel)
            if data is None:
                return
            await self._publish(channel, data, message)

    async def _publish(self, channel: str, data: bytes, message: BusMessage) -> None:
        client = self._client
        if not self._connected or client is None:
            logger.warning(
                "%s: %s to %s dropped: %s",
                self._name,
                message.type,
                message.target,
                self._offline_reason(),
            )
            return
        try:
            await self._publish_on_line(channel, data)
        except CONNECTION_ERRORS as exc:
            logger.warning(
                "%s: %s to %s dropped: %s", self._name, message.type, message.target, exc
            )
            self._break_session(exc)

    async def _publish_on_line(self, channel: str, data: bytes) -> None:
        """PUBLISH through this session's ``PublishLine`` (pipelined with the others').

        Raises:
            ConnectionError: no session is open, or its line broke.
            ResponseError: Redis refused the command.
        """
        line = self._line
        if line is None:
            raise RedisConnectionError(self._offline_reason())
        await line.publish(channel, data)

    async def _post_on_line(
        self, channel: str, data: bytes, on_refused: Callable[[ResponseError], None]
    ) -> None:
        """PUBLISH through this session's ``PublishLine`` without waiting for Redis's
        reply; a refusal goes to ``on_refused``.

        Raises:
            ConnectionError: no session is open, or its line broke.
        """
        line = self._line
        if line is None:
            raise RedisConnectionError(self._offline_reason())
        await line.post(channel, data, on_refused)

    def _line_for(self, data: bytes) -> PublishLine | None:
        """The session's line, to carry a command holding ``data`` (a stream request, a
        durable response); None when there is none or ``data`` is bigger than
        ``_ON_LINE_AT_MOST`` (the command then goes on a pooled connection)."""
        return self._line if len(data) <= _ON_LINE_AT_MOST else None

    def _offline_reason(self) -> str:
        return f"the bus is not connected to Redis at {redact_url(self.settings.url)}"

    # ----------------------------------------------------------------- receiving

    def _receive(
        self,
        raw: bytes,
        where: str,
        stream: str | None,
        entry: bytes | None,
        given: bytes | None = None,
    ) -> None:
        limit = self.settings.max_message_size
        if where == self._broadcast:  # heartbeats list every worker of a runner
            limit = max(limit, HEARTBEAT_LIMIT)
        sender = None
        verifier = self._verifier
        if verifier is not None:
            # Checked before anything is parsed: a message that fails costs its MAC only,
            # and has no effect (a stream entry is removed, unread). A channel's message
            # within the limit, the common case, goes to the verifier straight.
            if stream is None and len(raw) <= limit + _SIGNED_OVERHEAD:
                verified = verifier.verify(raw, where)
            else:
                verified = self._authentic(raw, where, limit, stream, entry, given)
            if verified is None:
                if stream is not None and entry is not None:
                    self._spawn(self._discard_entry, stream, entry)
                return
            sender, raw, _ = verified
        elif raw[:1] == b"\x01":  # signed (VERSION): a runner with a secret sent it
            self._dropped += 1
            self._complain(
                "signed",
                "%s: dropped a signed message from %s: another runner has a bus_secret and "
                "this one has none: give every runner the same bus_secret",
                where,
            )
            if stream is not None and entry is not None:
                self._spawn(self._discard_entry, stream, entry)
            return
        try:
            envelope = decode_envelope(raw, limit)
        except WireError as exc:
            self._dropped += 1
            logger.warning("%s: dropped a message from %s: %s", self._name, where, exc)
            # A job request this runner cannot read (a header its checks refuse, say) is
            # answered, or its requester would wait for ever.
            readable = where != self._broadcast and len(raw) <= limit
            head = request_head(raw) if readable else None
            if head is not None:
                origin, job_id, requester, worker = head
                reason = f"runner {self._name!r} could not read the job request: {exc}"
                self._refuse(origin, job_id, requester, worker, reason, stream, entry)
            elif entry is not None and stream is not None:
                self._spawn(self._discard_entry, stream, entry)
            elif readable:  # a response this runner cannot read still ends its job
                self._unreadable_response(raw, exc)
            return
        if sender is not None and claimed_sender(envelope) != sender:
            self._mismatched += 1
            self._complain(
                "sender",
                "%s: dropped a %s envelope from %s: signed by runner %r but naming runner %r "
                "(a runner may speak only for itself)",
                envelope.kind,
                where,
                sender,
                claimed_sender(envelope),
            )
            if stream is not None and entry is not None:
                self._spawn(self._discard_entry, stream, entry)
            return
        on_broadcast = where == self._broadcast
        if stream is not None and (
            type(envelope) is not Routed or type(envelope.message) is not JobRequestMessage
        ):
            self._dropped += 1
            logger.warning(
                "%s: dropped an entry of %s: a worker's stream carries job requests only",
                self._name,
                stream,
            )
            if entry is not None:
                self._spawn(self._discard_entry, stream, entry)
            return
        if type(envelope) is Routed and not on_broadcast:
            self._receive_routed(envelope, stream, entry)
        elif type(envelope) is Described:  # broadcast, or to this runner as it joined
            self._receive_description(envelope, len(raw))
        elif (type(envelope) is Routed) == on_broadcast:  # on the wrong channel: not trusted
            self._dropped += 1
            belongs = "a runner's channel or a worker's stream" if on_broadcast else self._broadcast
            logger.warning(
                "%s: dropped a %s envelope from %s: it belongs on %s",
                self._name,
                envelope.kind,
                where,
                belongs,
            )
        elif type(envelope) is Heartbeat:
            self._receive_heartbeat(envelope)
        elif type(envelope) is Bye:
            self._receive_bye(envelope)

    def _authentic(
        self,
        raw: bytes,
        where: str,
        limit: int,
        stream: str | None,
        entry: bytes | None,
        given: bytes | None,
    ) -> Verified | None:
        """The verified message, or None (counted, the first of each sender logged).

        A message on a channel is verified in full: signature, age and replays. A stream
        entry may be read long after it was sent (it waited for a replica, or was taken
        over from a lost one), so only its signature is checked, and its age is judged
        from when Redis added it: within ``MAX_AGE`` of its signing (or of a signed
        give-back stamp, ``given``), else it is a copy added later. A copy added soon
        enough is caught here when this runner saw the original (``_entries_seen``).
        """
        verifier = self._verifier
        assert verifier is not None
        if len(raw) > limit + _SIGNED_OVERHEAD:
            self._dropped += 1
            logger.warning(
                "%s: dropped a message from %s: %d bytes, over the %d-byte limit "
                "(max_message_size)",
                self._name,
                where,
                len(raw),
                limit,
            )
            return None
        if stream is None or entry is None:
            return verifier.verify(raw, where)
        verified = verifier.authenticate(raw, stream)
        if verified is None:
            return None
        signed_at = verified.sent_at
        if given is not None:
            stamp = verifier.authenticate(given, stream)
            if stamp is not None and stamp.body == raw[1:33]:  # it names this entry's MAC
                signed_at = max(signed_at, stamp.sent_at)
        try:
            added = int(entry.partition(b"-")[0]) / 1000
        except ValueError:
            added = math.inf
        mac = raw[1:33]
        seen = self._entries_seen.get(mac)
        if not -MAX_AHEAD <= added - signed_at <= MAX_AGE or seen not in (None, entry):
            self._stale_entries += 1
            self._complain(
                "stale entry",
                "%s: dropped an entry of %s signed by runner %r: added %.1f s after it was "
                "signed, or a copy of an entry read before (a replay: only entries added "
                "within %g s of their signing are run)",
                where,
                verified.sender,
                added - signed_at,
                MAX_AGE,
            )
            return None
        self._entries_seen[mac] = entry
        if len(self._entries_seen) > _ENTRIES_SEEN:
            self._entries_seen.popitem(last=False)
        return verified

    def _stored_head(self, raw: object, stream: str) -> tuple[str, str, str, str] | None:
        """``request_head`` of a request kept in a stream (``fields[b"m"]``), read through
        its signature with a secret: only a request a runner signed is answered."""
        if not isinstance(raw, bytes):
            return None
        if self._verifier is not None:
            verified = self._verifier.authenticate(raw, stream)
            if verified is None:
                return None
            raw = verified.body
        return request_head(raw)

    def _unreadable_response(self, raw: bytes, error: WireError) -> None:
        head = response_head(raw)
        if head is None:
            return
        origin, job_id, worker, requester = head
        route = self._routes.get((job_id, worker))
        if route is not None and route.requester == requester:
            reason = (
                f"runner {self._name!r} could not read the job's response from {origin}: {error}"
            )
            self._routes.fail((job_id, worker), reason, unknown=False)

    def _receive_routed(self, envelope: Routed, stream: str | None, entry: bytes | None) -> None:
        message: BusMessage = envelope.message
        kind = type(message)
        if kind is JobRequestMessage:
            self._receive_request(envelope.origin, message, stream, entry)
            return
        if kind is JobResponseMessage:
            route_key = (message.job_id, message.source)  # type: ignore[attr-defined]
            if not self._routes.answered(route_key):
                # Already answered here (it ended ERROR when its runner was lost, say): the
                # requester gets one terminal response, never a second.
                logger.debug("%s: a second response for job %s dropped", self._name, route_key[0])
                return
        elif kind in _JOB_CONTROLS:
            key = (message.job_id, message.source, message.target)  # type: ignore[attr-defined]
            if key not in self._served:
                if kind is JobCancelMessage and message.target in self._announced:
                    assert isinstance(message, JobCancelMessage)
                    self._remember_cancel(key, message)
                return
        try:
            self._local.send_nowait(message)
        except UndeliverableError:
            logger.debug("%s: %s for %s: no such address here", self._name, kind, message.target)

    def _receive_request(
        self, origin: str, message: BusMessage, stream: str | None, entry: bytes | None
    ) -> None:
        assert isinstance(message, JobRequestMessage)
        key = (message.job_id, message.source, message.target)
        served = self._served[key] = _Served(origin, stream, entry)
        delivery = self._deliveries.pop(entry, None) if entry is not None else None
        if delivery is not None:  # durable: its entry must still be ours when it is answered
            served.consumer = consumer_name(self._name, self._instance)
            if delivery[1] > 1:
                message.attempt = delivery[1]
        idempotency = message.headers.get(IDEMPOTENCY_HEADER)
        if idempotency and message.target in self._announced:
            served.idempotency = idempotency_key(
                self._ns, message.target, message.name, idempotency
            )
            self._spawn(self._deliver_once, origin, message, served)
            return
        self._deliver(origin, message, stream, entry)

    async def _deliver_once(self, origin: str, message: JobRequestMessage, served: _Served) -> None:
        """A request with an idempotency key: answered with the response kept for the key,
        when the worker answered one with the same key before; else run."""
        kept = None
        client = self._client
        if client is not None and self._connected:
            try:
                found: Any = await client.get(served.idempotency)
                kept = read_stored(found)
            except CONNECTION_ERRORS as exc:  # run it: the key cannot be checked
                logger.warning(
                    "%s: could not look up the idempotency key of job %s: %s",
                    self._name,
                    message.job_id,
                    exc,
                )
        if kept is None:
            self._deliver(origin, message, served.stream, served.entry)
            return
        status, response = kept
        answer = JobResponseMessage.build(
            source=message.target,
            target=message.source,
            job_id=message.job_id,
            status=JobStatus(status),
            response=response,
        )
        served.idempotency = ""  # kept already
        with contextlib.suppress(UndeliverableError):
            await self._send_reply(answer)

    def _deliver(
        self, origin: str, message: JobRequestMessage, stream: str | None, entry: bytes | None
    ) -> None:
        key = (message.job_id, message.source, message.target)
        try:
            if message.target not in self._announced:  # a runner's own address, say
                raise UndeliverableError(message.target)
            self._local.send_nowait(message)
        except UndeliverableError:
            reason = f"worker {message.target!r} is not on runner {self._name!r} (it ended)"
            self._refuse(origin, *key, reason, stream, entry)
            return
        cancel = self._early_cancels.pop(key, None)
        if cancel is not None:
            with contextlib.suppress(UndeliverableError):
                self._local.send_nowait(cancel)

    def _refuse(
        self,
        origin: str,
        job_id: str,
        requester: str,
        worker: str,
        reason: str,
        stream: str | None,
        entry: bytes | None,
    ) -> None:
        """Answer a job request from runner ``origin`` ERROR without running it (its stream
        entry, if any, is acknowledged and deleted as the answer is sent)."""
        self._served[(job_id, requester, worker)] = _Served(origin, stream, entry)
        response = JobResponseMessage.build(
            source=worker,
            target=requester,
            job_id=job_id,
            status=JobStatus.ERROR,
            response={"error": reason},
        )
        self._spawn(self._send_refusal, response)

    async def _send_refusal(self, response: JobResponseMessage) -> None:
        with contextlib.suppress(UndeliverableError):  # a repeated request, answered already
            await self._send_reply(response)

    def _remember_cancel(self, key: tuple[str, str, str], message: JobCancelMessage) -> None:
        self._early_cancels[key] = message
        while len(self._early_cancels) > _EARLY_CANCELS:
            self._early_cancels.popitem(last=False)

    def _receive_heartbeat(self, beat: Heartbeat) -> None:
        if beat.runner == self._name:
            if beat.instance == self._instance:
                self._echo_at = time.monotonic()
            else:
                logger.error(
                    "%s: another runner named %r uses this Redis (namespace %r): give each "
                    "runner its own name (name = ... in its framework.toml, or "
                    "WorkerRunner(name=...))",
                    self._name,
                    beat.runner,
                    self._ns,
                )
            return
        instance = self._peers.instance_of(beat.runner)
        if instance is not None and instance != beat.instance:
            self._runner_gone(
                beat.runner,
                f"runner {beat.runner} lost (it restarted or reconnected to Redis)",
                failed=True,
            )
        change = self._peers.heard(beat)
        if change is None:
            self._complain(
                "peers",
                "%s: ignored the heartbeat of runner %s: %d other runners are tracked already "
                "(the most a runner tracks)",
                beat.runner,
                MAX_PEERS,
            )
            return
        if change.refused:
            self._complain(
                "workers",
                "%s: %d worker(s) of runner %s are not registered: %d remote workers are "
                "tracked already (the most a runner tracks)",
                change.refused,
                beat.runner,
                MAX_REMOTE_WORKERS,
            )
        for name in change.added:
            self._queue(self._remote_ready, self._remote_data(name, beat.runner))
        for name in change.removed:
            self._host_left(name, beat.runner, f"worker {name!r} ended on runner {beat.runner}")
        if beat.hello:  # a new session: it has heard none of this runner's descriptions
            self._describe_to.add(beat.runner)
        if change.new_runner or beat.hello:
            self._announce.set()  # so the newcomer learns this runner's workers now

    def _complain(self, kind: str, text: str, *args: Any) -> None:
        """Log a refusal at most once every ``_COMPLAINTS_EVERY`` seconds per kind: forged
        heartbeats must not flood the log either."""
        now = time.monotonic()
        if now - self._complained.get(kind, -math.inf) >= _COMPLAINTS_EVERY:
            self._complained[kind] = now
            logger.warning(text, self._name, *args)

    def _receive_description(self, description: Described, size: int) -> None:
        if description.runner != self._name and self._peers.described(description, size):
            self._queue(self._remote_described, description.worker, description.runner)

    def _receive_bye(self, bye: Bye) -> None:
        if bye.runner != self._name and self._peers.instance_of(bye.runner) == bye.instance:
            self._runner_gone(bye.runner, f"runner {bye.runner} ended", failed=False)

    # ----------------------------------------------------------------- other runners

    def _runner_gone(
        self, runner: str, reason: str, *, failed: bool, session_gone: bool = True
    ) -> None:
        """``runner`` ended, went silent or restarted: its workers leave; its jobs end, but
        its durable ones, which a replica here claims. ``session_gone=False`` when it is
        only out of this runner's hearing (this runner's own link broke): its session may
        well be alive, and what it took from the streams is left alone."""
        instance = self._peers.instance_of(runner)
        workers = self._peers.forget(runner)
        if instance is not None and session_gone:
            self._session_gone(runner, instance)
        if failed:
            logger.warning(
                "%s: runner %s is gone (%s); its workers leave the registry: %s",
                self._name,
                runner,
                reason,
                ", ".join(sorted(workers)) or "none",
            )
        failed_jobs = self._routes.fail_runner(runner, reason)
        if failed_jobs:
            logger.warning("%s: %d job(s) at %s ended ERROR", self._name, failed_jobs, runner)
        for name in sorted(workers):
            self._host_left(name, runner, reason, failed=failed, forgotten=True)
        if workers:  # stream jobs it took and never answered (it may have said bye, too)
            consumer = consumer_name(runner, instance or "")
            self._spawn(self._fail_taken_entries, consumer, sorted(workers), reason)
            replicated = sorted(workers & self._reading)
            if session_gone and replicated:
                self._spawn(self._claim_entries, consumer, replicated)

    def _host_left(
        self, name: str, runner: str, reason: str, *, failed: bool = False, forgotten: bool = False
    ) -> None:
        """Worker ``name`` is no longer on ``runner``."""
        if not forgotten:
            self._routes.fail_where(
                reason, lambda key, route: key[1] == name and route.runner == runner
            )
        hosts = self._peers.hosts(name)
        if hosts:
            registry = self._registry
            known = registry.get(name) if registry is not None else None
            if registry is not None and known is not None and known.runner == runner:
                registry.replace(self._remote_data(name, min(hosts)))
            return
        # No host left: every job still waiting for it ends; its stream entries from here
        # would otherwise run, unasked, on a replica that starts later.
        # (A durable job's entry stays, for the worker when it returns.)
        stale = [
            (self._streams.key(name), route.entry)
            for key, route in self._routes
            if key[1] == name and route.entry is not None and not route.durable
        ]
        self._routes.fail_where(reason, lambda key, _route: key[1] == name)
        if stale:
            self._spawn(self._delete_entries, stale)
        self._queue(self._remote_gone, name, reason, failed)

    async def _fail_taken_entries(self, consumer: str, workers: list[str], reason: str) -> None:
        """Jobs of ours that a lost replica had taken from a stream end ERROR (found in the
        group's pending list by their job id; see ``_streams``)."""
        await self._fail_taken_now(consumer, workers, reason)
        # A frozen runner's read may still be blocked in Redis and take one more entry:
        # look again once that read has timed out.
        await anyio.sleep(_STREAM_BLOCK_MS / 1000 + 0.5)
        await self._fail_taken_now(consumer, workers, reason)

    async def _fail_taken_now(self, consumer: str, workers: list[str], reason: str) -> None:
        client = self._client
        if client is None:
            return
        for name in workers:
            waiting = {
                key[0]
                for key, r in self._routes
                if key[1] == name and not r.runner and not r.durable  # a replica claims those
            }
            if not waiting:
                continue
            try:
                taken = []
                for entry, job_id in await self._streams.taken_by(client, name, consumer):
                    if job_id in waiting:
                        self._routes.fail((job_id, name), reason)
                        taken.append(entry)
                if taken:
                    logger.warning(
                        "%s: %d job(s) to %s taken by %s ended ERROR: %s",
                        self._name,
                        len(taken),
                        name,
                        consumer,
                        reason,
                    )
                await self._streams.finish(client, self._streams.key(name), *taken)
            except CONNECTION_ERRORS as exc:
                logger.warning("%s: could not check %s's stream: %s", self._name, name, exc)

    async def _claim_entries(self, consumer: str, workers: list[str]) -> None:
        """Take over the durable jobs a lost session had taken from the streams read here,
        and run them again (see ``_durable``); look again once a frozen runner's blocked
        read has timed out, as ``_fail_taken_entries`` does."""
        await self._claim_now(consumer, workers)
        await anyio.sleep(_STREAM_BLOCK_MS / 1000 + 0.5)
        await self._claim_now(consumer, workers)

    async def _claim_now(self, consumer: str, workers: list[str]) -> int:
        """Claim ``consumer``'s durable entries of ``workers``' streams; how many."""
        client, scripts = self._client, self._scripts
        if client is None or scripts is None or not self._connected:
            return 0
        mine = consumer_name(self._name, self._instance)
        count = 0
        for name in workers:
            if name not in self._reading:
                continue
            try:
                claimed = await scripts.claim(client, self._streams.key(name), consumer, mine)
                for item in claimed:
                    await self._run_again(client, scripts, name, item, consumer)
            except CONNECTION_ERRORS as exc:
                logger.warning(
                    "%s: could not take over the durable jobs %s had of %r: %s",
                    self._name,
                    consumer,
                    name,
                    exc,
                )
                continue
            count += len(claimed)
        return count

    async def _run_again(
        self,
        client: aioredis.Redis,
        scripts: DurableScripts,
        name: str,
        claimed: Claimed,
        lost: str,
    ) -> None:
        """Run a claimed durable request again here, or, past its ``max_attempts``, move
        it to the dead-letter list and answer its requester ERROR."""
        raw = claimed.fields.get(b"m")
        runner = lost.rpartition("/")[0] or lost
        head = self._stored_head(raw, claimed.stream)
        served = self._served.get(head[1:]) if head is not None else None
        if served is not None and served.entry == claimed.entry:
            # Still running here (this runner's own earlier session took it): it is this
            # session's now, and its response will be written when it ends.
            served.consumer = consumer_name(self._name, self._instance)
            return
        if claimed.attempt <= claimed.max_attempts and isinstance(raw, bytes):
            logger.warning(
                "%s: runs durable job %s of %r again (attempt %d of %d): runner %s was lost",
                self._name,
                claimed.fields.get(b"j", b"").decode(errors="replace"),
                name,
                claimed.attempt,
                claimed.max_attempts,
                runner,
            )
            self._deliveries[claimed.entry] = (claimed.max_attempts, claimed.attempt)
            self._receive(raw, claimed.stream, claimed.stream, claimed.entry)
            self._deliveries.pop(claimed.entry, None)
            return
        error = (
            f"durable job ran {claimed.attempt - 1} time(s), its max_attempts, and each time "
            f"its runner was lost (the last: {runner}); it is on the dead-letter list "
            "('framework jobs list', 'framework jobs retry ID')"
        )
        await scripts.bury(client, claimed, name, error)
        if head is not None:
            await self._answer_orphan(client, head, error)
        logger.warning("%s: %s", self._name, error)

    async def _delete_entries(self, entries: list[tuple[str, bytes]]) -> None:
        if self._client is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._streams.delete(self._client, entries)

    async def _requeue(self, stream: str, entry: bytes, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"m")
        if self._signer is not None and isinstance(raw, bytes):
            # Added again now, by this runner: a signed stamp naming the request's MAC says
            # so, so a replica does not take the new entry for a late copy.
            fields = {**fields, b"g": self._signer.sign(raw[1:33], stream)}
        if self._client is not None:
            try:
                await self._streams.give_back(self._client, stream, entry, fields)
            except CONNECTION_ERRORS as exc:
                logger.warning(
                    "%s: could not give back an entry of %s: %s", self._name, stream, exc
                )

    async def _discard_entry(self, stream: str, entry: bytes) -> None:
        """A malformed stream entry is acknowledged and deleted, so nobody reads it again."""
        if self._client is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._streams.finish(self._client, stream, entry)

    def _remote_data(self, name: str, runner: str) -> WorkerReadyData:
        """Worker ``name`` on ``runner``, with its description when it has come."""
        return WorkerReadyData(worker_name=name, runner=runner, jobs=self._peers.jobs(runner, name))

    async def _remote_described(self, name: str, runner: str) -> None:
        """A description that came after its worker was registered here goes in."""
        registry = self._registry
        known = registry.get(name) if registry is not None else None
        if registry is not None and known is not None and known.runner == runner:
            registry.replace(self._remote_data(name, runner))

    async def _remote_ready(self, data: WorkerReadyData) -> None:
        runner = self._runner
        if runner is not None and data.worker_name in self._peers.workers_of(data.runner):
            await runner.remote_worker_ready(data)

    async def _remote_gone(self, name: str, reason: str, failed: bool) -> None:
        if self._runner is not None and not self._peers.hosts(name):
            await self._runner.remote_worker_gone(name, reason, failed=failed)

    # ----------------------------------------------------------------- local workers

    def _on_registered(self, data: WorkerReadyData) -> None:
        if data.runner == self._name and data.worker_name not in self._announced:
            self._spawn(self._announce_worker, data.worker_name)

    def _on_unregistered(self, name: str, reason: str) -> None:
        self._described.discard(name)  # described again if it comes back
        self._leaving.discard(name)
        self._no_group.discard(name)
        if name in self._announced:
            self._announced.discard(name)
            self._reading.discard(name)
            line = self._line
            if line is not None:
                # Its last replies may still wait on the publish line: the heartbeats
                # (on another connection) keep naming it until they have reached Redis,
                # or the others would end its jobs before their responses came.
                self._departing.add(name)
                self._spawn(self._depart_when_flushed, name, line)
            self._announce.set()
            self._streams_changed.set()
        hosts = self._peers.hosts(name)
        if hosts:  # a replica elsewhere: jobs from here go there now
            self._queue(self._remote_ready, self._remote_data(name, min(hosts)))

    async def _depart_when_flushed(self, name: str, line: PublishLine) -> None:
        try:
            with anyio.move_on_after(self._silence_limit()):
                await line.flushed()
        finally:
            self._departing.discard(name)
            self._announce.set()

    def _on_leaving(self, name: str) -> None:
        """A local worker started ending: take no more of its stream's jobs (a replica
        elsewhere gets them), but keep announcing it until it has answered its own."""
        self._leaving.add(name)
        self._no_group.discard(name)
        if name in self._reading:
            self._reading.discard(name)
            self._streams_changed.set()

    async def _announce_worker(self, name: str) -> None:
        """Create the worker's stream group (replicas share it), then announce it."""
        if len(name) > NAME_LIMIT:
            logger.error(
                "%s: worker %r is not announced on the Redis bus: its name is longer than "
                "%d characters; give it a shorter name",
                self._name,
                name[:40] + "...",
                NAME_LIMIT,
            )
            return
        usable = True
        if self._connected and self._client is not None:
            try:
                usable = await self._ensure_stream(self._client, name)
            except CONNECTION_ERRORS as exc:  # made when the session opens again
                logger.warning("%s: stream of %r not ready yet: %s", self._name, name, exc)
        registry = self._registry
        data = registry.get(name) if registry is not None else None
        if data is not None and data.runner == self._name:
            self._announced.add(name)
            if usable and name not in self._leaving:
                self._reading.add(name)
            self._announce.set()
            self._streams_changed.set()

    async def _ensure_stream(
        self, client: aioredis.Redis, name: str, *, from_start: bool = False
    ) -> bool:
        """Make the worker's stream group; False when Redis refuses (out of memory, a key of
        another type...): the stream is not read, and ``_retry_groups`` tries again. Only
        that worker's replica jobs wait meanwhile. The first refusal is logged."""
        try:
            await self._streams.ensure_group(client, name, from_start=from_start)
        except ResponseError as exc:  # OOM, WRONGTYPE and the like: not a lost connection
            if name not in self._no_group:
                logger.error(
                    "%s: cannot use %s as the stream of worker %r (%s); jobs sent to it "
                    "through its stream (replicas) are not read here until Redis accepts it: "
                    "trying again every %g s (free memory, or delete the key if it holds "
                    "something else)",
                    self._name,
                    self._streams.key(name),
                    name,
                    exc,
                    _GROUP_RETRY,
                )
            self._no_group.add(name)
            self._reading.discard(name)
            return False
        if name in self._no_group:
            self._no_group.discard(name)
            logger.warning(
                "%s: the stream %s of worker %r is usable again: reading it",
                self._name,
                self._streams.key(name),
                name,
            )
        return True

    async def _retry_groups(self, _subscriber: Subscriber) -> None:
        """Try again, now and then, to make the groups Redis refused; read each stream once
        its group is made (from the start of the stream: the requests added meanwhile wait
        there)."""
        client = self._client
        assert client is not None
        while True:
            await anyio.sleep(_GROUP_RETRY)
            for name in sorted(self._no_group):
                if name not in self._announced or name in self._leaving:
                    self._no_group.discard(name)
                elif await self._ensure_stream(client, name, from_start=True):
                    self._reading.add(name)
                    self._streams_changed.set()

    async def _sweep_streams(self, _subscriber: Subscriber) -> None:
        """Remove what gone sessions left in the streams read here: the entries each had
        taken and not answered (their requesters are answered ERROR, outcome unknown, in
        case they still wait; then the entries are acknowledged and deleted), then the
        consumer itself. Only sessions this runner saw end are touched (``_gone``), so
        after connection breaks, restarts and crashes the streams hold nothing but requests
        waiting to be read, and a live session is never mistaken for a gone one."""
        client = self._client
        assert client is not None
        while True:
            await anyio.sleep(_SWEEP_EVERY)
            for name in sorted(self._reading):
                try:
                    await self._sweep_stream(client, name)
                except ResponseError as exc:  # NOPERM, NOGROUP...: this stream, this time
                    self._complain("sweep", "%s: cannot clean up the stream of %r: %s", name, exc)

    def _session_gone(self, runner: str, instance: str) -> None:
        self._gone[consumer_name(runner, instance)] = None
        while len(self._gone) > _GONE_KEPT:
            self._gone.popitem(last=False)

    async def _sweep_stream(self, client: aioredis.Redis, name: str) -> None:
        for consumer, pending, idle in await self._streams.consumers(client, name):
            runner, _, instance = consumer.rpartition("/")
            if self._live_session(runner, instance):
                continue
            if consumer not in self._gone:
                # A session nobody here saw end (of a runner that died while this one was
                # cut off, or before it started) is gone once it has been silent longer
                # than any live runner can be.
                limit = self._silence_limit()
                if idle / 1000 < limit or self._session_age() < limit:
                    continue
                self._session_gone(runner, instance)
            if pending:
                pending -= await self._claim_now(consumer, [name])
            if pending > 0:
                reason = f"runner {runner or consumer} lost"
                stream = self._streams.key(name)
                for entry, fields in await self._streams.pending_of(client, name, consumer):
                    raw = fields.get(b"m")
                    head = self._stored_head(raw, stream)
                    if head is not None and head[1:] not in self._served:
                        await self._answer_orphan(client, head, reason)
                    await self._streams.finish(client, stream, entry)
                logger.warning(
                    "%s: removed %d entr(ies) of %s taken by %s, gone without answering",
                    self._name,
                    pending,
                    stream,
                    consumer,
                )
            await self._streams.drop_consumer(client, name, consumer)

    def _live_session(self, runner: str, instance: str) -> bool:
        """Whether ``runner/instance`` is this runner's session or a live peer's."""
        if runner == self._name:
            return instance == self._instance
        return self._peers.instance_of(runner) == instance

    def _silence_limit(self) -> float:
        """Seconds after which a consumer that has not read is surely not a live runner's."""
        return self.settings.heartbeat * self.settings.misses + _STREAM_BLOCK_MS / 1000 + 1

    def _session_age(self) -> float:
        return time.monotonic() - self._opened_at

    async def _answer_orphan(
        self, client: aioredis.Redis, head: tuple[str, str, str, str], reason: str
    ) -> None:
        """Answer the requester of a request a gone session had taken: ERROR, its outcome
        unknown. It has most likely ended the job already (then this is ignored there)."""
        origin, job_id, requester, worker = head
        response = JobResponseMessage.build(
            source=worker,
            target=requester,
            job_id=job_id,
            status=JobStatus.ERROR,
            response=unknown_outcome(reason),
        )
        async with self._gate:
            channel = self._channel(origin)
            await client.publish(channel, self._encoder.encode(response, channel))

    # ----------------------------------------------------------------- the connection

    async def _open(self, subscriber: Subscriber) -> None:
        """The start of each session: subscribe, make the workers' stream groups (again,
        after Redis restarted empty), and say hello."""
        client = self._client
        assert client is not None
        # Each session is a new instance to the others: whatever they had in flight with
        # this runner across a break (requests, replies) ends ERROR on their side rather
        # than waiting for messages that may have been lost.
        self._session_gone(self._name, self._instance)
        self._instance = uuid.uuid4().hex
        self._opened_at = time.monotonic()
        await client.ping()
        if self._line is not None:
            await self._line.close()
        self._line = None
        line = PublishLine(client)
        await line.open()
        self._line = line
        for name in list(self._announced):
            if await self._ensure_stream(client, name) and name not in self._leaving:
                self._reading.add(name)
        await subscriber.open([self._channel(self._name), self._broadcast])
        self._echo_at = time.monotonic()
        self._hello = True
        self._described.clear()  # the others know this session by its new instance only
        self._describe_to.clear()
        self._announce.set()

    @property
    def _connected(self) -> bool:
        return self._link is not None and self._link.connected

    def _break_session(self, error: BaseException) -> None:
        """A send failed: the session ends as if the reader had lost the connection, so the
        others see a new instance when it reconnects and end what they had in flight with
        this runner (a reply lost here must not leave its requester waiting)."""
        if self._link is not None and not isinstance(error, ResponseError):
            # (A command Redis refused, WRONGTYPE say, is no sign of a broken link.)
            self._link.break_session(error)

    def _connection_lost(self, reason: str) -> None:
        """Everything in flight through Redis ends ERROR; the other runners are forgotten
        until they are heard again."""
        if self._stopping:
            return
        logger.warning(
            "%s: lost the connection to Redis at %s (%s); reconnecting",
            self._name,
            redact_url(self.settings.url),
            reason,
        )
        why = f"the connection to Redis was lost ({reason})"
        self._routes.fail_where(why, lambda _key, _route: True)
        for runner in self._peers.names():
            self._runner_gone(runner, why, failed=True, session_gone=False)

    async def _read_channels(self, subscriber: Subscriber) -> None:
        own = self._channel(self._name)
        mine = own.encode()
        broadcast = self._broadcast
        receive = self._receive

        def deliver(channel: bytes, data: bytes) -> None:
            receive(data, broadcast if channel != mine else own, None, None)

        await subscriber.run(deliver, self._let_jobs_run)

    def _let_jobs_run(self) -> bool:
        """When redis-py reads the channels (without hiredis): after a message, whether the
        tasks it woke (a job it started, the requester it answered) run before the reader
        reads on: when nothing waits on the line, the message is one of a quiet exchange
        and its job's reply goes out first; under load the reader reads on and the line
        sends what a turn queued in one write. (The subscriber's own protocol delivers a
        read's messages in its callback: what they woke always runs before the next read.)
        """
        line = self._line
        return line is not None and line.idle

    async def _read_publish_replies(self, _subscriber: Subscriber) -> None:
        """Hand the replies of the commands on this session's line to their senders; a
        broken line ends the session (its ``ConnectionError``)."""
        line = self._line
        assert line is not None
        try:
            await line.run()
        finally:
            if self._line is line:
                self._line = None
            with anyio.CancelScope(shield=True):
                await line.close()

    async def _read_streams(self, _subscriber: Subscriber) -> None:
        client = self._client
        assert client is not None
        while True:
            if not self._reading:
                self._streams_changed = anyio.Event()
                await self._streams_changed.wait()
                continue
            self._streams_changed = anyio.Event()
            streams: dict[Any, Any] = {self._streams.key(n): ">" for n in sorted(self._reading)}
            try:
                batches: Any = await client.xreadgroup(
                    GROUP,
                    consumer_name(self._name, self._instance),
                    streams,
                    count=_READ_COUNT,
                    block=_STREAM_BLOCK_MS,
                )
            except ResponseError as exc:
                # NOGROUP: Redis restarted empty; UNBLOCKED: a stream key was deleted;
                # WRONGTYPE: a key of another type took a stream's place. Make the groups
                # again, from the start of what is there now (requests added meanwhile
                # are not skipped), and stop reading a key that cannot be a stream.
                if not any(code in str(exc) for code in ("NOGROUP", "UNBLOCKED", "WRONGTYPE")):
                    raise
                for name in list(self._reading):
                    await self._ensure_stream(client, name, from_start=True)
                continue
            reading = {self._streams.key(name) for name in self._reading}
            batches = _stream_entries(batches)
            for stream_name, entries in batches:
                stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                for entry, fields in entries:
                    raw = fields.get(b"m") if fields else None
                    if stream not in reading:  # read just as its worker started ending
                        self._spawn(self._requeue, stream, entry, fields)
                        continue
                    if not isinstance(raw, bytes):
                        self._dropped += 1
                        logger.warning(
                            "%s: dropped a stream entry of %s with no data", self._name, stream
                        )
                        self._spawn(self._discard_entry, stream, entry)
                        continue
                    attempts = max_attempts_of(fields)
                    if attempts:
                        self._deliveries[entry] = (attempts, 1)
                    self._receive(raw, stream, stream, entry, fields.get(b"g"))
                    if attempts:
                        self._deliveries.pop(entry, None)
            if batches:
                # The jobs just read start before the next read is sent (its write and
                # redis-py's command path are not on their way).
                await anyio.lowlevel.checkpoint()

    async def _heartbeat(self, _subscriber: Subscriber) -> None:
        client = self._client
        assert client is not None
        interval = self.settings.heartbeat
        while True:
            with anyio.move_on_after(interval):
                await self._announce.wait()
            self._announce = anyio.Event()
            if time.monotonic() - self._opened_at >= interval:
                self._settled.set()
            workers = sorted(self._announced)
            named = sorted(self._announced | self._departing) if self._departing else workers
            beat = Heartbeat(
                runner=self._name,
                instance=self._instance,
                interval=interval,
                misses=self.settings.misses,
                workers=named,
                max_message_size=self.settings.max_message_size,
                hello=self._hello,
            )
            self._hello = False
            # No socket timeout is set (see ``connect``), so a link that hangs without a
            # socket error is found here: this runner's own heartbeats stop coming back, or
            # sending one takes longer than the others would wait for it.
            limit = interval * self.settings.misses + 1
            silent = time.monotonic() - self._echo_at
            if silent > limit:
                raise ConnectionError(
                    f"no heartbeat of this runner came back from Redis for {silent:.1f} s"
                )
            with anyio.fail_after(limit):  # TimeoutError: an OSError, so the session ends
                await self._describe(client, workers)
                beat_data = self._seal(encode_envelope(beat), self._broadcast)
                await client.publish(self._broadcast, beat_data)
            # On its own connection, the heartbeat waits behind none of the publish line's
            # backlog. An idle line gets a PING instead, so a Redis ``timeout`` longer than
            # the interval never closes it (a busy one is not idle to Redis).
            line = self._line
            if line is not None:
                line.keep_alive()
            # "Now" is when this runner last heard its own heartbeat come back: after a stall
            # of its own event loop, the heartbeats queued meanwhile are read before anyone
            # is judged silent.
            for runner in self._peers.lost(self._echo_at):
                self._runner_gone(runner, f"runner {runner} lost", failed=True)

    async def _describe(self, client: aioredis.Redis, workers: list[str]) -> None:
        """Send the descriptions owed, before the heartbeat that names ``workers``: those
        not sent yet in this session, to every runner; all of them, to each runner that
        said hello since (it missed the earlier ones). One round trip."""
        fresh = [name for name in workers if name not in self._described]
        joined = sorted(runner for runner in self._describe_to if runner in self._peers)
        self._describe_to = set()
        own = self.settings.max_message_size
        sends = []
        if fresh:
            limit = self._peers.limit(self._peers.names(), own)
            sends += [
                (self._broadcast, self._description(n, limit, self._broadcast)) for n in fresh
            ]
        for runner in joined:
            limit = self._peers.limit([runner], own)
            channel = self._channel(runner)
            sends += [
                (channel, self._description(n, limit, channel)) for n in workers if n not in fresh
            ]
        if sends:
            async with client.pipeline(transaction=False) as pipe:
                for channel, data in sends:
                    pipe.publish(channel, data)
                await pipe.execute()
        self._described.update(fresh)

    def _description(self, name: str, limit: int, destination: str) -> bytes:
        """The ``desc`` envelope of local worker ``name`` for ``destination``, empty
        (logged) over ``limit``."""
        registry = self._registry
        data = registry.get(name) if registry is not None else None
        jobs: list[JobDescription] = list(data.jobs) if data and data.runner == self._name else []
        described = Described(runner=self._name, instance=self._instance, worker=name, jobs=jobs)
        raw, problem = encode_description(described, limit - _SIGNED_OVERHEAD * self.signed)
        if problem:
            logger.warning(
                "%s: worker %r is described to the other runners as answering no jobs: its "
                "description %s",
                self._name,
                name,
                problem,
            )
        return self._seal(raw, destination)

    # ----------------------------------------------------------------- background work

    def _spawn(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._tg is not None and not self._stopping:
            self._tg.start_soon(func, *args)

    def _queue(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Registry changes run one at a time, in the order they were seen."""

        async def action() -> None:
            await func(*args)

        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._actions.send_nowait(action)

    async def _apply_actions(self) -> None:
        async for action in self._action_queue:
            try:
                await action()
            except Exception:
                logger.exception("%s: a registry update raised; ignored", self._name)


def _stream_entries(reply: Any) -> list[tuple[Any, list[Any]]]:
    """``XREADGROUP``'s reply as redis-py parses it, whatever its shape, as (stream,
    [(entry id, fields), ...]) pairs: a list of [stream, entries] on RESP2, a dict of
    stream: [entries] on RESP3, and entries not wrapped in a list with
    ``legacy_responses=false`` on either protocol."""
    if not reply:
        return []
    if not isinstance(reply, dict):
        return [(stream, entries) for stream, entries in reply]
    batches = []
    for stream, entries in reply.items():
        if len(entries) == 1 and isinstance(entries[0], list):  # RESP3's extra list
            entries = entries[0]
        batches.append((stream, entries))
    return batches
