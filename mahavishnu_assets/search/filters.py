"""Search filters and their validation: values only ever travel as bind parameters."""

from __future__ import annotations

from dataclasses import dataclass

from mahavishnu_assets.errors import SearchError

MAX_K = 1000
# Far beyond any query; PostgreSQL refuses the text search vector of a few hundred kB of distinct words.
MAX_QUERY_CHARS = 100_000
# Exclusions are for a few known chunks (a quality query's own chunk), not a way to page through results.
MAX_EXCLUDED = 1000


@dataclass(frozen=True)
class SearchFilters:
    """Restrict results to one repository (by name), a path prefix, a language; leave out chunks by id (the
    retrieval-quality measure searches a docstring without its own chunk). Empty means no filter."""

    repo: str | None = None
    path_prefix: str | None = None
    language: str | None = None
    exclude_chunk_ids: tuple[int, ...] = ()

    def validated(self) -> SearchFilters:
        return SearchFilters(
            repo=_value("repo", self.repo),
            path_prefix=_value("path prefix", self.path_prefix),
            language=_value("language", self.language),
            exclude_chunk_ids=_chunk_ids(self.exclude_chunk_ids),
        )

    @property
    def any(self) -> bool:
        return bool(self.exclude_chunk_ids) or any(
            v is not None for v in (self.repo, self.path_prefix, self.language)
        )


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


def _chunk_ids(ids: object) -> tuple[int, ...]:
    if not isinstance(ids, list | tuple | set | frozenset):
        raise SearchError(f"Excluded chunk ids must be a sequence of integers, got {type(ids).__name__}")
    if len(ids) > MAX_EXCLUDED:
        raise SearchError(f"At most {MAX_EXCLUDED} chunks can be excluded, got {len(ids)}")
    for value in ids:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SearchError(f"An excluded chunk id must be an integer, got {value!r}")
    return tuple(sorted(set(ids)))


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
