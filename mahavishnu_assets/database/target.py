"""Where to connect: an external URL, host parts, or the embedded server; never printable with its password."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from mahavishnu_assets.errors import ConfigurationError


@dataclass(frozen=True)
class ConnectTarget:
    """Connection parameters; `password` stays a SecretStr until the driver needs it."""

    host: str
    port: int
    database: str
    user: str
    password: SecretStr | None = field(default=None, repr=False)
    kind: str = "external"  # "embedded" or "external"
    options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A safe, human description: no password, ever."""
        where = self.host if self.host.startswith("/") else f"{self.host}:{self.port}"
        return f"{self.kind} postgresql://{self.user}@{where}/{self.database}"

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
        }
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if "sslmode" in self.options:
            kwargs["ssl"] = self.options["sslmode"]
        return kwargs

    def with_database(self, database: str) -> ConnectTarget:
        return ConnectTarget(
            self.host, self.port, database, self.user, self.password, self.kind, self.options
        )

    def libpq_url(self, scheme: str = "postgresql") -> SecretStr:
        """A URL for tools that want one (psycopg, Dagster storage); kept secret. `scheme` may name a SQLAlchemy
        driver (`postgresql+psycopg2`)."""
        from urllib.parse import quote, urlencode

        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        query = dict(self.options)
        if self.host.startswith("/"):
            query.update(host=self.host, port=str(self.port))
            where = ""
        else:
            where = f"{self.host}:{self.port}"
        suffix = f"?{urlencode(query)}" if query else ""
        return SecretStr(f"{scheme}://{auth}@{where}/{quote(self.database, safe='')}{suffix}")

    def secrets(self) -> tuple[str, ...]:
        return (self.password.get_secret_value(),) if self.password is not None else ()


_URL_FORM = (
    "Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, with special characters percent-encoded (@ as %40)."
)
# What the URL's own parts become; every other parameter (sslmode, ...) is kept in `options`.
_PARTS = ("host", "port", "dbname", "user", "password")


def target_from_url(url: SecretStr) -> ConnectTarget:
    """Parse a postgresql:// URL as libpq does (psycopg.conninfo); no error ever shows the URL or its parts."""
    scheme, separator, rest = url.get_secret_value().partition("://")
    if not separator or scheme.lower() not in ("postgres", "postgresql"):
        raise ConfigurationError(
            "MAHAVISHNU_DATABASE_URL must start with postgresql://", suggestion=_URL_FORM
        )
    try:
        # libpq reads the scheme in lower case only.
        params = conninfo_to_dict(f"postgresql://{rest}")
    except psycopg.ProgrammingError:
        # Not libpq's message: it quotes the part it could not read, which may be the password.
        raise ConfigurationError(
            "MAHAVISHNU_DATABASE_URL is not a valid PostgreSQL URL (a bad percent-encoding or an unknown "
            "query parameter)",
            suggestion=_URL_FORM,
        ) from None
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or 5432)
    # An unencoded @ in the password leaves the rest of it in the host.
    if "@" in host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigurationError(
            "MAHAVISHNU_DATABASE_URL is not a valid PostgreSQL URL", suggestion=_URL_FORM
        )
    password = params.get("password")
    return ConnectTarget(
        host=host,
        port=int(port),
        database=str(params.get("dbname") or "postgres"),
        user=str(params.get("user") or "postgres"),
        password=SecretStr(str(password)) if password else None,
        kind="external",
        options={k: str(v) for k, v in params.items() if k not in _PARTS},
    )
