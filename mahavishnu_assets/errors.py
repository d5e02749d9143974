"""The error hierarchy: every failure a user can meet, with a suggestion of what to do about it."""

from __future__ import annotations

import re
from typing import Any

# A URL's password (scheme://user:password@host) or a libpq-style password=... pair.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?P<tail>@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'[^']*'|\S+)", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Remove passwords from text that may reach a log, an error or the UI."""
    out = _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    out = _KV_PASSWORD.sub(lambda m: f"{m['head']}***", out)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out


class MahavishnuError(Exception):
    """Base of every error this project raises on purpose."""

    code = "mahavishnu_error"
    default_suggestion = "See the log above for details."

    def __init__(self, message: str, *, suggestion: str | None = None, **details: Any) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.suggestion = redact(suggestion or self.default_suggestion)
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message, "suggestion": self.suggestion}
        if self.details:
            out["details"] = {k: redact(v) if isinstance(v, str) else v for k, v in self.details.items()}
        return out


class ConfigurationError(MahavishnuError):
    """A setting is missing or has a bad value."""

    code = "configuration_error"
    default_suggestion = (
        "Fix the setting named in the message (environment, settings/local.yaml or settings/mahavishnu.yaml)."
    )


class DatabaseUnavailableError(MahavishnuError):
    """PostgreSQL cannot be reached or refused the connection."""

    code = "database_unavailable"
    default_suggestion = (
        "Check that PostgreSQL is running and MAHAVISHNU_DATABASE_URL is right, "
        "or unset it to use the embedded server (`mahavishnu up`)."
    )


class PoolExhaustedError(DatabaseUnavailableError):
    """No connection became free in time, or the server has no connection slots left."""

    code = "pool_exhausted"
    default_suggestion = "Raise postgres.pool_max_size or the server's max_connections, or lower concurrency."


class DatabaseMissingError(DatabaseUnavailableError):
    """The server is reachable but the configured database does not exist."""

    code = "database_missing"
    default_suggestion = (
        "Create the database (CREATE DATABASE) or correct its name in MAHAVISHNU_DATABASE_URL or "
        "MAHAVISHNU_POSTGRES__DATABASE; the embedded server creates its own."
    )


class SchemaError(MahavishnuError):
    """The database schema does not match the migrations."""

    code = "schema_error"
    default_suggestion = "Run `mahavishnu up` to apply pending migrations."


class MigrationChecksumError(SchemaError):
    """An applied migration's file was edited afterwards."""

    code = "migration_checksum_mismatch"
    default_suggestion = (
        "Never edit an applied migration: restore the file and add a new numbered migration for the change."
    )


class EmbeddingError(MahavishnuError):
    """The embedding server failed or returned something unusable."""

    code = "embedding_error"
    default_suggestion = (
        "Check that Ollama runs (OLLAMA_HOST) and the model is pulled: `ollama pull <model>`."
    )


class EmbeddingMismatchError(EmbeddingError):
    """Returned vectors do not match the request in count or dimensions."""

    code = "embedding_mismatch"
    default_suggestion = (
        "The model's output changed: check MAHAVISHNU_EMBED_MODEL; a new model gets its own embedding space."
    )


class EmbeddingUnavailableError(EmbeddingError):
    """The embedding servers kept failing a request (errors, timeouts, resets) through all its attempts.

    `vectors` holds what the call did embed (None elsewhere) and `missing` the positions it could not, so a
    caller can keep the rest and ask again later."""

    code = "embedding_unavailable"
    default_suggestion = (
        "Check that the Ollama servers run (OLLAMA_HOST), or raise ollama.timeout_seconds / ollama.max_retries; "
        "a re-run resumes where this one stopped."
    )

    def __init__(
        self,
        message: str,
        *,
        vectors: list[Any] | None = None,
        missing: list[int] | None = None,
        suggestion: str | None = None,
    ) -> None:
        super().__init__(message, suggestion=suggestion)
        self.vectors = vectors
        self.missing = missing or []


class EmbeddingIncompleteError(EmbeddingError):
    """An ingest ended with chunks its embedding servers never embedded, even in the final passes."""

    code = "embedding_incomplete"
    default_suggestion = (
        "The files of these chunks were left as they were: the next `mahavishnu ingest` embeds only them. Check "
        "the Ollama servers (OLLAMA_HOST) and their logs, or raise ollama.retry_budget_ratio / "
        "ollama.final_passes."
    )


class IngestError(MahavishnuError):
    """A repository cannot be ingested."""

    code = "ingest_error"
    default_suggestion = "Check the repository path and its permissions."


class SearchError(MahavishnuError):
    """A search request is invalid or cannot run."""

    code = "search_error"
    default_suggestion = "Check the search arguments."


class AnnIndexError(MahavishnuError):
    """An ANN index cannot be built or tuned."""

    code = "index_error"
    default_suggestion = "Run `mahavishnu index` again; an interrupted build leaves nothing behind."


class NotFoundError(MahavishnuError):
    """The named object does not exist."""

    code = "not_found"
    default_suggestion = "List what exists first (for example `mahavishnu snapshot list`)."


class SnapshotError(MahavishnuError):
    """A memory snapshot cannot be created or restored."""

    code = "snapshot_error"
    default_suggestion = (
        "Check `mahavishnu snapshot list` and retry; a failed restore leaves live data as it was."
    )


class MemoryStoreError(MahavishnuError):
    """A memory, cache or session request has invalid input."""

    code = "memory_store_error"
    default_suggestion = "Check the arguments named in the message."


class ArgumentError(MahavishnuError):
    """A request passes an argument of the wrong type or with a value out of range."""

    code = "invalid_argument"
    default_suggestion = "Correct the argument named in the message."
