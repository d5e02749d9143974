"""The peers of the search-quality benchmark: LlamaIndex `VectorStoreIndex` and BM25 (`bm25s`), same model.

Both LlamaIndex variants read the files with `SimpleDirectoryReader` (its default metadata, so the file path and
name are part of each embedded text, as in any plain LlamaIndex setup), split them with `CodeSplitter`
(tree-sitter-python grammar wheel passed as `parser=`) or `SentenceSplitter` (defaults for both), embed through a
`BaseEmbedding` subclass around the same WordLlama model our side gets from the Ollama stub, and store in
`FaissVectorStore` over a flat (exact) inner-product index: the vectors are unit length, so it ranks by cosine
exactly as `SimpleVectorStore` does, and as ours searches after an ingest (no ANN index). `SimpleVectorStore`
itself would give the same top 10, but its query loops over every vector in Python (about 1.2 s per query over
27,000 nodes here) and `PGVectorStore` spent about 0.1 s per query in SQLAlchemy, which would dominate the run.

Each node's line range comes from finding its text verbatim in its file (`quality_sets.locate_lines`,
searching from the previous node's offset so repeated text is placed in order); every non-empty node was
found so on the corpora measured (the count of nodes not found is reported).

BM25 indexes the code splitter's chunk texts (without metadata) with `bm25s.tokenize` defaults (lower-case,
`\\w\\w+` tokens, English stop words, no stemmer) and `bm25s.BM25()` defaults (Lucene variant, k1=1.5,
b=0.75); hits with score 0 (no query term) are not results.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr
from quality_sets import locate_lines

Hit = tuple[str, int, int]  # path, start_line, end_line
K = 10


def load_wordllama(dimensions: int = 256) -> Any:
    import wordllama

    # Its default location is a user cache it tries to download into; the wheel's own folder has both files.
    return wordllama.WordLlama.load(
        cache_dir=Path(wordllama.__file__).parent,
        disable_download=True,
        trunc_dim=dimensions if dimensions < 256 else None,
    )


class WordLlamaEmbedding(BaseEmbedding):
    """LlamaIndex embedding of the WordLlama model shipped in its wheel (unit vectors, as the stub serves)."""

    _model: Any = PrivateAttr()

    def __init__(self, dimensions: int = 256, **kwargs: Any) -> None:
        super().__init__(model_name=f"wordllama-l2_supercat-{dimensions}", embed_batch_size=256, **kwargs)
        self._model = load_wordllama(dimensions)

    @classmethod
    def class_name(cls) -> str:
        return "WordLlamaEmbedding"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        # An empty text has no tokens to average: embedded as a space, as the stub does.
        return self._model.embed([t or " " for t in texts], norm=True).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)


@dataclass
class Split:
    """A splitter's nodes with their line ranges."""

    name: str
    nodes: list[Any]
    lines: dict[str, Hit] = field(default_factory=dict)  # node id -> (path, start, end)
    unlocated: int = 0
    seconds: float = 0.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_documents(root: Path, paths: Sequence[str]) -> list[Any]:
    from llama_index.core import SimpleDirectoryReader

    return SimpleDirectoryReader(
        input_files=[str(root / p) for p in paths], filename_as_id=True, encoding="utf-8"
    ).load_data(show_progress=False)


def split(name: str, documents: list[Any], root: Path) -> Split:
    """Nodes of `CodeSplitter` (name "code") or `SentenceSplitter` ("sentence"), each located in its file."""
    from llama_index.core.node_parser import CodeSplitter, SentenceSplitter

    if name == "code":
        import tree_sitter_python
        from tree_sitter import Language, Parser

        splitter: Any = CodeSplitter(
            language="python", parser=Parser(Language(tree_sitter_python.language()))
        )
    else:
        splitter = SentenceSplitter()
    started = time.perf_counter()
    nodes = splitter.get_nodes_from_documents(documents)
    out = Split(name, [])
    texts: dict[str, str] = {}
    cursor: dict[str, int] = {}
    for node in nodes:
        path = Path(node.metadata["file_path"]).resolve().relative_to(root.resolve()).as_posix()
        if path not in texts:
            texts[path] = (root / path).read_text(encoding="utf-8")
        content = node.get_content()
        if not content.strip():
            continue  # an empty file's empty node
        found = locate_lines(texts[path], content, cursor.get(path, 0))
        if found is None:
            out.unlocated += 1
            continue
        cursor[path] = found[2]
        out.lines[node.node_id] = (path, found[0], found[1])
        out.nodes.append(node)
    out.seconds = time.perf_counter() - started
    return out


