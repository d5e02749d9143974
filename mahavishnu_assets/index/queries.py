"""Query texts like the ones users type, derived from stored chunks or read from the query log, and embedded
through the space's own embedder: the samples ANN recall is measured on.

Stored vectors (even moved by noise) are poor stand-ins for queries: a query is a few words or one line, its
vector lies off the manifold of chunk vectors, and near-duplicates of stored vectors sit in the dense part of
the space where an index does best. So the tuner's queries are texts: a line of code, a sentence of a comment
or docstring, an identifier, each from a chunk picked by a seeded hash (deterministic), plus the queries users
actually ran (index/query_log.py). A held-out sample checks the figure: other chunks, another kind of query
(each chunk's longest line), the other half of the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
import numpy as np

from mahavishnu_assets.errors import AnnIndexError, EmbeddingError
from mahavishnu_assets.index.measure import sample_queries
from mahavishnu_assets.index.query_log import logged_queries
from mahavishnu_assets.index.registry import Space

if TYPE_CHECKING:
    from mahavishnu_assets.ingest.embed import Embedder
    from mahavishnu_assets.settings import Settings

logger = logging.getLogger(__name__)

TUNE_SEED = 0x7E57_0A1E
HELDOUT_SEED = 0x4E1D_0017
TUNE_KINDS = ("line", "comment", "identifier")
MAX_QUERY_CHARS = 200
# A chunk can yield nothing (only braces, keywords, blank lines): read more chunks than queries are wanted.
OVERSAMPLE = 3
# Logged queries fill at most this share of a sample: the rest keeps covering the whole corpus.
LOG_SHARE = 0.5
# Fewer texts than this (a space of almost only trivial chunks) say too little: stored vectors stand in.
MIN_TEXT_QUERIES = 10

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINED = re.compile(
    r"\b(?:def|class|function|func|fn|struct|enum|interface|trait|type|impl|module|const|let|var)\s+"
    r"([A-Za-z_][A-Za-z0-9_]*)"
)
_CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(")
_CODE_SHAPED = re.compile(r"[a-z0-9]_[a-zA-Z]|[a-z][A-Z]")
_COMMENT_LINE = re.compile(r"^\s*(?:#+|//+|/?\*+|--|;+)\s?(?P<text>.*)$")
_DOCSTRING = re.compile(r"(?s)(\"\"\"|''')(?P<text>.*?)\1")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Lines that say nothing about the code around them: block punctuation and bare keywords.
_TRIVIAL_WORDS = frozenset(
    "try except finally else elif if for while do pass return break continue end begin self this none null "
    "true false nil def class fn func function import from export default package public private protected "
    "static async await yield raise throw new var let const in is not and or then fi done esac".split()
)
_STOP_IDENTIFIERS = frozenset({"self", "cls", "this", "None", "True", "False", "return", "import", "from"})


@dataclass(frozen=True)
class QuerySample:
    """Query texts with where each came from, their vectors once embedded, and the chunks they came from."""

    texts: list[str]
    kinds: list[str]
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    chunks: frozenset[bytes] = frozenset()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for kind in self.kinds:
            out[kind] = out.get(kind, 0) + 1
        return out

    def __len__(self) -> int:
        return len(self.texts)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_QUERY_CHARS:
        return text
    cut = text.rfind(" ", 0, MAX_QUERY_CHARS)
    return text[: cut if cut > MAX_QUERY_CHARS // 2 else MAX_QUERY_CHARS]


def is_trivial(line: str) -> bool:
    """Whether a line is too bare to be anyone's query: short, mostly punctuation, or only keywords."""
    text = line.strip()
    if len(text) < 12:
        return True
    words = _WORD.findall(text)
    meaningful = [w for w in words if len(w) > 1 and w.lower() not in _TRIVIAL_WORDS]
    if len(meaningful) < 2:
        return True
    letters = sum(c.isalnum() for c in text)
    return letters < len(text) * 0.5


def code_lines(content: str) -> list[str]:
    return [_clip(line) for line in content.splitlines() if not is_trivial(line)]


