"""Settings: precedence of sources, clear errors naming field and source, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu_assets.errors import ConfigurationError
from mahavishnu_assets.settings import load_settings


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_defaults(settings_dir: Path) -> None:
    s = load_settings()
    assert s.embedder == "auto"
    assert s.embed_model == "nomic-embed-text"
    assert s.postgres.pool_max_size == 10
    assert s.uses_embedded_server


def test_precedence_defaults_committed_local_env(settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        settings_dir,
        "mahavishnu.yaml",
        "postgres:\n  pool_max_size: 11\n  pool_min_size: 2\nembed_model: a\n",
    )
    s = load_settings()
    assert (s.postgres.pool_max_size, s.postgres.pool_min_size, s.embed_model) == (11, 2, "a")

    write(settings_dir, "local.yaml", "postgres:\n  pool_max_size: 12\n")
    s = load_settings()
    # local.yaml overrides one nested field and leaves its siblings from the committed file.
    assert (s.postgres.pool_max_size, s.postgres.pool_min_size, s.embed_model) == (12, 2, "a")

    monkeypatch.setenv("MAHAVISHNU_POSTGRES__POOL_MAX_SIZE", "13")
    monkeypatch.setenv("MAHAVISHNU_EMBED_MODEL", "b")
    s = load_settings()
    assert (s.postgres.pool_max_size, s.postgres.pool_min_size, s.embed_model) == (13, 2, "b")


def test_interface_variables(settings_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAHAVISHNU_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MAHAVISHNU_EMBEDDER", "local")
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", "postgresql://u:pw@db.example:6543/x")
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    s = load_settings()
    assert s.home == tmp_path / "h"
    assert s.embedder == "local"
    assert not s.uses_embedded_server
    assert s.ollama.host == "http://10.0.0.5:11434"


def test_bad_env_value_names_field_source_and_fix(
    settings_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_POSTGRES__POOL_MAX_SIZE", "lots")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    err = info.value.to_dict()
    assert "postgres.pool_max_size" in err["message"]
    assert "environment variable MAHAVISHNU_POSTGRES__POOL_MAX_SIZE" in err["message"]
    assert "MAHAVISHNU_POSTGRES__POOL_MAX_SIZE" in err["suggestion"]
    assert err["error"] == "configuration_error"


def test_bad_yaml_value_names_the_file(settings_dir: Path) -> None:
    write(settings_dir, "local.yaml", "embedder: quantum\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "embedder" in info.value.message
    assert "local.yaml" in info.value.message


def test_min_above_max_is_refused(settings_dir: Path) -> None:
    write(settings_dir, "mahavishnu.yaml", "postgres:\n  pool_min_size: 20\n  pool_max_size: 5\n")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "pool_min_size" in info.value.message


def test_invalid_yaml_syntax(settings_dir: Path) -> None:
    write(settings_dir, "mahavishnu.yaml", "postgres: [unclosed\n")
    with pytest.raises(ConfigurationError):
        load_settings()


def test_password_never_in_repr_dump_or_error(settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("MAHAVISHNU_POSTGRES__PASSWORD", secret)
    monkeypatch.setenv("MAHAVISHNU_DATABASE_URL", f"postgresql://u:{secret}@h/db")
    s = load_settings()
    assert secret not in repr(s)
    assert secret not in str(s.model_dump())
    assert secret not in s.model_dump_json()
    # A bad value elsewhere must not echo any input, secret or not.
    monkeypatch.setenv("MAHAVISHNU_POSTGRES__PORT", secret)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert secret not in str(info.value.to_dict())


def test_environment_json_and_nested_variables_merge(
    settings_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(settings_dir, "local.yaml", "ingest:\n  chunk_lines: 3\n  file_batch_size: 4\n")
    monkeypatch.setenv("MAHAVISHNU_INGEST", '{"chunk_lines": 9, "max_file_bytes": 5}')
    monkeypatch.setenv("mahavishnu_ingest__max_file_bytes", "10")  # names in any case; nested wins over JSON
    monkeypatch.setenv("MAHAVISHNU_INGEST__EXCLUDE_PATTERNS", '["*.x", "y/*"]')
    monkeypatch.setenv("MAHAVISHNU_INGEST__REPOSITORIES", '[{"name": "r", "path": "/tmp"}]')
    monkeypatch.setenv("MAHAVISHNU_INGEST__NOT_A_SETTING", "1")
    monkeypatch.setenv("MAHAVISHNU_HOME__X", "1")  # a scalar setting has no parts: ignored
    s = load_settings(postgres={"port": 7})
    assert (s.ingest.chunk_lines, s.ingest.max_file_bytes, s.ingest.file_batch_size) == (9, 10, 4)
    assert s.ingest.exclude_patterns == ["*.x", "y/*"]
    assert [r.name for r in s.ingest.repositories] == ["r"]
    assert s.home == Path(".mahavishnu") and s.postgres.port == 7


def test_a_list_setting_given_without_json_names_the_variable(
    settings_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_INGEST__EXCLUDE_PATTERNS", "*.lock")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "MAHAVISHNU_INGEST__EXCLUDE_PATTERNS" in info.value.message
    assert "JSON" in info.value.to_dict()["suggestion"]


def test_a_settings_file_that_is_not_a_mapping_is_refused(settings_dir: Path) -> None:
    write(settings_dir, "local.yaml", "- a\n- b\n")
    with pytest.raises(ConfigurationError, match="must hold a mapping"):
        load_settings()


def test_a_whole_group_given_as_bad_json_names_its_variable(
    settings_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_INGEST__NIGHTLY_CRON", "0 4 * * *")  # a string: no JSON needed
    monkeypatch.setenv("MAHAVISHNU_INGEST", "chunk_lines=3")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.message == "Environment variable MAHAVISHNU_INGEST must be JSON for this setting"


def test_a_yaml_syntax_error_names_the_file_and_line_but_never_quotes_it(settings_dir: Path) -> None:
    write(settings_dir, "mahavishnu.yaml", "embed_model: a\n")
    write(settings_dir, "local.yaml", 'postgres:\n  password: "hunter2-secret\n  port: 1\n')
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    err = info.value.to_dict()
    assert err["message"].startswith(f"{settings_dir / 'local.yaml'} is not valid YAML at line ")
    assert "hunter2" not in str(err)


def test_a_bad_ollama_host_names_the_clients_variable(
    settings_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "ftp://10.0.0.5")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "ollama.host" in info.value.message
    assert "(from environment variable OLLAMA_HOST)" in info.value.message
    # Our own variable wins over the client's, as any MAHAVISHNU_* setting over a default.
    monkeypatch.setenv("MAHAVISHNU_OLLAMA__HOST", "10.0.0.6:1")
    assert load_settings().ollama.host == "http://10.0.0.6:1"


def test_a_bad_argument_is_named_as_such(settings_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(settings_dir, "local.yaml", "postgres:\n  port: 5433\n")
    monkeypatch.setenv("MAHAVISHNU_POSTGRES__PORT", "5434")
    with pytest.raises(ConfigurationError) as info:
        load_settings(postgres={"port": "x"})
    assert "postgres.port" in info.value.message and "(from arguments)" in info.value.message


def test_a_password_from_a_settings_file_stays_secret(settings_dir: Path) -> None:
    write(settings_dir, "local.yaml", "postgres:\n  host: db\n  password: file-Pa55\n")
    s = load_settings()
    assert s.postgres.password is not None and s.postgres.password.get_secret_value() == "file-Pa55"
    assert "file-Pa55" not in repr(s) and "file-Pa55" not in s.model_dump_json()
    assert not s.uses_embedded_server
