"""Signing benchmark: what signed messages add to each message between runners.

A network bus with a secret signs every message it sends and verifies every message it
receives, so one message costs one ``Signer.sign`` plus one ``Verifier.verify``. This
script measures that pair against a floor measured in the same run: ``json.dumps`` then
``json.loads`` of the same envelope, the least a bus does with a message anyway.

Envelopes: a job request as the Redis bus sends it (a ``msg`` envelope holding a
``JobRequestMessage`` with a small payload and two headers, a few hundred bytes), and the
same with a 64 KiB payload. For each, and interleaved in blocks so that a drift of the
machine's speed moves both sides alike, it times:

- floor: ``json.loads(json.dumps(envelope).encode())``;
- sign: ``signer.sign(body, destination)``;
- verify: ``verifier.verify(signed, destination)``, with a fresh nonce each time (every
  message signed beforehand, outside the timing) so the replay cache does its real work;
- sign+verify, the figure a message pays, and its ratio to the floor.

Then what signing adds to a job over Redis: a job is two messages (its request and its
response), each signed once and verified once. With ``redis-server`` on the PATH, the
script starts one on a free port and measures the round trip of a raw redis-py pub/sub
ping-pong of the small envelope's signed size (two clients in this process, the least a
job round trip over Redis costs), in blocks interleaved with sign+verify blocks, and
prints 2 x sign+verify as a share of it; goal at most 10%. Without ``redis-server`` it
uses a nominal 100 us round trip instead, and says so.

Each figure is the median of the blocks' per-message means, after a warm-up block.

Run: ``python bench/signing.py`` (about 20 s on a 2-CPU machine) or ``--quick`` (about
5 s). It is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from framework.bus.messages import JobRequestMessage
from framework.bus.network import Signer, SigningKeys, Verifier

NOMINAL_ROUND_TRIP = 100e-6
"""A Redis job round trip on a fast machine, used when ``redis-server`` is not found."""
GOAL_SHARE = 0.10
SENDER = "runner-3f2a9c1d"


def envelope(payload_bytes: int) -> dict[str, Any]:
    """A ``msg`` envelope holding a job request, as the Redis bus sends one."""
    message = JobRequestMessage.build(
        source=SENDER,
        target="reverse",
        job_id="75df824542b54d51-1",
        name=None,
        payload={"text": "x" * payload_bytes},
        headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tenant": "acme"},
    )
    return {"kind": "msg", "origin": SENDER, "message": message.model_dump()}


TO = "framework:runner:runner-b"
"""The destination the messages are signed for: a runner's channel."""


class Signing:
    """One signer and one verifier sharing keys (a rotated pair, as in a rotation)."""

    def __init__(self) -> None:
        keys = SigningKeys(["a-long-and-random-secret-0001", "the-previous-secret-00002"])
        self.signer = Signer(SENDER, keys)
        self.verifier = Verifier(keys, name="runner-b")

    def sign(self, body: bytes, count: int) -> float:
        """Seconds per ``sign``."""
        sign = self.signer.sign
        start = time.perf_counter()
        for _ in range(count):
            sign(body, TO)
        return (time.perf_counter() - start) / count

    def verify(self, body: bytes, count: int) -> float:
        """Seconds per ``verify`` of a fresh message (signed outside the timing)."""
        signed = [self.signer.sign(body, TO) for _ in range(count)]
        verify = self.verifier.verify
        start = time.perf_counter()
        for one in signed:
            if verify(one, TO) is None:
                raise RuntimeError(f"a signed message did not verify: {self.verifier.rejections}")
        return (time.perf_counter() - start) / count


def json_floor(data: dict[str, Any], count: int) -> float:
    """Seconds per ``json.loads(json.dumps(data).encode())``."""
    start = time.perf_counter()
    for _ in range(count):
        json.loads(json.dumps(data).encode())
    return (time.perf_counter() - start) / count


