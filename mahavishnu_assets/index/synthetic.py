"""Vectors shaped like real text embeddings (clustered, anisotropic, normalized) for tests and benchmarks.

Uniform noise is the wrong test data for ANN indexes: in 768 dimensions every point is nearly orthogonal to
every other, so nearest neighbours are meaningless and recall figures say nothing. Real embeddings share a
common direction (unrelated texts have cosine ~0.3-0.5), carry most variance in a few directions, and gather
in topics of very unequal sizes. This generator reproduces those three traits.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _spectrum(dimensions: int, decay: float) -> np.ndarray:
    """Per-direction scales falling off like a power law, as in the spectrum of real embedding sets."""
    scales = (np.arange(1, dimensions + 1, dtype=np.float64)) ** -decay
    return (scales / np.linalg.norm(scales)).astype(np.float32)


def clustered_embeddings(
    count: int,
    dimensions: int,
    *,
    clusters: int | None = None,
    seed: int = 0,
    common: float = 0.9,
    spread: float = 0.75,
    decay: float = 0.5,
) -> np.ndarray:
    """`count` unit vectors (float32) in `clusters` topics of Zipf-like sizes around a shared direction.

    `common` is the weight of the direction shared by all vectors, `spread` the within-topic scatter relative
    to the distance between topics.
    """
    # A stream of its own (not plain `seed`), so offsets drawn elsewhere with a small seed are not the very
    # directions these vectors are built from.
    rng = np.random.default_rng([seed, 0xC1057E5])
    clusters = clusters or max(1, count // 100)
    scales = _spectrum(dimensions, decay)
    shared = rng.standard_normal(dimensions).astype(np.float32)
    shared /= np.linalg.norm(shared)
    centers = rng.standard_normal((clusters, dimensions)).astype(np.float32) * scales
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    weights /= weights.sum()
    labels = rng.choice(clusters, size=count, p=weights)
    out = np.empty((count, dimensions), dtype=np.float32)
    step = 20_000
    for start in range(0, count, step):
        part = labels[start : start + step]
        noise = rng.standard_normal((len(part), dimensions)).astype(np.float32) * scales
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        block = common * shared + centers[part] + spread * noise
        out[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries_near(vectors: np.ndarray, count: int, *, seed: int = 1, noise: float = 0.6) -> np.ndarray:
    """Queries like real ones: close to stored vectors but not equal to any (so none is its own answer)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)
    return perturb(vectors[picks], rng, noise)


