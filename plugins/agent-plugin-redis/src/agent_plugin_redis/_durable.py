"""Durable jobs in Redis: the atomic steps that make a worker's stream at-least-once.

A durable request is a stream entry with two more fields than a plain one: ``d``, its
``max_attempts``, and ``n``, the job's name (for ``framework jobs list``). It stays in the
stream, and in the group's pending list under the consumer that read it, until its terminal
response is written, and the writing is one Lua script (``finish``) that first checks the
entry is still pending under that consumer: a runner that was thought lost (stopped, cut
off) and finishes late writes nothing, since a replica claimed the entry meanwhile. So the
requester gets exactly one terminal response.

When a runner is lost, a replica runs ``claim`` on the lost consumer: it moves that
consumer's durable entries to itself in one step (two replicas cannot both take one), and
Redis counts the deliveries, which is ``job.attempt``. An entry delivered more than
``max_attempts`` times is dead: it moves to the dead-letter hash (``<ns>:dead``, by job
id) and its requester is answered ERROR.

A response to a request with an ``idempotency-key`` header is kept, for
``idempotency_ttl`` seconds, under a key made from the worker, the job's name and that
key, and a repeated request is answered from there (see ``RedisBus``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from agent_plugin_redis._publish_line import PublishLine
from agent_plugin_redis._streams import GROUP

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript


IDEMPOTENCY_HEADER = "idempotency-key"
_CLAIM_AT_ONCE = 1000
_STORED = ("completed", "failed")
"""The statuses kept for an idempotency key: an ERROR or a cancel may be retried."""

# KEYS: stream, and the idempotency key when there is one (an ACL user limited to the
# namespace's keys may not name any other key, not even "")
# ARGV: group, entry, consumer, channel, response, stored response, idempotency ttl
_FINISH = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('PUBLISH', ARGV[4], ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if KEYS[2] and ARGV[6] ~= '' then
  redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[7])
end
return 1
"""

# KEYS: stream; ARGV: group, lost consumer, new consumer, count
# Returns {entry, deliveries, fields...} for each durable entry moved.
_CLAIM = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[4]), ARGV[2])
local out = {}
for _, e in ipairs(p) do
  local found = redis.call('XRANGE', KEYS[1], e[1], e[1])
  local durable = false
  if #found > 0 then
    local f = found[1][2]
    for i = 1, #f, 2 do if f[i] == 'd' then durable = true end end
  end
  if durable then
    local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, e[1])
    if #c > 0 and c[1] then
      table.insert(out, {e[1], e[4] + 1, c[1][2]})
    end
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A durable entry moved to this runner: run it again as attempt ``attempt``."""

    stream: str
    entry: bytes
    attempt: int
    fields: dict[bytes, bytes]

    @property
    def max_attempts(self) -> int:
        return max_attempts_of(self.fields)


def durable_fields(max_attempts: int, name: str | None) -> dict[bytes, bytes]:
    """The fields a durable request's entry has on top of ``m`` and ``j``."""
    return {b"d": str(max_attempts).encode(), b"n": (name or "").encode()}


def max_attempts_of(fields: dict[bytes, bytes]) -> int:
    """An entry's ``max_attempts``; 0 for a plain entry (or an unreadable field)."""
    raw = fields.get(b"d")
    try:
        return max(int(raw), 1) if raw is not None else 0
    except ValueError:
        return 0


def idempotency_key(namespace: str, worker: str, name: str | None, key: str) -> str:
    """Where the response to a request with idempotency key ``key`` is kept."""
    digest = hashlib.sha256(json.dumps([worker, name, key]).encode()).hexdigest()
    return f"{namespace}:idem:{digest}"


def stored_response(status: str, response: dict[str, Any]) -> str:
    """What is kept for an idempotency key ("" when ``status`` is not worth keeping)."""
    return json.dumps({"status": status, "response": response}) if status in _STORED else ""


def read_stored(raw: bytes | None) -> tuple[str, dict[str, Any]] | None:
    """``(status, response)`` kept for an idempotency key, or None."""
    if not raw:
        return None
    try:
        kept = json.loads(raw)
        status, response = kept["status"], kept["response"]
    except (ValueError, KeyError, TypeError):
        return None
    if status not in _STORED or not isinstance(response, dict):
        return None
    return status, response


class DurableScripts:
    """The Lua scripts (redis-py's ``Script`` objects keep their text and hash): sent as
    EVALSHA, and as the script itself when Redis lost it (restarted without it, or its
    scripts were flushed)."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.namespace = namespace
        self.dead = f"{namespace}:dead"
        self._finish = client.register_script(_FINISH)
        self._claim = client.register_script(_CLAIM)

    async def finish(
        self,
        via: PublishLine | aioredis.Redis,
        *,
        stream: str,
        entry: bytes,
        consumer: str,
        channel: str,
        response: bytes,
        idem_key: str = "",
        stored: str = "",
        idem_ttl: int = 0,
    ) -> bool:
        """Publish the terminal response, acknowledge and delete the entry, and keep
        ``stored`` under ``idem_key``, if the entry is still ``consumer``'s; False (nothing
        done) when it is not: a replica took it over, or it was dropped. ``via``: the
        session's line (pipelined with the job's updates), or the client (a pooled
        connection) for a big response."""
        keys = [stream, idem_key] if idem_key else [stream]
        args: list[Any] = [GROUP, entry, consumer, channel, response, stored, idem_ttl]
        done = await _run(via, self._finish, keys, args)
        return bool(done)

    async def claim(
        self, client: aioredis.Redis, stream: str, lost: str, consumer: str
    ) -> list[Claimed]:
        """Move the durable entries pending under consumer ``lost`` to ``consumer``."""
        rows: Any = await _run(
            client, self._claim, [stream], [GROUP, lost, consumer, _CLAIM_AT_ONCE]
        )
        return [
            Claimed(stream, bytes(entry), int(deliveries), _pairs(flat))
            for entry, deliveries, flat in rows
        ]

    async def bury(self, client: aioredis.Redis, claimed: Claimed, worker: str, error: str) -> None:
        """Move a claimed entry to the dead-letter hash: kept there with what ``framework
        jobs retry`` needs to queue it again; acknowledged and deleted from its stream."""
        fields = claimed.fields
        job_id = fields.get(b"j", b"").decode(errors="replace")
        record = {
            "job_id": job_id,
            "worker": worker,
            "name": fields.get(b"n", b"").decode(errors="replace") or None,
            "attempts": claimed.attempt - 1,
            "error": error,
            "at": time.time(),
            "fields": {k.decode(errors="replace"): v.hex() for k, v in fields.items()},
        }
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(self.dead, job_id, json.dumps(record))
            pipe.xack(claimed.stream, GROUP, claimed.entry)
            pipe.xdel(claimed.stream, claimed.entry)
            await pipe.execute()


async def _run(
    via: PublishLine | aioredis.Redis, script: AsyncScript, keys: list[str], args: list[Any]
) -> Any:
    """``script`` through the session's line or a pooled connection: ``EVALSHA``, and the
    script itself (``EVAL``) when Redis does not have it (it restarted, or its scripts were
    flushed). Never ``SCRIPT LOAD``, which the documented ACL user may not run."""
    call: Any = via.call if isinstance(via, PublishLine) else via.execute_command
    try:
        return await call("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await call("EVAL", script.script, len(keys), *keys, *args)


def _pairs(flat: Iterable[Any]) -> dict[bytes, bytes]:
    items = list(flat)
    return {bytes(items[i]): bytes(items[i + 1]) for i in range(0, len(items) - 1, 2)}
