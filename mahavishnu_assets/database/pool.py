"""The asyncpg pool: pgvector codec on every connection, health checks, statistics, typed errors."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import asyncpg

from mahavishnu_assets import telemetry
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.database.vectors import register_vector_codec
from mahavishnu_assets.errors import (
    DatabaseMissingError,
    DatabaseUnavailableError,
    PoolExhaustedError,
    redact,
)

logger = logging.getLogger(__name__)

# Errors that mean "the server or the connection went away", as opposed to a bad statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
)


@dataclass(frozen=True)
class PoolConfig:
    min_size: int = 1
    max_size: int = 10
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    acquire_timeout: float = 30.0
    health_interval: float = 30.0
    application_name: str = "mahavishnu"


@dataclass
class PoolStats:
    size: int
    idle: int
    in_use: int
    min_size: int
    max_size: int
    acquires: int
    waits: int
    waiting_now: int
    peak_in_use: int
    acquire_p50_ms: float
    acquire_p95_ms: float
    failures: int
    healthy: bool
    last_health_check_age_seconds: float | None
    # Added for pool monitoring (memory.monitoring): how long waiting acquires waited, how busy the pool is.
    wait_p95_ms: float = 0.0
    wait_max_ms: float = 0.0
    utilisation: float = 0.0
    avg_utilisation: float = 0.0
    busy_seconds: float = 0.0
    open_seconds: float = 0.0
    reconnects: int = 0
    resizes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    healthy: bool
    latency_ms: float
    server_version: str | None = None
    error: str | None = None


@dataclass
class _Counters:
    acquires: int = 0
    waits: int = 0
    waiting_now: int = 0
    in_use: int = 0
    peak_in_use: int = 0
    failures: int = 0
    acquire_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    # Integral of connections in use over time, for time-weighted utilisation.
    busy_seconds: float = 0.0
    last_change: float = field(default_factory=time.monotonic)
    opened_at: float = field(default_factory=time.monotonic)
    reconnects: int = 0
    resizes: int = 0

    def set_in_use(self, value: int) -> None:
        now = time.monotonic()
        self.busy_seconds += self.in_use * (now - self.last_change)
        self.last_change = now
        self.in_use = value


async def _init_connection(conn: asyncpg.Connection, vector_schema: str | None = None) -> str | None:
    """Codecs every connection gets; returns the vector extension's schema for the next connection."""
    schema = await register_vector_codec(conn, vector_schema)
    await conn.set_type_codec("jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog")
    return schema


def _json_dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def _json_loads(value: str) -> Any:
    import json

    return json.loads(value)


def _percentiles(values: list[float], *percents: int) -> list[float]:
    """The given percentiles (0-100) of the values, interpolated between samples; 0.0 for no samples."""
    if len(values) < 2:
        return [values[0] if values else 0.0] * len(percents)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [cuts[p - 1] for p in percents]


def connection_error(target: ConnectTarget, exc: BaseException) -> DatabaseUnavailableError:
    """Translate a driver error into ours, with every secret removed."""
    detail = redact(f"{exc.__class__.__name__}: {exc}", target.secrets())
    if isinstance(exc, asyncpg.exceptions.TooManyConnectionsError):
        return PoolExhaustedError(f"{target.describe()} has no connection slots left ({detail})")
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return DatabaseMissingError(f"{target.describe()} does not exist ({detail})")
    if isinstance(
        exc,
        asyncpg.exceptions.InvalidPasswordError | asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    ):
        return DatabaseUnavailableError(
            f"Authentication failed for {target.describe()}",
            suggestion="Check the user and password in MAHAVISHNU_DATABASE_URL or MAHAVISHNU_POSTGRES__PASSWORD.",
        )
    return DatabaseUnavailableError(f"Cannot reach {target.describe()} ({detail})")


async def connect(target: ConnectTarget, *, timeout: float = 10.0) -> asyncpg.Connection:
    """One connection outside the pool (migrations, admin work)."""
    try:
        conn = await asyncpg.connect(**target.connect_kwargs(), timeout=timeout)
    except Exception as exc:
        raise connection_error(target, exc) from None
    await _init_connection(conn)
    return conn


