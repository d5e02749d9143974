"""The server pool's parts as plain objects: retry delays, the run's budget, the breaker, the choice of server."""

from __future__ import annotations

import asyncio
import random

import pytest

from mahavishnu_assets.errors import EmbeddingMismatchError, EmbeddingUnavailableError
from mahavishnu_assets.ingest.servers import (
    COOLDOWN_CAP_SECONDS,
    RETRY_CAP_FACTOR,
    CircuitBreaker,
    RetryBudget,
    ServerPool,
    decorrelated_delay,
)
from mahavishnu_assets.settings import split_hosts


def test_decorrelated_delays_wander_within_their_bounds() -> None:
    rng = random.Random(1)
    delays: list[float] = []
    previous = 0.0
    for _ in range(200):
        previous = decorrelated_delay(0.5, previous, rng)
        delays.append(previous)
    assert all(0.5 <= d <= 0.5 * RETRY_CAP_FACTOR for d in delays)
    assert max(delays) == 0.5 * RETRY_CAP_FACTOR  # reached the cap...
    assert len({round(d, 6) for d in delays}) > 100  # ...yet never in step
    # Requests failing together come back apart, from their first retry on.
    firsts = [decorrelated_delay(0.5, 0.5, rng) for _ in range(50)]
    assert all(0.5 <= d <= 1.5 for d in firsts) and len(set(firsts)) == 50
    assert decorrelated_delay(0.0, 5.0, rng) == 0.0


def test_the_budget_grows_with_the_requests_and_the_final_passes_are_outside_it() -> None:
    budget = RetryBudget(ratio=0.1, minimum=2)
    assert [budget.take() for _ in range(3)] == [True, True, False]
    budget.requests = 50
    assert budget.allowance == 5
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    budget.final = True
    assert all(budget.take() for _ in range(100))


def test_the_breaker_benches_probes_and_doubles_its_cool_down() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=1.0)
    assert not breaker.failed(0.0) and not breaker.failed(0.1)
    assert breaker.allows(0.2)
    assert breaker.failed(0.2)  # the third in a row
    assert breaker.benched and not breaker.allows(1.0)
    assert breaker.allows(1.3)  # cool-down over: one probe
    breaker.begin()
    assert not breaker.allows(1.3)
    assert breaker.failed(1.4)  # the probe failed: twice as long
    assert breaker.open_until == pytest.approx(3.4)
    breaker.begin()
    breaker.succeeded()
    assert not breaker.benched and breaker.cooldown == 1.0 and breaker.consecutive == 0
    for _ in range(20):
        breaker.probing = True
        breaker.failed(0.0)
    assert breaker.cooldown == COOLDOWN_CAP_SECONDS


def test_hosts_are_split_normalized_and_deduplicated() -> None:
    assert split_hosts(" gpu-1:11434, http://gpu-2:11434/ ,,http://gpu-1:11434") == [
        "http://gpu-1:11434",
        "http://gpu-2:11434",
    ]
    with pytest.raises(ValueError, match="http"):
        split_hosts("http://ok:1,ftp://bad")


def pool(urls: list[str], **options: float) -> ServerPool:
    values = {"timeout": 1.0, "concurrency": 2, "failures": 2, "cooldown": 0.05, "outage_seconds": 5.0}
    values.update(options)
    return ServerPool(urls, **values)  # type: ignore[arg-type]


async def test_the_least_loaded_server_is_chosen_ties_in_turn_and_never_beyond_concurrency() -> None:
    servers = pool(["http://a:1", "http://b:1", "http://c:1"])
    try:
        chosen = [await servers.acquire() for _ in range(6)]
        # Ties in turn: a, b, c, then a, b, c again; each now holds 2 = its concurrency.
        assert [s.url[7] for s in chosen] == ["a", "b", "c", "a", "b", "c"]
        servers.release(chosen[1], "ok")
        servers.release(chosen[4], "ok")
        assert [(await servers.acquire()).url for _ in range(2)] == ["http://b:1"] * 2  # the only room
        waiting = asyncio.create_task(servers.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # every server is full: wait for a request to end
        servers.release(chosen[0], "ok")
        assert (await asyncio.wait_for(waiting, 1)).url == "http://a:1"
        # A retry goes elsewhere when it can, even to a busier server.
        servers.release(chosen[3], "ok")
        servers.release(chosen[2], "ok")
        servers.release(chosen[5], "ok")
        assert (await servers.acquire(avoid=servers.servers[2])).url == "http://a:1"
        assert (await servers.acquire(avoid=servers.servers[2])).url == "http://c:1"  # no other room
    finally:
        await servers.aclose()


async def test_a_failing_server_is_benched_and_an_outage_gives_up() -> None:
    servers = pool(["http://a:1", "http://b:1"], outage_seconds=0.3, cooldown=10.0)
    try:
        a, b = servers.servers
        for _ in range(2):
            servers.take(a)
            servers.release(a, "failed")
        assert a.breaker.benched
        assert [(await servers.acquire()).url for _ in range(2)] == ["http://b:1"] * 2
        servers.release(b, "failed")
        servers.release(b, "failed")
        assert b.breaker.benched
        with pytest.raises(EmbeddingUnavailableError, match="Every embedding server has failed"):
            await servers.acquire()
        # A final pass probes benched servers at once.
        servers.new_pass()
        probe = await asyncio.wait_for(servers.acquire(), 1)
        assert probe.breaker.probing
        servers.release(probe, "ok")
        assert not probe.breaker.benched
        servers.refuse(a, "answers 32-dimension vectors")
        servers.refuse(b, "does not have the model")
        with pytest.raises(EmbeddingMismatchError, match="Every embedding server was refused"):
            await servers.acquire()
    finally:
        await servers.aclose()
