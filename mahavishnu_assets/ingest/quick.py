"""The quick answer of `mahavishnu ingest` for a repository proven unchanged.

A re-ingest of a clean git work tree whose HEAD a run proved stored costs `git status` and one query; the rest
of such a command is loading Python: the settings models (pydantic), the pool and migration machinery, about
half of its wall time. So when a full `mahavishnu ingest` finds the repository proven unchanged, it writes what
it resolved into a small file named by a fingerprint of every input the answer depends on: the MAHAVISHNU_*,
OLLAMA_* and PG* environment, HOME, the working folder, the settings files' bytes, the interpreter, the stat of
every file of this package and of the migrations, and the command's path and name. The next command with the
same inputs reads that file instead of the settings, checks git, and asks the database in one query whether the
repository's unchanged key, its last run, the embedding space and the applied migrations are still what the full
path saw; only then does it record the run, with the same report the full path would give. Anything else (no
file, another input, a dirty tree, a key cleared by a writing run, an error of any kind) declines, and the full
path runs as before.

Never written for a configuration with a password (in the environment or the settings), nor for the `auto`
embedder (its choice depends on whether Ollama answers). The files hold no secret: connection parameters
without a password, the repository's name, root and key facts. They live in `$XDG_CACHE_HOME/mahavishnu/quick`
(default `~/.cache`); deleting them only costs the next command its speed. `ingest.quick_answers: false` turns
the writing off. No pydantic here, on purpose.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mahavishnu_assets.ingest.names import default_repo_name, is_allowed
from mahavishnu_assets.ingest.result import IngestResult
from mahavishnu_assets.locations import ENV_PREFIX, PACKAGE_DIR, SETTINGS_FILES, migrations_dir, settings_dir

logger = logging.getLogger(__name__)

FORMAT = 2
# Environment that settings, the embedder or the driver read: a change in any of it declines the answer.
_ENV_PREFIXES = (ENV_PREFIX, "OLLAMA_", "PG")
_ENV_NAMES = ("HOME",)
# Variables whose value may be a password: with one set, no answer is written or read (see `_secret_set`).
_SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "PASSFILE")
_MAX_FILES = 256  # answers kept; the oldest go first
QUICK_CONNECT_SECONDS = 2.0

# One round trip: the repository's proof and last run, its space and whether another space of the same model
# exists, and the applied migrations as the full path checked them (versions and checksums of their up files).
_STATE_SQL = """
    SELECT r.id, r.root_path, r.unchanged_key, r.space_id, last.status, last.stats::text AS stats,
           s.provider, s.model, s.dimensions,
           (SELECT count(*) FROM mahavishnu.embedding_spaces o
            WHERE o.provider = s.provider AND o.model = s.model) AS same_model,
           (SELECT md5(string_agg(m.version::text || ':' || m.checksum, ',' ORDER BY m.version))
            FROM public.mahavishnu_schema_migrations m) AS migrations
    FROM mahavishnu.repositories r
    LEFT JOIN LATERAL (SELECT i.status, i.stats FROM mahavishnu.ingest_runs i
                       WHERE i.repo_id = r.id ORDER BY i.id DESC LIMIT 1) last ON true
    LEFT JOIN mahavishnu.embedding_spaces s ON s.id = r.space_id
    WHERE r.name = $1
