"""MAHAVISHNU_DATABASE_URL read as libpq reads it; a bad one is refused without ever showing its password."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from mahavishnu_assets.database.target import target_from_url
from mahavishnu_assets.errors import ConfigurationError

SECRET = "pa55-Wörd"


def parse(url: str) -> tuple[str, int, str, str, str | None, dict[str, str]]:
    t = target_from_url(SecretStr(url))
    password = t.password.get_secret_value() if t.password is not None else None
    return t.host, t.port, t.database, t.user, password, t.options


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", ("h", 5432, "db", "u", None, {})),
        ("postgres://", ("localhost", 5432, "postgres", "postgres", None, {})),
        ("POSTGRESQL://u:@h:6000/db", ("h", 6000, "db", "u", None, {})),
        (
            "postgresql://%40u:p%40ss%2F1@[::1]:5433/my%20db?sslmode=require&application_name=x",
            ("::1", 5433, "my db", "@u", "p@ss/1", {"sslmode": "require", "application_name": "x"}),
        ),
        # A Unix socket folder and port given as parameters, as libpq_url writes them for the embedded server.
        (
            "postgresql://postgres@/db?host=/tmp/x%20y&port=5555",
            ("/tmp/x y", 5555, "db", "postgres", None, {}),
        ),
    ],
)
def test_urls_are_read_as_libpq_reads_them(url: str, expected: tuple) -> None:
    assert parse(url) == expected


def test_a_target_written_back_as_a_url_reads_the_same() -> None:
    target = target_from_url(SecretStr(f"postgresql://bob:{SECRET}@db:5433/mem?sslmode=disable"))
    again = target_from_url(target.libpq_url())
    assert again == target and again.password is not None and again.password.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"mysql://u:{SECRET}@h/db", "must start with postgresql://"),
        (f"host=h password={SECRET}", "must start with postgresql://"),
        (
            f"postgresql://u:{SECRET}%zz@h/db",
            "bad percent-encoding",
        ),  # libpq's own message quotes the password
        (f"postgresql://u:{SECRET}@h/db?no_such_parameter=1", "unknown query parameter"),
        (f"postgresql://u:{SECRET}@extra@h/db", "not a valid PostgreSQL URL"),  # an @ left unencoded
        (f"postgresql://u:{SECRET}@h:port/db", "not a valid PostgreSQL URL"),
        (f"postgresql://u:{SECRET}@h:70000/db", "not a valid PostgreSQL URL"),
        (f"postgresql://u:{SECRET}@h1:1,h2:2/db", "not a valid PostgreSQL URL"),
    ],
)
def test_a_bad_url_is_refused_without_its_password(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        target_from_url(SecretStr(url))
    err = info.value.to_dict()
    assert says in err["message"] and "%40" in err["suggestion"]
    assert SECRET not in json.dumps(err, ensure_ascii=False) and "extra" not in json.dumps(err)