def comment_sentences(content: str) -> list[str]:
    """Sentences of docstrings and comments, three words or more."""
    pieces = [m["text"] for m in _DOCSTRING.finditer(content)]
    comment: list[str] = []
    for line in content.splitlines():
        m = _COMMENT_LINE.match(line)
        if m and not line.lstrip().startswith("#!"):
            comment.append(m["text"].strip())
        elif comment:
            pieces.append(" ".join(comment))
            comment = []
    if comment:
        pieces.append(" ".join(comment))
    out = []
    for piece in pieces:
        for sentence in _SENTENCE_END.split(" ".join(piece.split())):
            if len(_WORD.findall(sentence)) >= 3:
                out.append(_clip(sentence))
    return out


def _searchable(name: str) -> bool:
    # Dunder names (`__init__`) are in every class and nobody looks for one in particular.
    return (
        len(name) >= 4
        and name not in _STOP_IDENTIFIERS
        and not (name.startswith("__") and name.endswith("__"))
    )


def identifiers(content: str) -> list[str]:
    """Names the chunk defines; failing those, the names it calls or that are spelled like code (snake_case,
    camelCase), not plain words of its comments."""
    defined = [name for name in _DEFINED.findall(content) if _searchable(name)]
    if defined:
        return list(dict.fromkeys(defined))
    used = [m for m in _CALLED.findall(content) if _searchable(m)]
    used += [w for w in _WORD.findall(content) if _searchable(w) and _CODE_SHAPED.search(w)]
    return list(dict.fromkeys(used))


_DERIVE: dict[str, Callable[[str], list[str]]] = {
    "line": code_lines,
    "comment": comment_sentences,
    "identifier": identifiers,
}


def derive_query(
    content: str, rng: np.random.Generator, kinds: Sequence[str] = TUNE_KINDS
) -> tuple[str, str] | None:
    """(kind, text) of one query a user might type to find this chunk, or None when it offers none of `kinds`.

    The kind is drawn among those the chunk offers, then the text among the chunk's options of that kind."""
    offered = [(kind, options) for kind in kinds if (options := _DERIVE[kind](content))]
    if not offered:
        return None
    kind, options = offered[int(rng.integers(len(offered)))]
    return kind, options[int(rng.integers(len(options)))]


def longest_line(content: str) -> str | None:
    """The chunk's longest non-trivial line: a held-out query of another shape than the tuner's."""
    lines = code_lines(content)
    return max(lines, key=lambda s: (len(s), s)) if lines else None


def _seed_bytes(seed: int) -> bytes:
    return int(seed).to_bytes(8, "little", signed=False)


async def sampled_chunks(
    conn: asyncpg.Connection, space_id: int, count: int, *, seed: int, exclude: Sequence[bytes] = ()
) -> list[tuple[bytes, str]]:
    """(content hash, content) of `count` chunks of the space, in an order fixed by `seed` (a hash of the
    content hash: uniform over distinct chunks, the same on every run over the same data), none in `exclude`."""
    skip = set(exclude)
    # Excluded chunks are dropped here rather than in SQL: comparing every row with a long array costs more
    # than reading as many rows again.
    rows = await conn.fetch(
        """SELECT e.content_hash,
                  (SELECT c.content FROM mahavishnu.chunks c WHERE c.content_hash = e.content_hash LIMIT 1)
                      AS content
             FROM mahavishnu.embeddings e
            WHERE e.space_id = $1
              AND EXISTS (SELECT 1 FROM mahavishnu.chunks c WHERE c.content_hash = e.content_hash)
            ORDER BY sha256(e.content_hash || $2::bytea), e.content_hash
            LIMIT $3""",
        int(space_id),
        _seed_bytes(seed),
        int(count) + len(skip),
    )
    out = [(r["content_hash"], r["content"]) for r in rows if r["content_hash"] not in skip]
    return [(digest, content) for digest, content in out[:count] if content is not None]


def _log_half(text: str, seed: int) -> int:
    """Which half of the log a query belongs to: the tuner's (0) or the held-out check's (1)."""
    return hashlib.sha256(_seed_bytes(seed) + text.encode("utf-8", "replace")).digest()[0] & 1


