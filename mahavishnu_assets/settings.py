"""Settings: defaults < settings/mahavishnu.yaml < settings/local.yaml < MAHAVISHNU_* environment."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.locations import ENV_PREFIX, SETTINGS_FILES, settings_dir


def default_ollama_host() -> str:
    return os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"


class PostgresSettings(BaseModel):
    """A server given by parts; `database_url` (top level) wins when set."""

    host: str | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "mahavishnu"
    user: str = "postgres"
    password: SecretStr | None = None
    pool_min_size: int = Field(default=1, ge=0, le=1000)
    pool_max_size: int = Field(default=10, ge=1, le=1000)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    command_timeout_seconds: float = Field(default=300.0, gt=0)
    acquire_timeout_seconds: float = Field(default=30.0, gt=0)
    health_check_interval_seconds: float = Field(default=30.0, gt=0)
    application_name: str = "mahavishnu"

    @model_validator(mode="after")
    def _min_below_max(self) -> PostgresSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError(
                f"pool_min_size ({self.pool_min_size}) must not exceed pool_max_size ({self.pool_max_size})"
            )
        return self


class EmbeddedSettings(BaseModel):
    """The embedded server started when no external one is configured."""

    max_connections: int = Field(default=200, ge=10)
    shared_buffers: str = "256MB"
    maintenance_work_mem: str = "512MB"
    start_timeout_seconds: float = Field(default=60.0, gt=0)


class OllamaSettings(BaseModel):
    host: str = Field(default_factory=default_ollama_host, validate_default=True)
    timeout_seconds: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=64, ge=1, le=4096)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    max_input_chars: int = Field(default=8000, ge=64)
    local_dimensions: int = Field(default=384, ge=8, le=4096)

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if "://" not in value:
            value = f"http://{value}"
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


class RepositorySettings(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/-]+$")
    path: Path


class IngestSettings(BaseModel):
    max_file_bytes: int = Field(default=1_000_000, ge=1)
    chunk_lines: int = Field(default=40, ge=1)
    chunk_lines_overlap: int = Field(default=5, ge=0)
    max_chunk_chars: int = Field(default=1500, ge=100)
    file_batch_size: int = Field(default=200, ge=1)
    exclude_patterns: list[str] = Field(
        default_factory=lambda: [
            "*.lock",
            "package-lock.json",
            "yarn.lock",
            "pnpm-lock.yaml",
            "poetry.lock",
            "Cargo.lock",
            "*.min.js",
            "*.min.css",
            "*.map",
            "node_modules/*",
            "vendor/*",
            "third_party/*",
            "dist/*",
            "build/*",
            ".git/*",
            "*_pb2.py",
            "*.pb.go",
        ]
    )
    detect_secrets: bool = True
    repositories: list[RepositorySettings] = Field(default_factory=list)
    # A file with a longer line (minified code, data blobs) is skipped as `minified`: chunks are whole lines.
    max_line_chars: int = Field(default=8000, ge=100)
    # detect-secrets plugin class names; None: the defaults of mahavishnu_assets/ingest/secrets.py.
    secret_plugins: list[str] | None = None
    # Chunks per file batch (one transaction); smaller batches keep a slow embedding server busier.
    batch_max_chunks: int = Field(default=1000, ge=1)
    # File batches chunked or embedding at once ahead of the database writer.
    pipeline_depth: int = Field(default=3, ge=1, le=64)
    lock_timeout_seconds: float = Field(default=600.0, gt=0)
    # Delete embeddings no chunk references any more at the end of an ingest that removed chunks.
    prune_unreferenced_embeddings: bool = True
    nightly_cron: str = "0 3 * * *"
    # Worker processes that read and chunk files beside the event loop (None: one per CPU, at most 4; 0: a
    # thread), used when at least process_min_files files must be read.
    reader_processes: int | None = Field(default=None, ge=0, le=64)
    process_min_files: int = Field(default=200, ge=1)
    # Connections writing file batches in parallel (each batch is still one transaction).
    writer_connections: int = Field(default=2, ge=1, le=16)


class IndexSettings(BaseModel):
    method: Literal["auto", "ivfflat", "hnsw"] = "auto"
    lists_rule: Literal["pgvector", "sqrt"] = "pgvector"
    # At 100k x 768 HNSW reaches 0.95 recall at ~90x exact search's QPS, IVFFlat at ~12-23x (benchmarks/RESULTS.md).
    hnsw_threshold_rows: int = Field(default=100_000, ge=1)
    min_rows_for_index: int = Field(default=10_000, ge=1)
    target_recall: float = Field(default=0.95, gt=0, le=1)
    hnsw_m: int = Field(default=16, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=64, ge=4, le=1000)
    drift_factor: float = Field(default=2.0, gt=1)
    recall_sample_queries: int = Field(default=100, ge=1)
    max_maintenance_work_mem_mb: int = Field(default=2048, ge=64)


class MemorySettings(BaseModel):
    snapshot_retention_count: int = Field(default=7, ge=1)
    snapshot_retention_days: int = Field(default=30, ge=1)
    session_inactive_seconds: int = Field(default=86_400, ge=1)
    cleanup_expired_threshold: int = Field(default=1000, ge=1)
    session_ttl_seconds: int = Field(default=604_800, ge=1)
    cache_default_ttl_seconds: int | None = Field(default=None, ge=1)
    snapshot_lock_timeout_seconds: float = Field(default=30.0, gt=0)
    snapshot_search_config: str = Field(default="english", pattern=r"^[a-z_][a-z0-9_.]*$")
    restore_safety_snapshot: bool = True
    metrics_retention_days: int = Field(default=30, ge=1)
    pool_high_utilisation: float = Field(default=0.8, gt=0, le=1)
    pool_high_ticks: int = Field(default=3, ge=1)
    pool_wait_p95_warn_ms: float = Field(default=50.0, gt=0)
    idle_connection_seconds: int = Field(default=600, ge=1)


class Settings(BaseModel):
    """Everything the project reads from its environment, validated at start.

    `Settings(**values)` reads its sources as pydantic-settings would, without importing it (about 80 ms of
    every command). Each source wins over the ones after it: the arguments, the MAHAVISHNU_* environment,
    settings/local.yaml, settings/mahavishnu.yaml, the defaults; nested mappings merge key by key."""

    model_config = ConfigDict(extra="ignore")

    home: Path = Path(".mahavishnu")
    database_url: SecretStr | None = None
    embedder: Literal["ollama", "local", "auto"] = "auto"
    embed_model: str = Field(default="nomic-embed-text", min_length=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)

    def __init__(self, **values: Any) -> None:
        folder = settings_dir()
        merged: dict[str, Any] = {}
        for source in (
            *(_yaml_source(folder / name) for name in SETTINGS_FILES),
            _env_source(type(self)),
            values,
        ):
            merged = _deep_merge(merged, source)
        super().__init__(**merged)

    @property
    def uses_embedded_server(self) -> bool:
        return self.database_url is None and self.postgres.host is None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _yaml_source(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml  # here: a run with no settings file never loads the YAML parser

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{path} must hold a mapping of settings, not {type(data).__name__}",
            suggestion=f"Write {path.name} as `key: value` lines (see settings/mahavishnu.yaml).",
        )
    return data


def _is_complex(annotation: Any) -> bool:
    """Whether a field takes JSON from the environment (models, lists, mappings), as in pydantic-settings."""
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel | list | dict | set | tuple | frozenset)
    origin = get_origin(annotation)
    if origin is Literal:
        return False
    if isinstance(origin, type) and issubclass(origin, list | dict | set | tuple | frozenset):
        return True
    return any(_is_complex(arg) for arg in get_args(annotation) if arg is not type(None))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    if not _is_complex(annotation):
        return raw
    import json

    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigurationError(
            f"Environment variable {name} must be JSON for this setting",
            suggestion=f'Set {name} to a JSON value, e.g. {name}=\'["a", "b"]\' for a list.',
            fields=[name],
        ) from None


def _env_source(model: type[BaseModel]) -> dict[str, Any]:
    """MAHAVISHNU_<FIELD> (JSON for models and lists) and MAHAVISHNU_<FIELD>__<SUBFIELD>, names in any case.
    A variable that names no setting (MAHAVISHNU_SETTINGS_DIR, a typo) is ignored, as unknown keys are."""
    prefix = ENV_PREFIX.lower()
    out: dict[str, Any] = {}
    # Shorter names first: a whole field's JSON, then the nested variables merged into (and over) it.
    for name in sorted((k for k in os.environ if k.lower().startswith(prefix)), key=len):
        path = _setting_path(model, name[len(prefix) :].lower().split("__"))
        if path is None:
            continue
        *parents, (leaf, annotation) = path
        value: Any = {leaf: _env_value(name, os.environ[name], annotation)}
        for part, _ in reversed(parents):
            value = {part: value}
        out = _deep_merge(out, value)
    return out


def _setting_path(model: type[BaseModel], parts: list[str]) -> list[tuple[str, Any]] | None:
    """Each part with its field's type, or None when the parts name no setting."""
    path: list[tuple[str, Any]] = []
    current: type[BaseModel] | None = model
    for depth, part in enumerate(parts):
        field = current.model_fields.get(part) if current is not None else None
        if field is None or not part:
            return None
        path.append((part, field.annotation))
        if depth < len(parts) - 1:
            current = _model_of(field.annotation)
    return path