class Database:
    """A small asyncpg pool bound to the event loop that opened it."""

    def __init__(self, target: ConnectTarget, config: PoolConfig | None = None) -> None:
        self.target = target
        self.config = config or PoolConfig()
        self._pool: asyncpg.Pool | None = None
        self._counters = _Counters()
        self._healthy = False
        self._last_check: float | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        # Where the vector extension lives, found by the first connection that sees it.
        self._vector_schema: str | None = None

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> Database:
        self._pool = await self._create_pool(self.config)
        self._healthy = True
        self._last_check = time.monotonic()
        self._counters.opened_at = self._counters.last_change = time.monotonic()
        return self

    async def _create_pool(self, cfg: PoolConfig) -> asyncpg.Pool:
        try:
            return await asyncpg.create_pool(
                **self.target.connect_kwargs(),
                min_size=cfg.min_size,
                max_size=cfg.max_size,
                timeout=cfg.connect_timeout,
                command_timeout=cfg.command_timeout,
                init=self._prepare_connection,
                server_settings={"application_name": cfg.application_name},
            )
        except Exception as exc:
            raise connection_error(self.target, exc) from None

    async def _prepare_connection(self, conn: asyncpg.Connection) -> None:
        self._vector_schema = await _init_connection(conn, self._vector_schema)

    async def adjust_pool_size(
        self, *, min_size: int | None = None, max_size: int | None = None
    ) -> PoolConfig:
        """Resize the open pool: new acquires use a new pool, the old one closes once its connections return."""
        min_size = self.config.min_size if min_size is None else min_size
        max_size = self.config.max_size if max_size is None else max_size
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"Need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}")
        if (min_size, max_size) == (self.config.min_size, self.config.max_size):
            return self.config
        config = replace(self.config, min_size=min_size, max_size=max_size)
        new_pool = await self._create_pool(config)
        old, self._pool, self.config = self._pool, new_pool, config
        self._counters.resizes += 1
        if old is not None:
            # Connections still checked out return to the old pool (connection() keeps a reference to it).
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        return config

    async def _retire(self, pool: asyncpg.Pool) -> None:
        try:
            await asyncio.wait_for(pool.close(), timeout=max(self.config.command_timeout, 10))
        except (TimeoutError, asyncio.CancelledError):
            pool.terminate()

    async def close(self) -> None:
        await self.stop_health_loop()
        for task in list(self._retired):
            task.cancel()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseUnavailableError("The connection pool is not open", suggestion="Open it first.")
        return self._pool

    async def refresh_codecs(self) -> None:
        """After migrations create the vector type, let new connections register its codec."""
        await self.pool.expire_connections()

    # -- connections -------------------------------------------------------
    @asynccontextmanager
    async def connection(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        pool = self.pool
        c = self._counters
        started = time.perf_counter()
        # Counted by demand, not by pool size: acquires started together all see an idle pool.
        waited = c.in_use + c.waiting_now >= self.config.max_size
        if waited:
            c.waits += 1
            telemetry.pool_waits.add(1)
        c.waiting_now += 1
        try:
            conn = await pool.acquire(timeout=timeout or self.config.acquire_timeout)
        except TimeoutError:
            self._failed("timeout")
            raise PoolExhaustedError(
                f"No database connection became free within {timeout or self.config.acquire_timeout:.0f}s "
                f"(pool max {self.config.max_size})"
            ) from None
        except asyncpg.exceptions.TooManyConnectionsError as exc:
            self._failed("too_many_connections")
            raise connection_error(self.target, exc) from None
        except CONNECTION_ERRORS as exc:
            self._failed("connection")
            self._healthy = False
            raise connection_error(self.target, exc) from None
        finally:
            c.waiting_now -= 1
        if conn.is_closed():
            # The server went away while the connection sat idle (restart, pg_terminate_backend): the pool
            # reconnects on the next acquire, so trade this one in rather than fail the caller.
            c.reconnects += 1
            await pool.release(conn)
            try:
                conn = await pool.acquire(timeout=timeout or self.config.acquire_timeout)
            except Exception as exc:
                self._failed("reconnect")
                self._healthy = False
                raise connection_error(self.target, exc) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        telemetry.pool_acquire_duration.record(elapsed_ms / 1000)
        c.acquires += 1
        c.acquire_ms.append(elapsed_ms)
        if waited:
            c.wait_ms.append(elapsed_ms)
        c.set_in_use(c.in_use + 1)
        telemetry.pool_in_use.add(1)
        c.peak_in_use = max(c.peak_in_use, c.in_use)
        try:
            # A pool proxy behaves as a Connection; the stubs type it apart.
            yield conn  # type: ignore[misc]
        except CONNECTION_ERRORS:
            self._healthy = False
            raise
        finally:
            c.set_in_use(c.in_use - 1)
            telemetry.pool_in_use.add(-1)
            await pool.release(conn)

    def _failed(self, kind: str) -> None:
        self._counters.failures += 1
        telemetry.pool_failures.add(1, {"kind": kind})

    @asynccontextmanager
    async def transaction(self, **kwargs: Any) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction(**kwargs):
            yield conn

    # -- health --------------------------------------------------------------
    async def health_check(self, timeout: float = 5.0) -> HealthReport:
        started = time.perf_counter()
        try:
            async with self.connection(timeout=timeout) as conn:
                version = await asyncio.wait_for(conn.fetchval("SHOW server_version"), timeout=timeout)
        except Exception as exc:
            self._healthy = False
            self._last_check = time.monotonic()
            return HealthReport(False, (time.perf_counter() - started) * 1000, error=redact(str(exc)))
        self._healthy = True
        self._last_check = time.monotonic()
        return HealthReport(True, (time.perf_counter() - started) * 1000, server_version=str(version))

    def start_health_loop(self, interval: float | None = None) -> None:
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.get_running_loop().create_task(
                self._health_loop(interval or self.config.health_interval)
            )

    async def stop_health_loop(self) -> None:
        task, self._health_task = self._health_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _health_loop(self, interval: float) -> None:
        while True:
            report = await self.health_check()
            if not report.healthy:
                logger.warning("Database health check failed: %s", report.error)
                # Drop connections to a restarted server so the next acquire opens fresh ones.
                if self._pool is not None:
                    await self._pool.expire_connections()
            await asyncio.sleep(interval if report.healthy else min(interval, 1.0))

    def stats(self) -> PoolStats:
        c = self._counters
        pool = self._pool
        size = pool.get_size() if pool else 0
        idle = pool.get_idle_size() if pool else 0
        acquire_p50, acquire_p95 = _percentiles(list(c.acquire_ms), 50, 95)
        waits = list(c.wait_ms)
        (wait_p95,) = _percentiles(waits, 95)
        now = time.monotonic()
        busy = c.busy_seconds + c.in_use * (now - c.last_change)
        open_seconds = max(now - c.opened_at, 1e-9)
        return PoolStats(
            size=size,
            idle=idle,
            in_use=c.in_use,
            min_size=self.config.min_size,
            max_size=self.config.max_size,
            acquires=c.acquires,
            waits=c.waits,
            waiting_now=c.waiting_now,
            peak_in_use=c.peak_in_use,
            acquire_p50_ms=round(acquire_p50, 3),
            acquire_p95_ms=round(acquire_p95, 3),
            failures=c.failures,
            healthy=self._healthy,
            last_health_check_age_seconds=None
            if self._last_check is None
            else round(time.monotonic() - self._last_check, 3),
            wait_p95_ms=round(wait_p95, 3),
            wait_max_ms=round(max(waits, default=0.0), 3),
            utilisation=round(c.in_use / self.config.max_size, 4),
            avg_utilisation=round(busy / (open_seconds * self.config.max_size), 4),
            busy_seconds=round(busy, 3),
            open_seconds=round(open_seconds, 3),
            reconnects=c.reconnects,
            resizes=c.resizes,
        )
