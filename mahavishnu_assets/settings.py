"""Settings: defaults < settings/mahavishnu.yaml < settings/local.yaml < MAHAVISHNU_* environment < arguments."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.locations import ENV_PREFIX, SETTINGS_FILES, settings_dir


def default_ollama_host() -> str:
    """The `ollama` client's own OLLAMA_HOST, so one variable points both it and us at the server."""
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
    # One base URL, or several separated by commas (OLLAMA_HOST too): batches go to the least-loaded healthy
    # one. `hosts`, when not empty, names them as a list instead.
    host: str = Field(default_factory=default_ollama_host, validate_default=True)
    hosts: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=64, ge=1, le=4096)
    # Requests in flight to each server.
    concurrency: int = Field(default=4, ge=1, le=64)
    # Retries of one request before its batch is set aside for the end of the run (and again in each final pass).
    max_retries: int = Field(default=4, ge=0, le=20)
    # The first retry waits 1 to 3 times this; later ones decorrelated jitter up to 8 times it.
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    # Retries a run may spend before failed requests are set aside at once: the larger of retry_budget_min and
    # retry_budget_ratio x the requests it has sent.
    retry_budget_ratio: float = Field(default=0.1, ge=0, le=10)
    retry_budget_min: int = Field(default=20, ge=0)
    # Passes over the batches set aside, once every other batch is done, each with fresh attempts.
    final_passes: int = Field(default=2, ge=0, le=10)
    # Consecutive failures that bench a server (circuit breaker), and its first cool-down before one probing
    # request is let through (doubled after each failed probe, at most 30 s).
    circuit_failures: int = Field(default=5, ge=1, le=1000)
    circuit_cooldown_seconds: float = Field(default=1.0, gt=0)
    # How long requests wait while every server is benched before their batches are set aside.
    outage_seconds: float = Field(default=60.0, gt=0)
    max_input_chars: int = Field(default=8000, ge=64)
    # Put before every document / search query sent to the model: None takes the model card's
    # (mahavishnu_assets/ingest/model_prefixes.py), "" sends none. Part of the embedding space.
    document_prefix: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00]*$")
    query_prefix: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00]*$")
    # Size of the test-only `hashing` embedder's vectors (the `local` one, WordLlama, has 256).
    local_dimensions: int = Field(default=384, ge=8, le=4096)

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str) -> str:
        urls = split_hosts(value)
        if not urls:
            raise ValueError("must name at least one http(s) URL")
        return ",".join(urls)

    @field_validator("hosts")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        return split_hosts(",".join(value))

    @property
    def urls(self) -> list[str]:
        """The servers' base URLs: `hosts` when given, else those in `host`."""
        return self.hosts or split_hosts(self.host)


def split_hosts(value: str) -> list[str]:
    """Base URLs from a comma-separated list (`http://` added when no scheme is given), without duplicates."""
    urls: list[str] = []
    for part in value.split(","):
        url = part.strip()
        if not url:
            continue
        if "://" not in url:
            url = f"http://{url}"
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be http(s) URLs, got {url!r}")
        url = url.rstrip("/")
        if url not in urls:
            urls.append(url)
    return urls


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
    # Tuning queries, and as many held-out ones (fewer make the two figures disagree by chance alone).
    recall_sample_queries: int = Field(default=200, ge=1)
    max_maintenance_work_mem_mb: int = Field(default=2048, ge=64)
    # Vector and hybrid searches log their query text so the tuner measures recall on real queries; the newest
    # query_log_size per space are kept. query_log=false logs nothing.
    query_log: bool = True
    query_log_size: int = Field(default=1000, ge=0, le=100_000)