def _yaml_has(path: Path, loc: tuple[str | int, ...]) -> bool:
    if not path.is_file():
        return False
    import yaml  # here: a run with no settings file never loads the YAML parser

    try:
        node: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return False
    for part in loc:
        if isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


def _source_of(loc: tuple[str | int, ...]) -> str:
    """Name where a bad value came from, so the user knows what to edit."""
    names = [str(p) for p in loc]
    for depth in range(len(names), 0, -1):
        env = ENV_PREFIX + "__".join(names[:depth]).upper()
        if any(k.upper() == env for k in os.environ):
            return f"environment variable {env}"
    folder = settings_dir()
    for name in ("local.yaml", "mahavishnu.yaml"):
        if _yaml_has(folder / name, loc):
            return str(folder / name)
    return "defaults"


def _is_yaml_error(exc: BaseException) -> bool:
    # A YAML error can only come from a parser already loaded: no settings file, no import.
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(exc, yaml.YAMLError)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; a bad value raises ConfigurationError naming field, source and fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        first_field = ""
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "settings"
            first_field = first_field or field
            # Never echo the input value: it may be a password.
            problems.append(f"{field}: {err['msg']} (from {_source_of(loc)})")
        env_hint = ENV_PREFIX + first_field.replace(".", "__").upper()
        raise ConfigurationError(
            "Invalid settings: " + "; ".join(problems),
            suggestion=f"Set a valid value for {first_field}, e.g. with {env_hint}=..., "
            "or fix it in settings/local.yaml / settings/mahavishnu.yaml.",
            fields=[".".join(str(p) for p in e["loc"]) for e in exc.errors()],
        ) from None
    except Exception as exc:
        if not _is_yaml_error(exc):
            raise
        raise ConfigurationError(
            f"A settings file is not valid YAML: {exc.__class__.__name__}",
            suggestion=f"Fix the YAML syntax in {settings_dir()}/local.yaml or mahavishnu.yaml.",
        ) from None


@lru_cache(maxsize=1)
def cached_settings() -> Settings:
    return load_settings()
