"""The embedding servers behind one embedder: least-loaded choice, a circuit breaker each, a run's retry budget.

A request goes to the server with the fewest requests in flight (ties in turn), never beyond `concurrency` per
server. A server failing `failures` times in a row is benched (its breaker opens) for a cool-down, after which
one request probes it: a success puts it back, a failure benches it for twice as long. While every server is
benched requests wait, up to `outage_seconds`; then they give up (their batches are set aside by the pipeline)
instead of hammering dead servers. A server answering vectors of another size, or lacking the model, is refused
for good: one embedder's vectors are always of one space. Also here: what a failed request means
(`classify_failure`), and whether servers answer at all (`ollama_reachable`, `reachability`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from mahavishnu_assets import telemetry
from mahavishnu_assets.errors import EmbeddingMismatchError, EmbeddingUnavailableError, MahavishnuError

logger = logging.getLogger(__name__)

# A benched server is probed at least this often, however often its probes failed.
COOLDOWN_CAP_SECONDS = 30.0
# The longest retry delay, as a multiple of the base: longer waits are the breaker's job (a server failing
# again and again is benched), and a final pass lasts as long as its slowest chain of retries.
RETRY_CAP_FACTOR = 8


def decorrelated_delay(base: float, previous: float, rng: random.Random) -> float:
    """The next retry delay: uniform between `base` and three times the previous one (`base` before the first
    retry), capped.

    Each request's delays wander on their own ("decorrelated jitter"), so requests that failed together do not
    come back together and land on the same failing slot of a server again."""
    if base <= 0:
        return 0.0
    return min(base * RETRY_CAP_FACTOR, rng.uniform(base, max(base, previous * 3)))


class ServerFailure(Exception):
    """A request failed in a way worth trying again (5xx, timeout, reset, refused connection)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def classify_failure(exc: BaseException, timeout: float) -> tuple[str | None, str | None]:
    """(metric kind, reason when worth retrying) of a failed request; (None, None) for a cancellation."""
    import httpx

    from mahavishnu_assets.ingest.ollama_client import ollama

    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code
        transient = not 400 <= status < 500
        return f"http_{status}", f"HTTP {status}: {str(exc.error)[:200]}" if transient else None
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout", f"Timeout: no whole answer within {timeout:g}s"
    detail = f"{exc.__class__.__name__}: {str(exc)[:200] or 'no detail'}"
    if isinstance(exc, ConnectionResetError | httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "reset", detail
    # ollama's client turns httpx's ConnectError into the builtin ConnectionError.
    if isinstance(exc, ConnectionError | httpx.ConnectError):
        return "connect", detail
    if isinstance(exc, httpx.TransportError | OSError):
        return "transport", detail
    if isinstance(exc, asyncio.CancelledError):
        return None, None
    return ("invalid_answer" if isinstance(exc, ValueError) else "error"), None


def uniform_size(raw: Any) -> int | None:
    """The size of every vector of an answer when they all have one, else None."""
    try:
        sizes = {len(v) for v in raw}
    except TypeError:
        return None
    return sizes.pop() if len(sizes) == 1 else None


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error that stopped a task group (ours first, then any but a cancellation), out of its group."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    ours = [e for e in leaves if isinstance(e, MahavishnuError)]
    others = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    return (ours or others or leaves or [group])[0]


async def all_of(*calls: Any) -> list[Any]:
    """Await every call in one task group: the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failure:
        raise first_error(failure) from None
    return [task.result() for task in tasks]


class RetryBudget:
    """The retries one embedder (one run) may spend: the larger of `minimum` and `ratio` x requests begun.

    Once spent, a failed request gives up at once (its batch is set aside for the final passes) instead of
    multiplying the load on servers in trouble. The final passes are outside the budget (`final`): each request
    there has its own attempts again."""

    def __init__(self, ratio: float, minimum: int) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.requests = 0
        self.spent = 0
        self.final = False

    @property
    def allowance(self) -> int:
        return max(self.minimum, int(self.ratio * self.requests))

    def take(self) -> bool:
        if not self.final and self.spent >= self.allowance:
            return False
        self.spent += 1
        return True


class CircuitBreaker:
    """Closed (used), open (benched until `open_until`), half-open (one probing request let through)."""

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.cooldown = cooldown
        self.consecutive = 0
        self.open_until: float | None = None
        self.probing = False

    @property
    def benched(self) -> bool:
        return self.open_until is not None

    def allows(self, now: float) -> bool:
        return self.open_until is None or (now >= self.open_until and not self.probing)

    def begin(self) -> None:
        if self.open_until is not None:
            self.probing = True

    def succeeded(self) -> None:
        self.consecutive = 0
        self.open_until = None
        self.probing = False
        self.cooldown = self.base_cooldown

    def failed(self, now: float) -> bool:
        """Count a failure; True when it (re)opens the breaker."""
        self.consecutive += 1
        if self.probing:
            self.probing = False
            self.cooldown = min(COOLDOWN_CAP_SECONDS, self.cooldown * 2)
            self.open_until = now + self.cooldown
            return True
        if self.open_until is None and self.consecutive >= self.threshold:
            self.open_until = now + self.cooldown
            return True
        return False

    def trip(self, now: float) -> None:
        """Open now, whatever the count (a server that did not answer its probe)."""
        self.probing = False
        self.open_until = now + self.cooldown

    def abandoned(self) -> None:
        """The probing request ended without an answer either way (cancelled): let another probe."""
        self.probing = False

    def probe_now(self, now: float) -> None:
        if self.open_until is not None:
            self.open_until = min(self.open_until, now)


@dataclass
class ServerStats:
    requests: int = 0
    failures: int = 0
    retries: int = 0
    texts: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass
class EmbedServer:
    """One base URL: its client, the requests in flight to it, its breaker and counters."""

    url: str
    breaker: CircuitBreaker
    label: str = ""
    client: Any = None
    in_flight: int = 0
    refused: str | None = None  # why it is never used again
    stats: ServerStats = field(default_factory=ServerStats)

    def __post_init__(self) -> None:
        self.label = telemetry.server_label(self.url)


class ServerPool:
    """The servers of one embedder, bound to the event loop that first uses it."""

    def __init__(
        self,
        urls: list[str],
        *,
        timeout: float,
        concurrency: int,
        failures: int,
        cooldown: float,
        outage_seconds: float,
    ) -> None:
        from mahavishnu_assets.ingest.ollama_client import make_client

        if not urls:
            raise ValueError("no embedding server given")
        self.servers = [EmbedServer(url, CircuitBreaker(failures, cooldown)) for url in urls]
        for server in self.servers:
            server.client = make_client(server.url, timeout)
        self.concurrency = concurrency
        self.outage_seconds = outage_seconds
        self._turn = 0
        self._wakeup = asyncio.Event()
        self._benched_since: float | None = None

    @property
    def live(self) -> list[EmbedServer]:
        return [s for s in self.servers if s.refused is None]

    def describe(self) -> str:
        return ", ".join(s.url for s in self.servers)

    # -- choosing --------------------------------------------------------------------------------------
    def _choose(self, now: float, avoid: EmbedServer | None) -> EmbedServer | None:
        ready = [
            s
            for s in self.live
            if s.breaker.allows(now) and s.in_flight < (1 if s.breaker.benched else self.concurrency)
        ]
        if avoid is not None and len(ready) > 1:
            # A retry goes elsewhere when it can: the server that just failed may fail it again.
            ready = [s for s in ready if s is not avoid]
        if not ready:
            return None
        least = min(s.in_flight for s in ready)
        tied = [s for s in ready if s.in_flight == least]
        order = {id(s): i for i, s in enumerate(self.servers)}
        # Ties in turn: the first tied server at or after the one after the last chosen.
        tied.sort(key=lambda s: (order[id(s)] - self._turn) % len(self.servers))
        chosen = tied[0]
        self._turn = (order[id(chosen)] + 1) % len(self.servers)
        return chosen

    def take(self, server: EmbedServer) -> None:
        server.in_flight += 1
        server.breaker.begin()

    async def acquire(self, avoid: EmbedServer | None = None) -> EmbedServer:
        """A server for one request (release it with `release`); waits while none can take one."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            live = self.live
            if not live:
                raise EmbeddingMismatchError(
                    "Every embedding server was refused: "
                    + "; ".join(f"{s.url} {s.refused}" for s in self.servers),
                    suggestion="Point OLLAMA_HOST at servers that all serve the configured model.",
                )
            server = self._choose(now, avoid)
            if server is not None:
                self.take(server)
                return server
            # Woken by a request ending, or when a benched server's cool-down is over.
            ends = [s.breaker.open_until for s in live if s.breaker.open_until is not None]
            deadline = min([e for e in ends if e > now], default=None)
            if all(s.breaker.benched for s in live):
                if self._benched_since is None:
                    self._benched_since = now
                    logger.warning(
                        "Every embedding server is benched after repeated failures (%s); waiting up to %gs",
                        self.describe(),
                        self.outage_seconds,
                    )
                give_up = self._benched_since + self.outage_seconds
                if now >= give_up:
                    raise EmbeddingUnavailableError(
                        f"Every embedding server has failed for {self.outage_seconds:g}s ({self.describe()})"
                    )
                deadline = give_up if deadline is None else min(deadline, give_up)
            wakeup = self._wakeup
            try:
                async with asyncio.timeout(None if deadline is None else deadline - now):
                    await wakeup.wait()
            except TimeoutError:
                pass

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def release(self, server: EmbedServer, outcome: str) -> None:
        """End a request: `ok` (the server answered), `failed` (error, timeout, reset) or `abandoned`."""
        server.in_flight -= 1
        if outcome == "ok":
            if server.breaker.benched:
                logger.warning("Embedding server %s answers again", server.url)
            server.breaker.succeeded()
            self._benched_since = None
        elif outcome == "failed":
            now = asyncio.get_running_loop().time()
            if server.breaker.failed(now):
                logger.warning(
                    "Embedding server %s benched for %.1fs after %d failures in a row",
                    server.url,
                    server.breaker.cooldown,
                    server.breaker.consecutive,
                )
        else:
            server.breaker.abandoned()
        self._notify()

    def bench(self, server: EmbedServer) -> None:
        """Bench `server` now (it did not answer its probe): requests go elsewhere until its cool-down ends."""
        server.breaker.trip(asyncio.get_running_loop().time())
        self._notify()

    def refuse(self, server: EmbedServer, reason: str) -> None:
        """Never use `server` again (another model or size behind it)."""
        if server.refused is None:
            server.refused = reason
            logger.error("Embedding server %s refused: %s", server.url, reason)
        self._notify()

    def new_pass(self) -> None:
        """Benched servers may be probed at once, and the wait for a benched pool starts again."""
        now = asyncio.get_running_loop().time()
        for server in self.servers:
            server.breaker.probe_now(now)
        self._benched_since = None
        self._notify()

    async def aclose(self) -> None:
        for server in self.servers:
            client, server.client = server.client, None
            if client is not None:
                await client.close()


def ollama_reachable(host: str | list[str], timeout: float = 1.5) -> str | None:
    """None when an Ollama server answers at `host` (at any one of several: a list, or URLs separated by
    commas), else why not."""
    from mahavishnu_assets.settings import split_hosts

    urls = split_hosts(host if isinstance(host, str) else ",".join(host))
    reasons = []
    for url in urls:
        why = _reachable(url, timeout)
        if why is None:
            return None
        reasons.append(why if len(urls) == 1 else f"{url}: {why}")
    return "; ".join(reasons) or "no server given"


def reachability(urls: list[str], timeout: float = 1.5) -> dict[str, str | None]:
    """Each server's answer to `ollama_reachable` (None: an Ollama server answers), asked all at once."""
    from concurrent.futures import ThreadPoolExecutor

    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        answers = list(pool.map(lambda url: _reachable(url, timeout), urls))
    return dict(zip(urls, answers, strict=True))


def _reachable(url: str, timeout: float) -> str | None:
    import httpx

    try:
        response = httpx.get(f"{url}/api/version", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        version = response.json().get("version")
    except (ValueError, AttributeError):
        version = None
    # Any web server answers 200; only Ollama says which version it is.
    return None if isinstance(version, str) else "not an Ollama server: /api/version names no version"
