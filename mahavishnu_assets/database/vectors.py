"""The pgvector `vector` codec for asyncpg: one registration for the pool and the writers, in the extension's schema."""

from __future__ import annotations

from typing import Any

import asyncpg
from pgvector import Vector

# Hosted servers often keep extensions in their own schema (`extensions`) on the search path, not in `public`.
_EXTENSION_SCHEMA = """SELECT n.nspname FROM pg_catalog.pg_extension e
                       JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                       WHERE e.extname = 'vector'"""


def encode_vector(value: Any) -> bytes:
    """pgvector's binary format; values already in it (bytes, see ingest.store.vector_wire) go through as they are."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return (value if isinstance(value, Vector) else Vector(value)).to_binary()


async def vector_schema(conn: asyncpg.Connection) -> str | None:
    """The schema holding the `vector` extension; None before a migration creates it."""
    schema: str | None = await conn.fetchval(_EXTENSION_SCHEMA)
    return schema


async def register_vector_codec(conn: asyncpg.Connection, schema: str | None = None) -> str | None:
    """Binary `vector` values on this connection, in and out; returns the extension's schema (None: no
    extension yet, so no codec). Only `vector` crosses the wire: queries cast to `halfvec` in the server.

    Pass the schema a previous call returned to skip the lookup; a stale one (the extension was dropped or
    moved since) is looked up again."""
    if schema is not None:
        try:
            await _set_codec(conn, schema)
            return schema
        except ValueError as exc:
            if not str(exc).startswith("unknown type"):
                raise
    schema = await vector_schema(conn)
    if schema is not None:
        await _set_codec(conn, schema)
    return schema


async def _set_codec(conn: asyncpg.Connection, schema: str) -> None:
    await conn.set_type_codec(
        "vector", schema=schema, encoder=encode_vector, decoder=Vector.from_binary, format="binary"
    )