def measure(payload_bytes: int, count: int, blocks: int) -> dict[str, float]:
    """Floor, sign and verify of one envelope, interleaved in blocks."""
    data = envelope(payload_bytes)
    body = json.dumps(data).encode()
    signing = Signing()
    results: dict[str, list[float]] = {"floor": [], "sign": [], "verify": []}
    for block in range(blocks + 1):
        figures = {
            "floor": json_floor(data, count),
            "sign": signing.sign(body, count),
            "verify": signing.verify(body, count),
        }
        if block:  # the first block warms up
            for name, value in figures.items():
                results[name].append(value)
    medians = {name: statistics.median(values) for name, values in results.items()}
    medians["both"] = medians["sign"] + medians["verify"]
    medians["bytes"] = len(body)
    return medians


@contextlib.contextmanager
def redis_server() -> Iterator[int | None]:
    """The port of a fresh redis-server, or None when there is none on the PATH."""
    if shutil.which("redis-server") is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


async def redis_against_signing(
    port: int, body: bytes, rounds: int, count: int, blocks: int
) -> tuple[float, float]:
    """Median raw pub/sub round trip and median sign+verify, interleaved in blocks."""
    import redis.asyncio as aioredis

    ping, pong = aioredis.Redis(port=port), aioredis.Redis(port=port)
    listen_ping, listen_pong = ping.pubsub(), pong.pubsub()
    await listen_ping.subscribe("pong")
    await listen_pong.subscribe("ping")

    async def echo() -> None:
        async for message in listen_pong.listen():
            if message["type"] == "message":
                await pong.publish("pong", message["data"])

    async def once() -> None:
        await ping.publish("ping", payload)
        while True:
            message = await listen_ping.get_message(timeout=10)
            if message is not None and message["type"] == "message":
                return

    signing = Signing()
    payload = signing.signer.sign(body, TO)
    echoing = asyncio.create_task(echo())
    trips: list[float] = []
    costs: list[float] = []
    try:
        for block in range(blocks + 1):
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                await once()
                samples.append(time.perf_counter() - start)
            cost = signing.sign(body, count) + signing.verify(body, count)
            if block:
                trips.append(statistics.median(samples))
                costs.append(cost)
    finally:
        echoing.cancel()
        await ping.aclose()
        await pong.aclose()
    return statistics.median(trips), statistics.median(costs)


def report(label: str, f: dict[str, float]) -> None:
    print(f"\n{label} ({int(f['bytes'])} bytes)")
    print(f"  floor json.dumps+loads  {f['floor'] * 1e6:8.2f} us")
    print(f"  sign                    {f['sign'] * 1e6:8.2f} us")
    print(f"  verify                  {f['verify'] * 1e6:8.2f} us")
    both = f["both"]
    print(f"  sign+verify             {both * 1e6:8.2f} us  = {both / f['floor']:.2f}x the floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and smaller blocks")
    args = parser.parse_args()
    count, blocks, rounds = (2_000, 5, 200) if args.quick else (10_000, 9, 500)
    print(f"signing: {blocks} blocks of {count} messages each (median of the blocks)")
    small = measure(20, count, blocks)
    report("job request", small)
    report("job request, 64 KiB payload", measure(64 * 1024, max(200, count // 50), blocks))

    body = json.dumps(envelope(20)).encode()
    with redis_server() as port:
        if port is None:
            trip, cost = NOMINAL_ROUND_TRIP, small["both"]
            where = f"a nominal {trip * 1e6:.0f} us round trip (redis-server not found)"
        else:
            trip, cost = asyncio.run(redis_against_signing(port, body, rounds, count, blocks))
            where = f"the raw redis-py pub/sub round trip of this run, {trip * 1e6:.0f} us"
    share = 2 * cost / trip
    mark = "PASS" if share <= GOAL_SHARE else "MISS"
    print(
        f"\na job signs and verifies 2 messages: 2 x {cost * 1e6:.2f} us = {share:.1%} of "
        f"{where}; goal at most {GOAL_SHARE:.0%}  {mark}"
    )


if __name__ == "__main__":
    main()