async def _from_log(
    conn: asyncpg.Connection, space_id: int, count: int, half: int, log_size: int
) -> tuple[list[str], list[str]]:
    if count <= 0 or log_size <= 0:
        return [], []
    texts = [q for q in await logged_queries(conn, space_id, log_size) if _log_half(q, TUNE_SEED) == half]
    # Newest first, so a log that outgrew the share gives the queries users run now.
    texts = [_clip(t) for t in texts[:count] if t.strip()]
    return texts, ["log"] * len(texts)


async def tuning_texts(
    conn: asyncpg.Connection, space_id: int, count: int, *, seed: int = TUNE_SEED, log_size: int = 1000
) -> QuerySample:
    """The tuner's query texts: up to half from the log's first half, the rest derived from chunks."""
    texts, kinds = await _from_log(conn, space_id, int(count * LOG_SHARE), 0, log_size)
    wanted = count - len(texts)
    rng = np.random.default_rng(seed)
    used: list[bytes] = []
    seen = set(texts)
    # Each kind gets an equal share: every chunk offers an identifier but few a comment, and drawing freely
    # would fill the sample with identifiers (the hardest queries for an index) and bias the figure low.
    quota = -(-wanted // len(TUNE_KINDS))
    filled = dict.fromkeys(TUNE_KINDS, 0)
    spare: list[tuple[bytes, str]] = []

    def take(digest: bytes, content: str, open_kinds: Sequence[str]) -> bool:
        found = derive_query(content, rng, open_kinds)
        if found is None or found[1] in seen:
            return False
        seen.add(found[1])
        kinds.append(found[0])
        texts.append(found[1])
        used.append(digest)
        filled[found[0]] += 1
        return True

    for digest, content in await sampled_chunks(conn, space_id, wanted * OVERSAMPLE, seed=seed):
        if len(texts) >= count:
            break
        open_kinds = [k for k in TUNE_KINDS if filled[k] < quota]
        if not take(digest, content, open_kinds):
            spare.append((digest, content))
    # A corpus short of one kind (few comments) fills the rest with the others, from the chunks passed over.
    for digest, content in spare:
        if len(texts) >= count:
            break
        take(digest, content, TUNE_KINDS)
    return QuerySample(texts, kinds, chunks=frozenset(used))


async def heldout_texts(
    conn: asyncpg.Connection,
    space_id: int,
    count: int,
    *,
    exclude: Sequence[bytes] = (),
    seed: int = HELDOUT_SEED,
    log_size: int = 1000,
) -> QuerySample:
    """A held-out check: up to half from the log's other half, the rest the longest line of chunks the
    tuner did not use, in another seeded order."""
    texts, kinds = await _from_log(conn, space_id, int(count * LOG_SHARE), 1, log_size)
    seen = set(texts)
    used: list[bytes] = []
    for digest, content in await sampled_chunks(
        conn, space_id, (count - len(texts)) * OVERSAMPLE, seed=seed, exclude=exclude
    ):
        if len(texts) >= count:
            break
        line = longest_line(content)
        if line is None or line in seen:
            continue
        seen.add(line)
        texts.append(line)
        kinds.append("longest_line")
        used.append(digest)
    return QuerySample(texts, kinds, chunks=frozenset(used))


async def embed_query_texts(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Query vectors as search makes them: through the embedder of the space."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = await embedder.embed_queries(texts)
    return np.asarray(vectors, dtype=np.float32)


@dataclass
class RecallQueries:
    """The tuner's query vectors, the held-out ones (None without an embedder), and how they were made."""

    source: str  # "text": texts embedded through the embedder; "stored_vectors": the announced fallback
    tune: np.ndarray
    heldout: np.ndarray | None
    tune_kinds: dict[str, int] = field(default_factory=dict)
    heldout_kinds: dict[str, int] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


async def embedder_for_space(settings: Settings, space: Space) -> tuple[Embedder | None, str]:
    """The embedder that makes this space's query vectors under these settings, or None and why not.

    `local` runs anywhere; an Ollama space needs the settings' model and, with MAHAVISHNU_EMBEDDER=auto, a
    reachable server (with `ollama` it is required: embedding then fails loudly rather than falling back)."""
    from mahavishnu_assets.ingest.embed import (
        LOCAL_PROVIDER,
        OLLAMA_PROVIDER,
        make_embedder,
        normalize_model_name,
        ollama_reachable,
    )

    if space.provider == LOCAL_PROVIDER:
        candidate = make_embedder(settings.model_copy(update={"embedder": "local"}))
    elif space.provider == OLLAMA_PROVIDER:
        if normalize_model_name(settings.embed_model) != space.model:
            return None, f"the settings choose the Ollama model {settings.embed_model!r}, not {space.model!r}"
        if settings.embedder == "local":
            return None, "MAHAVISHNU_EMBEDDER=local, so Ollama is not asked"
        if settings.embedder == "auto":
            urls = settings.ollama.urls
            why = await asyncio.to_thread(ollama_reachable, urls)
            if why is not None:
                return None, f"Ollama is not reachable at {', '.join(urls)} ({why})"
        candidate = make_embedder(settings.model_copy(update={"embedder": "ollama"}))
    else:
        return None, f"no configured embedder makes vectors of provider {space.provider!r}"
    if not matches(candidate, space):
        await candidate.aclose()
        return None, f"the configured embedder's space is {candidate.key.describe()}"
    assume = getattr(candidate, "assume_dimensions", None)
    if assume is not None:
        assume(space.dimensions)
    return candidate, ""


def matches(embedder: Embedder, space: Space) -> bool:
    key = embedder.key
    same = (key.provider, key.model, key.document_prefix, key.query_prefix) == (
        space.provider,
        space.model,
        space.document_prefix,
        space.query_prefix,
    )
    return same and key.dimensions in (0, space.dimensions)


async def recall_queries(
    conn: asyncpg.Connection,
    space: Space,
    count: int,
    embedder: Embedder | None,
    *,
    why_none: str = "",
    log_size: int = 1000,
) -> RecallQueries:
    """`count` tuning queries and `count` held-out ones for the space, embedded through `embedder`.

    Without an embedder (or with too few texts to derive) the tuner falls back to stored vectors, with a
    warning and a notice in the report: that figure is known to flatter the index."""
    if embedder is not None:
        tune = await tuning_texts(conn, space.id, count, log_size=log_size)
        held = await heldout_texts(conn, space.id, count, exclude=sorted(tune.chunks), log_size=log_size)
        if len(tune) >= MIN_TEXT_QUERIES:
            try:
                vectors = await embed_query_texts(embedder, tune.texts + held.texts)
            except EmbeddingError as exc:
                raise AnnIndexError(
                    f"The recall sample of embedding space {space.describe()} could not be embedded: "
                    f"{exc.message}",
                    suggestion="Start the embedder of this space (Ollama at OLLAMA_HOST, the model pulled) and "
                    "run `mahavishnu index` again; with MAHAVISHNU_EMBEDDER=auto an unreachable Ollama "
                    "falls back to stored vectors, announced.",
                    space_id=space.id,
                ) from exc
            if vectors.shape[1:] != (space.dimensions,):
                raise AnnIndexError(
                    f"The embedder gave query vectors of shape {vectors.shape} for space {space.describe()}",
                    space_id=space.id,
                )
            return RecallQueries(
                "text", vectors[: len(tune)], vectors[len(tune) :], tune.counts(), held.counts()
            )
        why_none = f"only {len(tune)} query texts could be derived from its chunks"
    notice = (
        f"Recall of {space.describe()} is measured on stored vectors moved by noise, not on query texts, "
        f"because {why_none or 'no embedder was given'}: that figure flatters the index (real queries "
        "measured lower), and no held-out check is made."
    )
    logger.warning("%s", notice)
    stored = await sample_queries(conn, space.id, count)
    return RecallQueries("stored_vectors", stored, None, {"stored_vector": len(stored)}, {}, [notice])
