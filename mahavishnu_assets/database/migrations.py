"""Numbered SQL migrations, each with its reverse, applied in order under an advisory lock.

Files are `migrations/NNNN_name.up.sql` and `NNNN_name.down.sql`. Each applied migration is recorded with the
SHA-256 of its up file and a fingerprint of the catalog it left, so an edited migration is refused and drift of
the live schema is detected.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from mahavishnu_assets.database.pool import connect
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import MigrationChecksumError, SchemaError

# Re-exported: where the migrations are read from is part of this module's interface.
from mahavishnu_assets.locations import migrations_dir as migrations_dir

LOCK_KEY = 0x6D61_6861_7669  # "mahavi": one advisory lock for every migrating process
BOOKKEEPING = "public.mahavishnu_schema_migrations"
SCHEMA = "mahavishnu"
# ANN indexes are built and dropped by the index asset, not by migrations.
MANAGED_INDEX_PREFIX = "ann_"
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up_sql: str
    down_sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up_sql.encode()).hexdigest()


@dataclass
class MigrationReport:
    applied: list[int]
    reverted: list[int]
    version: int
    pending: list[int]


def load_migrations(folder: Path | None = None) -> list[Migration]:
    folder = folder or migrations_dir()
    if not folder.is_dir():
        raise SchemaError(
            f"Migrations folder {folder} not found", suggestion="Set MAHAVISHNU_MIGRATIONS_DIR."
        )
    parts: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for path in sorted(folder.iterdir()):
        m = _FILE.match(path.name)
        if not m:
            continue
        version = int(m["version"])
        if version in names and names[version] != m["name"]:
            raise SchemaError(f"Two migrations share version {version:04d}: {names[version]} and {m['name']}")
        names[version] = m["name"]
        parts.setdefault(version, {})[m["direction"]] = path.read_text(encoding="utf-8")
    out = []
    for version in sorted(parts):
        if set(parts[version]) != {"up", "down"}:
            raise SchemaError(f"Migration {version:04d}_{names[version]} needs both .up.sql and .down.sql")
        out.append(Migration(version, names[version], parts[version]["up"], parts[version]["down"]))
    return out


async def _ensure_bookkeeping(conn: asyncpg.Connection) -> None:
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {BOOKKEEPING} (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            schema_fingerprint text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )"""
    )


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", BOOKKEEPING)
    if not exists:
        return {}
    rows = await conn.fetch(f"SELECT version, name, checksum, schema_fingerprint FROM {BOOKKEEPING}")  # noqa: S608
    return {r["version"]: r for r in rows}


async def schema_fingerprint(conn: asyncpg.Connection) -> str:
    """A hash of the tables, columns, constraints and indexes in our schema (ANN indexes excluded)."""
    rows = await conn.fetch(
        """
        SELECT 'c' AS kind, table_name || '.' || column_name || ':' || data_type || ':' || is_nullable AS item
          FROM information_schema.columns WHERE table_schema = $1
        UNION ALL
        SELECT 'i', tablename || '.' || indexname || ':' || indexdef
          FROM pg_indexes WHERE schemaname = $1 AND indexname NOT LIKE $2
        UNION ALL
        SELECT 'k', conrelid::regclass::text || '.' || conname || ':' || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = to_regnamespace($1)
        UNION ALL
        SELECT 'f', p.proname FROM pg_proc p WHERE p.pronamespace = to_regnamespace($1)
        ORDER BY 1, 2
        """,
        SCHEMA,
        MANAGED_INDEX_PREFIX + "%",
    )
    digest = hashlib.sha256()
    for r in rows:
        digest.update(f"{r['kind']}|{r['item']}\n".encode())
    return digest.hexdigest()


def _check_checksums(known: list[Migration], done: dict[int, asyncpg.Record]) -> None:
    by_version = {m.version: m for m in known}
    for version, row in sorted(done.items()):
        migration = by_version.get(version)
        if migration is None:
            raise SchemaError(
                f"The database has migration {version:04d}_{row['name']}, which is not in the migrations folder",
                suggestion="Upgrade mahavishnu-assets to the version that wrote this database.",
            )
        if migration.checksum != row["checksum"]:
            raise MigrationChecksumError(
                f"Migration {version:04d}_{migration.name} was edited after it was applied "
                f"(checksum {row['checksum'][:12]} recorded, {migration.checksum[:12]} on disk)"
            )


