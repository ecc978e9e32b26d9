"""The durable jobs a namespace holds, read and changed from outside any runner: what
``framework jobs`` does through ``RedisBus``'s ``DurableStore`` methods.

Pending jobs are the durable entries of the workers' streams (see ``_durable``); dead ones
are the records of the dead-letter hash. With a bus secret, what this writes is signed like
a runner's messages: a retried request is signed again, as its requester's runner, so that
the replicas take it for the fresh request it is (an old signature would be stale, or a
copy of one they read), and a dropped job's ERROR is signed as ``framework jobs``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from agent_plugin_redis._streams import GROUP
from framework.bus.messages import JobResponseMessage
from framework.bus.network.durable import DurableJob, DurableJobError
from framework.bus.network.signing import Signer, SigningKeys, Verifier
from framework.bus.network.wire import RoutedEncoder, request_head
from framework.types import JobStatus

if TYPE_CHECKING:
    import redis.asyncio as aioredis

DROPPER = "framework-jobs"
"""The origin (and, with a secret, the signer) of the ERROR a dropped job's requester gets."""


class DurableJobs:
    """The durable jobs of one namespace."""

    def __init__(self, namespace: str, keys: SigningKeys | None = None) -> None:
        self._ns = namespace
        self._keys = keys
        self._prefix = f"{namespace}:worker:"
        self.dead = f"{namespace}:dead"

    async def listing(self, client: aioredis.Redis) -> list[DurableJob]:
        """Pending jobs, worker by worker in queue order, then dead ones by job id."""
        found = [job for _stream, _entry, _fields, job in await self._pending(client)]
        dead: Any = await client.hgetall(self.dead)
        for job_id, raw in sorted(dead.items()):
            found.append(_dead_job(_text(job_id), raw))
        return found

    async def retry(self, client: aioredis.Redis, job_id: str) -> DurableJob:
        """Queue dead job ``job_id`` again for its worker."""
        raw: Any = await client.hget(self.dead, job_id)
        if raw is None:
            raise DurableJobError(
                f"no dead durable job {job_id!r} in namespace {self._ns!r}; "
                "'framework jobs list' shows the dead ones"
            )
        job = _dead_job(job_id, raw)
        record = json.loads(raw)
        fields = {k.encode(): bytes.fromhex(v) for k, v in record["fields"].items()}
        fields.pop(b"g", None)  # a give-back stamp of the old entry
        stream = self._prefix + job.worker
        if self._keys is not None:
            opened = self._open(fields.get(b"m", b""), stream)
            if opened is None:
                raise DurableJobError(
                    f"dead durable job {job_id!r} was not signed with this bus secret, so it "
                    "cannot be queued again; drop it, or retry it with the secret it was "
                    "sent with"
                )
            sender, body = opened
            fields[b"m"] = Signer(sender, self._keys).sign(body, stream)
        async with client.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
            pipe.hdel(self.dead, job_id)
            await pipe.execute()
        return job

    async def drop(self, client: aioredis.Redis, job_id: str) -> DurableJob:
        """Remove job ``job_id``: from the dead-letter hash, or from its worker's stream
        (its requester, if it still waits, is answered ERROR)."""
        raw: Any = await client.hget(self.dead, job_id)
        if raw is not None:
            await client.hdel(self.dead, job_id)
            return _dead_job(job_id, raw)
        for stream, entry, fields, job in await self._pending(client):
            if job.job_id != job_id:
                continue
            opened = self._open(fields.get(b"m", b""), stream)
            head = request_head(opened[1]) if opened is not None else None
            async with client.pipeline(transaction=True) as pipe:
                if head is not None:
                    origin, _job, requester, worker = head
                    response = JobResponseMessage.build(
                        source=worker,
                        target=requester,
                        job_id=job_id,
                        status=JobStatus.ERROR,
                        response={"error": "the durable job was dropped (framework jobs drop)"},
                    )
                    signer = None if self._keys is None else Signer(DROPPER, self._keys)
                    encoder = RoutedEncoder(DROPPER, signer)
                    channel = f"{self._ns}:runner:{origin}"
                    pipe.publish(channel, encoder.encode(response, channel))
                pipe.xack(stream, GROUP, entry)
                pipe.xdel(stream, entry)
                await pipe.execute()
            return job
        raise DurableJobError(
            f"no durable job {job_id!r} pending or dead in namespace {self._ns!r}; "
            "'framework jobs list' shows them"
        )

    def _open(self, raw: bytes, stream: str) -> tuple[str, bytes] | None:
        """``(sender, body)`` of a request stored from ``stream``: its signature checked
        with a secret (None when it fails), as it is without one."""
        if self._keys is None:
            return "", raw
        verified = Verifier(self._keys, name=DROPPER).authenticate(raw, stream)
        return None if verified is None else (verified.sender, verified.body)

    async def _pending(
        self, client: aioredis.Redis
    ) -> list[tuple[str, bytes, dict[bytes, bytes], DurableJob]]:
        found = []
        keys = [
            _text(key)
            async for key in client.scan_iter(match=_glob(self._prefix) + "*", _type="STREAM")
        ]
        for stream in sorted(keys):
            worker = stream[len(self._prefix) :]
            try:
                pending: Any = await client.xpending_range(stream, GROUP, "-", "+", 100_000)
            except ResponseError:  # no group (yet): nothing was read
                pending = []
            deliveries = {bytes(p["message_id"]): int(p["times_delivered"]) for p in pending}
            entries: Any = await client.xrange(stream)
            for entry, fields in entries:
                if b"d" not in fields:
                    continue
                job = DurableJob(
                    job_id=_text(fields.get(b"j", b"")),
                    worker=worker,
                    name=_text(fields.get(b"n", b"")) or None,
                    state="pending",
                    attempts=deliveries.get(bytes(entry), 0),
                )
                found.append((stream, bytes(entry), dict(fields), job))
        return found


def _dead_job(job_id: str, raw: Any) -> DurableJob:
    record = json.loads(raw)
    return DurableJob(
        job_id=job_id,
        worker=str(record.get("worker", "")),
        name=record.get("name"),
        state="dead",
        attempts=int(record.get("attempts", 0)),
        error=str(record.get("error", "")),
    )


def _glob(text: str) -> str:
    """``text`` with Redis's glob characters escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
