"""The Ollama protocol stub serving real WordLlama vectors, through the official `ollama` client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ollama
import pytest
import wordllama

from mahavishnu_assets.testing.ollama_stub import OllamaStub


def test_wordllama_vectors_through_the_official_client() -> None:
    texts = [
        "open a connection to the database server",
        "connect to a SQL database",
        "draw a red circle on the terminal screen",
        "",
    ]
    with OllamaStub(dimensions=256, vectors="wordllama") as stub:
        answer = ollama.Client(host=stub.url).embed(model="wordllama", input=texts)
    got = np.asarray(answer.embeddings, dtype=np.float64)
    assert got.shape == (4, 256)
    assert np.all(np.isfinite(got))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    assert np.allclose(got[:3], model.embed(texts[:3], norm=True), atol=1e-6)
    # A real model: the two database sentences are nearer each other than either is to the drawing one.
    assert got[0] @ got[1] > max(got[0] @ got[2], got[1] @ got[2])


def test_wordllama_dimensions_are_checked_and_fewer_are_truncated() -> None:
    with pytest.raises(ValueError, match="at most 256"):
        OllamaStub(dimensions=768, vectors="wordllama")
    with pytest.raises(ValueError, match="unknown stub vectors"):
        OllamaStub(vectors="bert")
    with OllamaStub(dimensions=64, vectors="wordllama") as stub:
        with pytest.raises(ValueError, match="at most 256"):
            stub.configure(dimensions=512)
        vector = ollama.Client(host=stub.url).embed(model="m", input="hello").embeddings[0]
    assert len(vector) == 64
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