def perturb(vectors: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Move unit vectors by a random direction of relative size `noise`, then re-normalize."""
    base = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(base, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    base = base / norms
    jitter = rng.standard_normal(base.shape).astype(np.float32)
    jitter /= np.linalg.norm(jitter, axis=1, keepdims=True)
    moved = base + noise * jitter
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def content_hash(i: int, salt: bytes = b"") -> bytes:
    """A stable stand-in for a chunk's SHA-256, for synthetic rows."""
    import hashlib

    return hashlib.sha256(salt + i.to_bytes(8, "little")).digest()


async def create_space(
    conn: Any, dimensions: int, *, provider: str = "synthetic", model: str = "clustered"
) -> int:
    return int(
        await conn.fetchval(
            """INSERT INTO mahavishnu.embedding_spaces (provider, model, dimensions) VALUES ($1, $2, $3)
               ON CONFLICT (provider, model, dimensions, document_prefix, query_prefix)
               DO UPDATE SET model = EXCLUDED.model RETURNING id""",
            provider,
            model,
            dimensions,
        )
    )


async def load_vectors(conn: Any, space_id: int, vectors: np.ndarray, hashes: list[bytes]) -> None:
    """Binary COPY of vectors into the embeddings table (the fastest path PostgreSQL offers)."""
    dims = int(vectors.shape[1])
    step = 10_000
    for start in range(0, len(vectors), step):
        await conn.copy_records_to_table(
            "embeddings",
            schema_name="mahavishnu",
            columns=["space_id", "content_hash", "dimensions", "embedding"],
            records=[
                (space_id, hashes[i], dims, vectors[i]) for i in range(start, min(start + step, len(vectors)))
            ],
        )


async def add_chunks(
    conn: Any,
    repo: str,
    path: str,
    chunks: list[tuple[str, bytes]],
    *,
    language: str = "python",
) -> None:
    """One file of `repo` holding `chunks` (content, content hash), ten lines each."""
    repo_id = await conn.fetchval(
        """INSERT INTO mahavishnu.repositories (name, root_path) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET root_path = EXCLUDED.root_path RETURNING id""",
        repo,
        f"/synthetic/{repo}",
    )
    file_id = await conn.fetchval(
        """INSERT INTO mahavishnu.source_files (repo_id, path, content_hash, language, size_bytes, line_count)
           VALUES ($1, $2, $3, $4, 0, $5) RETURNING id""",
        repo_id,
        path,
        content_hash(len(path), path.encode()),
        language,
        10 * len(chunks),
    )
    await conn.executemany(
        """INSERT INTO mahavishnu.chunks
               (file_id, repo_id, chunk_index, path, language, start_line, end_line, content, content_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [
            (file_id, repo_id, i, path, language, 10 * i + 1, 10 * i + 10, text, digest)
            for i, (text, digest) in enumerate(chunks)
        ],
    )


async def synthetic_corpus(
    conn: Any,
    *,
    count: int,
    dimensions: int,
    repos: dict[str, int] | None = None,
    chunks_per_file: int = 10,
    seed: int = 0,
    provider: str = "synthetic",
) -> tuple[int, np.ndarray, list[bytes]]:
    """A space of `count` clustered vectors and chunks for them spread over repositories and files.

    `repos` maps repository name to its number of chunks (in order, summing to at most `count`; the rest go
    to repository `main`). Returns (space id, vectors, content hashes).
    """
    vectors = clustered_embeddings(count, dimensions, seed=seed)
    hashes = [content_hash(i, provider.encode()) for i in range(count)]
    space_id = await create_space(conn, dimensions, provider=provider)
    await load_vectors(conn, space_id, vectors, hashes)
    plan = dict(repos or {})
    plan["main"] = plan.get("main", 0) + count - sum(plan.values())
    start = 0
    for repo, size in plan.items():
        repo_id = await conn.fetchval(
            """INSERT INTO mahavishnu.repositories (name, root_path) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET root_path = EXCLUDED.root_path RETURNING id""",
            repo,
            f"/synthetic/{repo}",
        )
        firsts = list(range(start, start + size, chunks_per_file))
        paths = [f"src/module_{first // chunks_per_file}.py" for first in firsts]
        file_ids = dict(
            await conn.fetch(
                """INSERT INTO mahavishnu.source_files (repo_id, path, content_hash, language, size_bytes, line_count)
                   SELECT $1, p, sha256(convert_to(p, 'UTF8')), 'python', 0, $2 FROM unnest($3::text[]) p
                   RETURNING path, id""",
                repo_id,
                10 * chunks_per_file,
                paths,
            )
        )
        records = []
        for first, path in zip(firsts, paths, strict=True):
            for index, i in enumerate(range(first, min(first + chunks_per_file, start + size))):
                records.append(
                    (
                        file_ids[path],
                        repo_id,
                        index,
                        path,
                        "python",
                        10 * index + 1,
                        10 * index + 10,
                        f"chunk {i} of {repo}",
                        hashes[i],
                    )
                )
        await conn.copy_records_to_table(
            "chunks",
            schema_name="mahavishnu",
            columns=[
                "file_id",
                "repo_id",
                "chunk_index",
                "path",
                "language",
                "start_line",
                "end_line",
                "content",
                "content_hash",
            ],
            records=records,
        )
        start += size
    await conn.execute("ANALYZE mahavishnu.embeddings; ANALYZE mahavishnu.chunks")
    return space_id, vectors, hashes