async def migrate_up(
    target: ConnectTarget,
    *,
    folder: Path | None = None,
    to: int | None = None,
    conn: asyncpg.Connection | None = None,
) -> MigrationReport:
    """Apply pending migrations in order; running it again is a no-op. `conn`, when given, is used (not closed)."""
    known = load_migrations(folder)
    own = conn is None
    conn = conn or await connect(target)
    try:
        if to is None:
            # Every command starts here: when nothing is pending, a read answers without the lock.
            done = await applied_migrations(conn)
            if done and all(m.version in done for m in known):
                _check_checksums(known, done)
                return MigrationReport(applied=[], reverted=[], version=max(done), pending=[])
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await _ensure_bookkeeping(conn)
            done = await applied_migrations(conn)
            _check_checksums(known, done)
            applied: list[int] = []
            for migration in known:
                if migration.version in done or (to is not None and migration.version > to):
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(migration.up_sql)
                        await conn.execute(
                            f"INSERT INTO {BOOKKEEPING} (version, name, checksum, schema_fingerprint) "  # noqa: S608
                            "VALUES ($1, $2, $3, $4)",
                            migration.version,
                            migration.name,
                            migration.checksum,
                            await schema_fingerprint(conn),
                        )
                except asyncpg.PostgresError as exc:
                    raise SchemaError(
                        f"Migration {migration.version:04d}_{migration.name} failed: {exc}",
                        suggestion="Nothing of this migration was applied; fix the cause and run `mahavishnu up`.",
                    ) from None
                applied.append(migration.version)
            version = max([*done, *applied], default=0)
            pending = [m.version for m in known if m.version > version]
            return MigrationReport(applied=applied, reverted=[], version=version, pending=pending)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        if own:
            await conn.close()


async def migrate_down(target: ConnectTarget, *, folder: Path | None = None, to: int = 0) -> MigrationReport:
    """Revert applied migrations above `to`, newest first; at 0 nothing of ours is left."""
    known = {m.version: m for m in load_migrations(folder)}
    conn = await connect(target)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            done = await applied_migrations(conn)
            _check_checksums(list(known.values()), done)
            reverted: list[int] = []
            for version in sorted(done, reverse=True):
                if version <= to:
                    break
                migration = known[version]
                async with conn.transaction():
                    await conn.execute(migration.down_sql)
                    await conn.execute(f"DELETE FROM {BOOKKEEPING} WHERE version = $1", version)  # noqa: S608
                reverted.append(version)
            if to == 0 and await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", BOOKKEEPING):
                await conn.execute(f"DROP TABLE {BOOKKEEPING}")
            remaining = [v for v in done if v not in reverted]
            return MigrationReport(
                applied=[], reverted=reverted, version=max(remaining, default=0), pending=sorted(reverted)
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def verify_schema(conn: asyncpg.Connection, *, folder: Path | None = None) -> list[str]:
    """Problems between the live schema and the migrations; empty when they match."""
    known = load_migrations(folder)
    done = await applied_migrations(conn)
    problems: list[str] = []
    by_version = {m.version: m for m in known}
    for m in known:
        if m.version not in done:
            problems.append(f"migration {m.version:04d}_{m.name} is not applied")
        elif done[m.version]["checksum"] != m.checksum:
            problems.append(f"migration {m.version:04d}_{m.name} was edited after it was applied")
    for version, row in done.items():
        if version not in by_version:
            problems.append(f"applied migration {version:04d}_{row['name']} is unknown to this code")
    if done and not problems:
        latest = done[max(done)]
        if await schema_fingerprint(conn) != latest["schema_fingerprint"]:
            problems.append("the live schema differs from what the migrations created (changed by hand?)")
    return problems


async def schema_version(conn: asyncpg.Connection) -> int:
    return max(await applied_migrations(conn), default=0)
