"""The embed answer decoder: the same numbers as the general JSON path, or no answer at all (then that path decides)."""

from __future__ import annotations

import numpy as np
import ollama
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mahavishnu_assets.errors import EmbeddingMismatchError
from mahavishnu_assets.ingest.embed import _check_vectors
from mahavishnu_assets.ingest.ollama_client import _embed_answer


def general(body: bytes) -> ollama.EmbedResponse:
    return ollama.EmbedResponse(**orjson.loads(body))


def answer(embeddings: str, model: str = "nomic-embed-text") -> bytes:
    return (
        '{"model":"' + model + '","embeddings":' + embeddings + ',"total_duration":7,"prompt_eval_count":2}'
    ).encode()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda dims: st.lists(
            st.lists(
                st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=dims, max_size=dims
            ),
            min_size=1,
            max_size=5,
        )
    )
)
def test_the_same_numbers_and_fields_as_the_general_path(vectors: list[list[float]]) -> None:
    body = orjson.dumps({"model": "m", "embeddings": vectors, "total_duration": 5, "load_duration": 1})
    fast, slow = _embed_answer(body), general(body)
    assert fast is not None
    assert fast.embeddings.dtype == np.float64
    assert np.array_equal(fast.embeddings, np.asarray(slow.embeddings, dtype=np.float64))
    assert fast.model_dump(exclude={"embeddings"}) == slow.model_dump(exclude={"embeddings"})


def test_integers_exponents_and_negative_zero_as_go_writes_them() -> None:
    body = answer("[[0,-0.0,1e-07,-2.5E+3],[1,2,3,18446744073709551615]]")
    fast = _embed_answer(body)
    assert fast is not None
    assert fast.embeddings.shape == (2, 4)
    assert np.array_equal(fast.embeddings, np.asarray(general(body).embeddings, dtype=np.float64))
    assert np.signbit(fast.embeddings[0, 1])


@pytest.mark.parametrize(
    "body",
    [
        answer("[[1,[2],3]]"),  # nested deeper: flattening would hide it
        answer("[[1,2,3],[4,5]]"),  # vectors of different sizes
        answer('[[1,"x",3]]'),
        answer("[[1,null,3]]"),
        answer("[[NaN,1,3]]"),  # not JSON (the standard library reads it)
        answer("[1,2,3]"),
        answer('{"a":[1]}'),
        answer("[[1,2]]", model="odd[name]"),  # a '[' elsewhere: the general path, which is just slower
        b'[{"embeddings":[[1,2]]}]',
        b'{"model":"m"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"model":"\xff","embeddings":[[1,2]]}',  # not UTF-8
        b"<html>It works!</html>",
    ],
)
def test_anything_else_goes_the_general_way(body: bytes) -> None:
    assert _embed_answer(body) is None


def test_the_matrix_gets_the_same_checks_and_messages() -> None:
    fast = _embed_answer(answer("[[1,2,3],[4,5,6]]"))
    assert fast is not None
    matrix = _check_vectors(fast.embeddings, 2, 3, "model 'm'")
    assert matrix.dtype == np.dtype(">f4") and matrix.tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(EmbeddingMismatchError, match="returned 2 vectors for 3 inputs"):
        _check_vectors(fast.embeddings, 3, 3, "model 'm'")
    with pytest.raises(EmbeddingMismatchError, match=r"vector of 3 dimensions \(input 0\), expected 4"):
        _check_vectors(fast.embeddings, 2, 4, "model 'm'")
    huge = _embed_answer(answer("[[1e300,2,3]]"))  # finite as float64, not as the float32 stored
    assert huge is not None
    with pytest.raises(EmbeddingMismatchError, match="non-finite"):
        _check_vectors(huge.embeddings, 1, 3, "model 'm'")
    empty = _embed_answer(answer("[]"))
    assert empty is not None
    with pytest.raises(EmbeddingMismatchError, match="returned 0 vectors for 1 inputs"):
        _check_vectors(empty.embeddings, 1, 3, "model 'm'")