class SearchSettings(BaseModel):
    """How hybrid search fuses its evidence (weighted reciprocal rank fusion). The defaults were chosen on the
    tuning half of benchmarks/search_quality.py, never on the half it reports."""

    # Smaller k trusts the top of each list more. On the tuning half, 10 beat the customary 60 on natural-language
    # queries (MRR@10 rich 0.478 / 0.450, sqlalchemy 0.165 / 0.163) and held identifier queries (0.991 / 0.989,
    # 0.997 / 0.997); 5 and 20 were no better than 10.
    rrf_k: int = Field(default=10, ge=1, le=1000)
    # Natural-language queries: the lexical (BM25) and vector lists. On the tuning half (WordLlama vectors of
    # word forms, definitions' names in the lexical terms, rrf_k 10) the vector list at 0.5 beat 0.25 and 0.75
    # (MRR@10 sqlalchemy 0.250 / 0.241 / 0.245, rich 0.540 / 0.541 / 0.525). With raw-text vectors, half as
    # good, 0.25 had won: the weaker the model, the more lexical evidence carries; a stronger Ollama model may
    # deserve more.
    text_weight: float = Field(default=1.0, ge=0.0, le=10.0)
    vector_weight: float = Field(default=0.5, ge=0.0, le=10.0)
    # ...and the definitions whose names the question's words spell ("get the color system": `color_system`,
    # search.fusion.spelled_names). On the tuning half, 0.7 beat 0.3, 0.5 and 1.0 (MRR@10 rich 0.640 / 0.617 /
    # 0.640 / 0.605, sqlalchemy 0.299 / 0.270 / 0.292 / 0.286; 0.540 and 0.250 without them).
    name_weight: float = Field(default=0.7, ge=0.0, le=10.0)
    # ...and the definitions whose qualified names are made of the question's words ("check if the console is
    # writing to a terminal": `Console.is_terminal`, search.sql.definition_words_statement). On the tuning half,
    # 1.0 beat 0.7 and 1.5 (MRR@10 rich 0.724 / 0.712 / 0.722, sqlalchemy 0.404 / 0.399 / 0.399; 0.620 and
    # 0.305 without them). The spelled names still add to them (0.713 and 0.375 with name_weight 0).
    definition_weight: float = Field(default=1.0, ge=0.0, le=10.0)
    # A question's fused score for a chunk of test code (search.fusion.is_test_path), unless the question speaks
    # of tests: a description of what code does asks for that code, and tests that call it share its words.
    # 1.0 ranks tests like any code. On the tuning half, 0.3 against 1.0: NL MRR@10 sqlalchemy 0.440 / 0.415,
    # flask 0.614 / 0.525, click 0.596 / 0.542, httpx 0.757 / 0.663, requests 0.778 / 0.686, attrs 0.646 / 0.466
    # (rich ships no tests: 0.733 both); 0.5 was lower on four corpora, 0.15 the same but on attrs (0.651).
    test_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    # A query that looks like an identifier (`get_secret_key`, `QuerySet.filter`): the definitions it names
    # come first, and lexical evidence counts more than the vectors'.
    identifier_symbol_weight: float = Field(default=4.0, ge=0.0, le=100.0)
    identifier_text_weight: float = Field(default=1.5, ge=0.0, le=10.0)
    identifier_vector_weight: float = Field(default=0.5, ge=0.0, le=10.0)


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


class Settings(BaseSettings):
    """Everything the project reads from its environment, validated at start.

    Each source wins over the ones after it: the arguments, the MAHAVISHNU_* environment (nested fields with
    `__`, JSON for models and lists), settings/local.yaml, settings/mahavishnu.yaml, the defaults; nested
    mappings merge key by key. Use `load_settings` for errors that name the field, its source and the fix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False, extra="ignore"
    )

    home: Path = Path(".mahavishnu")
    database_url: SecretStr | None = None
    # `hashing`: word-hash vectors without semantics, for tests only.
    embedder: Literal["ollama", "local", "auto", "hashing"] = "auto"
    embed_model: str = Field(default="nomic-embed-text", min_length=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    # The bearer token `mahavishnu serve --http` requires (MAHAVISHNU_MCP_TOKEN); needed beyond loopback.
    mcp_token: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [settings_dir() / name for name in SETTINGS_FILES]
        try:
            # Later files win, key by key: local.yaml over the committed mahavishnu.yaml.
            yaml_files = YamlConfigSettingsSource(settings_cls, yaml_file=files, deep_merge=True)
        except Exception:
            problem = _settings_file_problem(files)
            if problem is None:
                raise
            raise problem from None
        return init_settings, _Environment(settings_cls), yaml_files

    @property
    def uses_embedded_server(self) -> bool:
        return self.database_url is None and self.postgres.host is None


class _Environment(EnvSettingsSource):
    """The MAHAVISHNU_* variables; one that must hold JSON and does not is named in a ConfigurationError."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            name = self._not_json(field_name, field)
            raise ConfigurationError(
                f"Environment variable {name} must be JSON for this setting",
                suggestion=f'Set {name} to a JSON value, e.g. {name}=\'["a", "b"]\' for a list.',
                fields=[name],
            ) from None

    def _not_json(self, field_name: str, field: FieldInfo) -> str:
        """The variable of this field that failed to decode: the whole field's, or one of its nested ones."""
        whole = (ENV_PREFIX + field_name).lower()
        for name, raw in self.env_vars.items():
            if raw is None:
                continue
            try:
                if name.lower() == whole:
                    self.decode_complex_value(field_name, field, raw)
                else:
                    self.explode_env_vars(field_name, field, {name: raw})
            except ValueError:
                return name.upper()
        return whole.upper()


