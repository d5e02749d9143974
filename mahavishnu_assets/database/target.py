"""Where to connect: an external URL, host parts, or the embedded server; never printable with its password."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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

    def libpq_url(self) -> SecretStr:
        """A URL for tools that want one (psycopg, Dagster storage); kept secret."""
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
        return SecretStr(f"postgresql://{auth}@{where}/{quote(self.database, safe='')}{suffix}")

    def secrets(self) -> tuple[str, ...]:
        return (self.password.get_secret_value(),) if self.password is not None else ()


def target_from_url(url: SecretStr) -> ConnectTarget:
    raw = url.get_secret_value()
    try:
        parts = urlsplit(raw)
        port = parts.port or 5432
    except ValueError:
        raise ConfigurationError(
            "MAHAVISHNU_DATABASE_URL is not a valid PostgreSQL URL",
            suggestion="Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.",
        ) from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigurationError(
            "MAHAVISHNU_DATABASE_URL must start with postgresql://",
            suggestion="Use postgresql://USER:PASSWORD@HOST:PORT/DATABASE.",
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or parts.hostname or "localhost"
    if "port" in query:
        port = int(query.pop("port"))
    password = SecretStr(unquote(parts.password)) if parts.password else None
    return ConnectTarget(
        host=host,
        port=port,
        database=unquote(parts.path.lstrip("/")) or "postgres",
        user=unquote(parts.username or "postgres"),
        password=password,
        kind="external",
        options=query,
    )
