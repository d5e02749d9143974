"""The peer of the ingestion benchmark: LlamaIndex IngestionPipeline + PGVectorStore + PostgresDocumentStore.

Run by benchmarks/ingest_bench.py in its own process, on the same text files our ingest stored, the same
embedding server (through llama-index-embeddings-ollama, i.e. the same official `ollama` client) and the same
PostgreSQL server. Splitting mirrors ours: CodeSplitter with the same grammar wheels for code, MarkdownNodeParser
for Markdown, SentenceSplitter for the rest; embeddings in batches of 64; the docstore with upserts (batches of 100), so a second
run skips unchanged documents (LlamaIndex's own incremental mode). PGVectorStore is created with
`hybrid_search=True` so it keeps a full-text column too, as our chunks table does.

Prints one JSON line: {"seconds": ..., "nodes": ..., "documents": ...}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--files", required=True, help="a file with one relative path per line")
    parser.add_argument("--socket-dir", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--ollama", required=True)
    parser.add_argument("--dimensions", type=int, default=768)
    parser.add_argument("--docstore-batch", type=int, default=100, help="PostgresDocumentStore batch_size")
    args = parser.parse_args()

    started = time.perf_counter()
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.node_parser import CodeSplitter, MarkdownNodeParser, SentenceSplitter
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.storage.docstore.postgres import PostgresDocumentStore
    from llama_index.storage.kvstore.postgres import PostgresKVStore
    from llama_index.vector_stores.postgres import PGVectorStore
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine
    from tree_sitter import Parser

    from mahavishnu_assets.ingest.chunk import detect_language
    from mahavishnu_assets.ingest.symbols import language_object

    sync_url = f"postgresql+psycopg2://postgres@/{args.database}?host={args.socket_dir}&port=5432"
    async_url = f"postgresql+asyncpg://postgres@/{args.database}?host={args.socket_dir}&port=5432"
    engine, async_engine = create_engine(sync_url), create_async_engine(async_url)
    # Batched docstore writes (its default batch_size is 1): the peer gets its best simple configuration.
    docstore = PostgresDocumentStore(
        PostgresKVStore(
            table_name="peer_docstore", schema_name="peer", engine=engine, async_engine=async_engine
        ),
        batch_size=100,
    )
    vector_store = PGVectorStore(
        engine=engine,
        async_engine=async_engine,
        table_name="peer_chunks",
        schema_name="peer",
        embed_dim=args.dimensions,
        hybrid_search=True,
        text_search_config="english",
    )
    embed_model = OllamaEmbedding(model_name="nomic-embed-text", base_url=args.ollama, embed_batch_size=64)

    root = Path(args.root)
    paths = [root / line for line in Path(args.files).read_text().splitlines() if line]
    documents = SimpleDirectoryReader(
        input_files=[str(p) for p in paths], filename_as_id=True, encoding="utf-8"
    ).load_data()
    groups: dict[str, list] = defaultdict(list)
    for doc in documents:
        language = detect_language(doc.metadata.get("file_path", ""), doc.text)
        groups[language].append(doc)

    nodes = 0
    for language, docs in sorted(groups.items()):
        if language in ("python", "javascript", "typescript", "tsx", "go", "rust"):
            splitter = CodeSplitter(
                language=language,
                parser=Parser(language_object(language)),
                chunk_lines=40,
                chunk_lines_overlap=5,
                max_chars=1500,
            )
        elif language == "markdown":
            splitter = MarkdownNodeParser()
        else:
            splitter = SentenceSplitter(chunk_size=400, chunk_overlap=40)
        pipeline = IngestionPipeline(
            transformations=[splitter, embed_model],
            docstore=docstore,
            vector_store=vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )
        nodes += len(pipeline.run(documents=docs))
    print(json.dumps({"seconds": time.perf_counter() - started, "nodes": nodes, "documents": len(documents)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
