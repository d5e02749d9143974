"""Search filters and their validation: values only ever travel as bind parameters."""

from __future__ import annotations

from dataclasses import dataclass

from mahavishnu_assets.errors import SearchError

MAX_K = 1000
# Far beyond any query; PostgreSQL refuses the text search vector of a few hundred kB of distinct words.
MAX_QUERY_CHARS = 100_000


@dataclass(frozen=True)
class SearchFilters:
    """Restrict results to one repository (by name), a path prefix, a language. Empty means no filter."""

    repo: str | None = None
    path_prefix: str | None = None
    language: str | None = None

    def validated(self) -> SearchFilters:
        return SearchFilters(
            repo=_value("repo", self.repo),
            path_prefix=_value("path prefix", self.path_prefix),
            language=_value("language", self.language),
        )

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.repo, self.path_prefix, self.language))


def _value(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SearchError(f"The {name} filter must be text, got {type(value).__name__}")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL, so no stored value can match; say so rather than fail in the driver.
        raise SearchError(
            f"The {name} filter contains a NUL byte",
            suggestion=f"Remove the NUL character from the {name} filter.",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SearchError(
            f"The {name} filter is not valid Unicode text (it holds a lone surrogate)",
            suggestion=f"Pass the {name} filter as valid UTF-8.",
        ) from None
    return value


def clean_query(text: str) -> str:
    """Query text as PostgreSQL and the embedder can take it: no NUL, no lone surrogates, not huge."""
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(
            f"The query has {len(text)} characters; at most {MAX_QUERY_CHARS} are searched",
            suggestion="Search for a shorter excerpt: a few lines or an identifier.",
        )
    text = text.replace("\x00", " ")
    return text.encode("utf-8", "replace").decode("utf-8")


def check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise SearchError(f"k must be an integer from 1 to {MAX_K}, got {k!r}", suggestion="Use --k 10.")
    return k
