"""The workers' streams: how replicas of one worker share its jobs through Redis Streams.

Each worker name has a stream (``<ns>:worker:<name>``) read through one consumer group
(``workers``); each runner hosting the worker reads as a consumer named after itself and
its session (``consumer_name``), so each entry goes to exactly one replica. An entry holds
the request envelope (``m``) and its job id (``j``), and stays in the group's pending list
until the replica acknowledges it, when it sends the response; that list is how a lost
replica's jobs are found. A durable request's entry has two more fields (``_durable``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

if TYPE_CHECKING:
    import redis.asyncio as aioredis


GROUP = "workers"
"""The consumer group every replica of a worker reads its stream through."""


def consumer_name(runner: str, instance: str) -> str:
    """A runner's consumer name in the groups, one per session: the pending list of a lost
    session is then exactly what that session took, not what the runner's next one reads."""
    return f"{runner}/{instance}"


class WorkerStreams:
    """Stream operations for one namespace; each takes the client of the current session."""

    def __init__(self, namespace: str) -> None:
        self._prefix = f"{namespace}:worker:"

    def key(self, worker: str) -> str:
        """The stream of ``worker``."""
        return self._prefix + worker

    async def ensure_group(
        self, client: aioredis.Redis, worker: str, *, from_start: bool = False
    ) -> None:
        """Create the worker's stream and group when missing (a restarted Redis has none).

        A new group starts at the stream's end, so entries left from an earlier life are
        not run; ``from_start`` when the group vanished under a reader (the entries there
        were added since, by requesters waiting for an answer).
        """
        try:
            start = "0" if from_start else "$"
            await client.xgroup_create(self.key(worker), GROUP, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def request_fields(
        self, job_id: str, data: bytes, extra: dict[bytes, bytes] | None = None
    ) -> dict[bytes, bytes]:
        """The fields of a request's entry: the envelope (``m``), the job id (``j``) and
        ``extra`` (a durable request's, see ``_durable``)."""
        return {b"m": data, b"j": job_id.encode(), **(extra or {})}

    async def taken_by(self, client: aioredis.Redis, worker: str, consumer: str) -> list[Any]:
        """``(entry, job id)`` of the entries ``consumer`` read and never acknowledged."""
        stream = self.key(worker)
        pending = await client.xpending_range(
            stream, GROUP, min="-", max="+", count=10_000, consumername=consumer
        )
        taken = []
        for item in pending:
            entry = item["message_id"]
            found: Any = await client.xrange(stream, min=entry, max=entry)
            fields = (found[0][1] if found else None) or {}
            taken.append((entry, bytes(fields.get(b"j", b"")).decode(errors="replace")))
        return taken

    async def consumers(self, client: aioredis.Redis, worker: str) -> list[tuple[str, int, int]]:
        """``(name, entries pending, ms idle)`` of each consumer of the worker's group."""
        infos: Any = await client.xinfo_consumers(self.key(worker), GROUP)
        return [(_text(info["name"]), int(info["pending"]), int(info["idle"])) for info in infos]

    async def pending_of(
        self, client: aioredis.Redis, worker: str, consumer: str
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """``(entry, fields)`` of what ``consumer`` read and never acknowledged (fields
        empty when the entry was deleted meanwhile)."""
        stream = self.key(worker)
        pending = await client.xpending_range(
            stream, GROUP, min="-", max="+", count=10_000, consumername=consumer
        )
        found: list[tuple[bytes, dict[bytes, bytes]]] = []
        for item in pending:
            entry = bytes(item["message_id"])  # type: ignore[arg-type]
            rows: Any = await client.xrange(stream, min=entry, max=entry)
            found.append((entry, dict(rows[0][1]) if rows else {}))
        return found

    async def drop_consumer(self, client: aioredis.Redis, worker: str, consumer: str) -> None:
        """Remove a consumer (a session that is gone) from the worker's group."""
        await client.xgroup_delconsumer(self.key(worker), GROUP, consumer)

    async def finish(self, client: aioredis.Redis, stream: str, *entries: bytes) -> None:
        """Acknowledge and delete entries (answered, malformed, or a lost replica's)."""
        if entries:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xack(stream, GROUP, *entries)
                pipe.xdel(stream, *entries)
                await pipe.execute()

    async def delete(self, client: aioredis.Redis, entries: list[tuple[str, bytes]]) -> None:
        """Delete entries nobody read, of a worker that no runner hosts any more."""
        for stream, entry in entries:
            await client.xdel(stream, entry)

    async def give_back(
        self, client: aioredis.Redis, stream: str, entry: bytes, fields: dict[bytes, bytes]
    ) -> None:
        """Requeue an entry read for a worker that started ending: the same fields go to
        the end of the stream, for another replica, and this copy is acknowledged."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
            pipe.xack(stream, GROUP, entry)
            pipe.xdel(stream, entry)
            await pipe.execute()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