"""


def unchanged_key(facts: dict[str, Any], head: str) -> str:
    """What a clean work tree at `head` must match for a re-ingest to have nothing to read; `facts` are the
    root, the chunking configuration, the space and the discovery settings (`pipeline.key_facts`)."""
    return hashlib.sha256(json.dumps({**facts, "head": head}, sort_keys=True).encode()).hexdigest()


def answers_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if "HOME" in os.environ else ""
    )
    return Path(base) / "mahavishnu" / "quick" if base else None


def _secret_set() -> bool:
    for name, value in os.environ.items():
        upper = name.upper()
        if not upper.startswith(_ENV_PREFIXES):
            continue
        if any(word in upper for word in _SECRET_WORDS):
            return True
        if upper.endswith("URL") and "://" in value:
            try:
                if urlsplit(value).password is not None:
                    return True
            except ValueError:
                return True
    return False


def _tree_stats(folder: Path, suffixes: tuple[str, ...]) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    pending.append(Path(entry.path))
            elif entry.name.endswith(suffixes):
                st = entry.stat()
                out.append((entry.path, st.st_size, st.st_mtime_ns))
    return sorted(out)


def inputs_fingerprint(root: str, name: str | None) -> str | None:
    """A digest of everything the answer for (`root`, `name`) depends on; None when no answer may be kept."""
    if _secret_set():
        return None
    env = sorted(
        (k, v) for k, v in os.environ.items() if k.upper().startswith(_ENV_PREFIXES) or k in _ENV_NAMES
    )
    folder = settings_dir()
    settings_files: list[str | None] = []
    for file_name in SETTINGS_FILES:
        try:
            settings_files.append(hashlib.sha256((folder / file_name).read_bytes()).hexdigest())
        except FileNotFoundError:
            settings_files.append(None)
        except OSError:
            return None
    facts = [
        FORMAT,
        sys.executable,
        sys.version,
        os.getcwd(),
        root,
        name,
        env,
        str(folder),
        settings_files,
        _tree_stats(PACKAGE_DIR, (".py", ".sql")),
        _tree_stats(migrations_dir(), (".sql",)),
    ]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def _path_of(fingerprint: str) -> Path | None:
    folder = answers_dir()
    return folder / f"{fingerprint}.json" if folder is not None else None


def save(fingerprint: str, entry: dict[str, Any]) -> None:
    """Keep `entry` for the inputs `fingerprint`; a folder we cannot write only costs speed."""
    path = _path_of(fingerprint)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format": FORMAT, **entry}, handle)
        os.replace(partial, path)
        _trim(path.parent)
    except OSError as exc:
        logger.debug("no quick answer kept in %s: %s", path.parent, exc)


def _trim(folder: Path) -> None:
    kept = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in kept[_MAX_FILES:]:
        old.unlink(missing_ok=True)


def load(fingerprint: str) -> dict[str, Any] | None:
    path = _path_of(fingerprint)
    if path is None:
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("format") == FORMAT else None


def forget(fingerprint: str) -> None:
    path = _path_of(fingerprint)
    if path is not None:
        path.unlink(missing_ok=True)


def entry_holds(entry: dict[str, Any], row: Any, key: str, root: str) -> bool:
    """Whether the database row says what the full path would: the same proven key at this root, a last run
    that succeeded, the entry's space still the only one of its model (so no probe of the server would pick
    another), and the migrations the full path checked."""
    space = entry["space"]
    return (
        row is not None
        and row["unchanged_key"] == key
        and row["root_path"] == root
        and row["status"] == "succeeded"
        and row["stats"] is not None
        and row["space_id"] == space["id"]
        and (row["provider"], row["model"], row["dimensions"])
        == (space["provider"], space["model"], space["dimensions"])
        and row["same_model"] == 1
        and row["migrations"] == entry["migrations"]
    )


async def answer(path: str, name: str | None) -> dict[str, Any] | None:
    """The report of an unchanged re-ingest of `path`, recorded as a run; None when the full path must run."""
    started = time.perf_counter()
    root = os.path.realpath(os.path.expanduser(path))
    repo = name or default_repo_name(Path(root))
    if not is_allowed(repo) or not os.path.isdir(root):
        return None
    fingerprint = inputs_fingerprint(root, name)
    entry = load(fingerprint) if fingerprint is not None else None
    if fingerprint is None or entry is None or entry.get("repo") != repo or entry.get("root") != root:
        return None
    try:
        return await _answer(entry, fingerprint, repo, root, started)
    except Exception as exc:  # any doubt goes to the full path, which reports it properly
        logger.debug("quick answer declined: %r", exc)
        return None


async def _answer(
    entry: dict[str, Any], fingerprint: str, repo: str, root: str, started: float
) -> dict[str, Any] | None:
    import asyncpg

    from mahavishnu_assets.ingest import store
    from mahavishnu_assets.ingest.discover import git_clean_head
    from mahavishnu_assets.ingest.embed import SpaceKey

    # Git (usually prefetched by the command) and the connection proceed together.
    clean = asyncio.ensure_future(asyncio.to_thread(git_clean_head, Path(root), keep=True))
    connect = entry["connect"]
    try:
        conn = await asyncpg.connect(
            **connect["target"],
            # A server slow to accept is left to the full path and its own timeout, not waited for twice.
            timeout=min(float(connect["timeout"]), QUICK_CONNECT_SECONDS),
            command_timeout=connect["command_timeout"],
            server_settings={"application_name": connect["application_name"]},
        )
    except BaseException:
        clean.cancel()
        raise
    try:
        head = await clean
        if head is None:
            return None
        key = unchanged_key(entry["facts"], head)
        row = await conn.fetchrow(_STATE_SQL, repo)
        if not entry_holds(entry, row, key, root):
            # A run that wrote since cleared the key, or the space or schema moved: this answer is stale.
            forget(fingerprint)
            return None
        stats = json.loads(row["stats"])
        if not isinstance(stats, dict):
            return None
        space = entry["space"]
        described = SpaceKey(space["provider"], space["model"], space["dimensions"]).describe()
        result = IngestResult(repo=repo, commit=None, root_path=root, warnings=list(entry["warnings"]))
        result.carry_unchanged(stats, head, described, space["provider"], time.perf_counter() - started)
        result.run_id = await store.record_unchanged_run(
            conn, int(row["id"]), head, int(space["id"]), json.dumps(result.to_dict())
        )
    finally:
        try:
            await conn.close()
        except Exception:  # the run is recorded; a failing close changes nothing of it
            conn.terminate()
    return result.to_dict()


async def remember(
    conn: Any,
    *,
    name: str | None,
    result: dict[str, Any],
    facts_of: Callable[[int], dict[str, Any]],
    connect: dict[str, Any],
) -> bool:
    """After a full run that reported `result`: keep the quick answer when the database holds the proof the
    reader will check.

    `facts_of(space_id)` gives the key facts for the repository's space; `connect` holds the driver's
    `target` arguments (never a password), `timeout`, `command_timeout` and `application_name`. The entry is
    kept only if the reader's own check passes on it now."""
    root, repo, head = result["root_path"], result["repo"], result["commit"]
    fingerprint = inputs_fingerprint(root, name) if head else None
    if fingerprint is None:
        return False
    row = await conn.fetchrow(_STATE_SQL, repo)
    if row is None or row["space_id"] is None:
        return False
    entry = {
        "repo": repo,
        "root": root,
        "connect": connect,
        "facts": facts_of(int(row["space_id"])),
        "space": {
            "id": row["space_id"],
            "provider": row["provider"],
            "model": row["model"],
            "dimensions": row["dimensions"],
        },
        "migrations": row["migrations"],
        "warnings": list(result["warnings"]),
    }
    if not entry_holds(entry, row, unchanged_key(entry["facts"], head), root):
        return False
    save(fingerprint, entry)
    return True