def _settings_file_problem(files: list[Path]) -> ConfigurationError | None:
    """Why a settings file cannot be read as settings, naming the file; None when none of them is at fault."""
    import yaml  # only on this error path and in _yaml_has; the YAML source imports it for itself

    for path in files:
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            return ConfigurationError(
                f"{path} cannot be read ({exc.strerror})",
                suggestion=f"Check that {path} is a readable file.",
            )
        except yaml.YAMLError as exc:
            # Never the parser's message: it quotes the line, which may hold a password.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            return ConfigurationError(
                f"{path} is not valid YAML{where}",
                suggestion=f"Fix the YAML syntax in {path}.",
            )
        if data is not None and not isinstance(data, dict):
            return ConfigurationError(
                f"{path} must hold a mapping of settings, not {type(data).__name__}",
                suggestion=f"Write {path.name} as `key: value` lines (see settings/mahavishnu.yaml).",
            )
    return None


def _has(node: Any, loc: tuple[str | int, ...]) -> bool:
    for part in loc:
        if isinstance(node, dict) and str(part) in node:
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


def _yaml_has(path: Path, loc: tuple[str | int, ...]) -> bool:
    if not path.is_file():
        return False
    import yaml

    try:
        return _has(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, loc)
    except yaml.YAMLError:
        return False


def _source_of(loc: tuple[str | int, ...], overrides: dict[str, Any]) -> str:
    """Name where a bad value came from, in the order the sources win, so the user knows what to edit."""
    if loc and _has(overrides, loc):
        return "arguments"
    names = [str(p) for p in loc]
    for depth in range(len(names), 0, -1):
        env = ENV_PREFIX + "__".join(names[:depth]).upper()
        if any(k.upper() == env for k in os.environ):
            return f"environment variable {env}"
    folder = settings_dir()
    for name in reversed(SETTINGS_FILES):
        if _yaml_has(folder / name, loc):
            return str(folder / name)
    if names == ["ollama", "host"] and os.environ.get("OLLAMA_HOST"):
        return "environment variable OLLAMA_HOST"
    return "defaults"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings; a bad value raises ConfigurationError naming field, source and fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # A group's default failing on its own (OLLAMA_HOST, read by OllamaSettings) reports from inside it.
        group = tuple(n for n, f in Settings.model_fields.items() if _model_name(f.annotation) == exc.title)
        problems = []
        fields = []
        for err in exc.errors():
            loc = group + tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "settings"
            fields.append(field)
            # Never echo the input value: it may be a password.
            problems.append(f"{field}: {err['msg']} (from {_source_of(loc, overrides)})")
        env_hint = ENV_PREFIX + fields[0].replace(".", "__").upper()
        raise ConfigurationError(
            "Invalid settings: " + "; ".join(problems),
            suggestion=f"Set a valid value for {fields[0]}, e.g. with {env_hint}=..., "
            "or fix it in settings/local.yaml / settings/mahavishnu.yaml.",
            fields=fields,
        ) from None


def _model_name(annotation: Any) -> str | None:
    return annotation.__name__ if isinstance(annotation, type) else None