def llamaindex_ranks(
    nodes: Split, queries: dict[str, list[str]], embed_model: WordLlamaEmbedding, dimensions: int
) -> tuple[dict[str, list[list[Hit]]], float]:
    """Top-10 hits of a `VectorStoreIndex` retriever for every query of every set, and the build seconds."""
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    started = time.perf_counter()
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(dimensions))
    index = VectorStoreIndex(
        nodes.nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    built = time.perf_counter() - started
    retriever = index.as_retriever(similarity_top_k=K)
    out: dict[str, list[list[Hit]]] = {}
    for kind, texts in queries.items():
        out[kind] = [[nodes.lines[n.node.node_id] for n in retriever.retrieve(t)] for t in texts]
    return out, built


def bm25_ranks(nodes: Split, queries: dict[str, list[str]]) -> tuple[dict[str, list[list[Hit]]], float]:
    """Top-10 hits of bm25s over the nodes' texts for every query of every set, and the index seconds."""
    import bm25s

    # bm25s sets its own logger to DEBUG when imported; its index-building notes are not progress worth showing.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    started = time.perf_counter()
    ids = [n.node_id for n in nodes.nodes]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([n.get_content() for n in nodes.nodes], show_progress=False), show_progress=False
    )
    built = time.perf_counter() - started
    out: dict[str, list[list[Hit]]] = {}
    for kind, texts in queries.items():
        if not texts:
            out[kind] = []
            continue
        tokens = bm25s.tokenize(texts, return_ids=False, show_progress=False)
        found, scores = retriever.retrieve(tokens, k=min(K, len(ids)), show_progress=False)
        out[kind] = [
            [nodes.lines[ids[int(i)]] for i, s in zip(row, row_scores, strict=True) if s > 0]
            for row, row_scores in zip(found, scores, strict=True)
        ]
    return out, built


def run_peers(
    root: Path,
    paths: Sequence[str],
    queries: dict[str, list[str]],
    *,
    dimensions: int,
    systems: Sequence[str] = ("llamaindex", "bm25"),
) -> dict[str, Any]:
    """Each peer's hits per query set, with its node count and what each step took."""
    started = time.perf_counter()
    documents = read_documents(root, paths)
    read = time.perf_counter() - started
    embed_model = WordLlamaEmbedding(dimensions) if "llamaindex" in systems else None
    out: dict[str, Any] = {}
    for name in ("code", "sentence"):
        if name == "sentence" and embed_model is None:
            break
        nodes = split(name, documents, root)
        log(
            f"  LlamaIndex {name} splitter: {len(nodes.nodes)} nodes in {nodes.seconds:.1f}s "
            f"({nodes.unlocated} not located)"
        )
        common = {"nodes": len(nodes.nodes), "unlocated": nodes.unlocated}
        if embed_model is not None:
            started = time.perf_counter()
            hits, built = llamaindex_ranks(nodes, queries, embed_model, dimensions)
            asked = time.perf_counter() - started - built
            seconds = {"read": read, "split": nodes.seconds, "index": built, "queries": asked}
            out[f"llamaindex-{name}"] = {"hits": hits, **common, "seconds": seconds}
            log(f"  LlamaIndex {name}: embedded and stored in {built:.1f}s, queries in {asked:.1f}s")
        if name == "code" and "bm25" in systems:
            started = time.perf_counter()
            hits, built = bm25_ranks(nodes, queries)
            asked = time.perf_counter() - started - built
            out["bm25"] = {"hits": hits, **common, "seconds": {"index": built, "queries": asked}}
            log(f"  BM25: indexed in {built:.1f}s, queries in {asked:.1f}s")
    return out
