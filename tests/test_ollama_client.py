"""The Ollama client: the official one through its public API, with answers decoded by orjson in a transport."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mahavishnu_assets
from mahavishnu_assets.ingest.ollama_client import OrjsonResponse, OrjsonTransport, make_client
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests.ingest_helpers import DIMENSIONS

ROOT = Path(__file__).resolve().parent.parent


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_json_is_what_the_standard_decoder_reads(value: object) -> None:
    body = json.dumps(value).encode()
    assert OrjsonResponse(200, content=body).json() == httpx.Response(200, content=body).json()


@pytest.mark.parametrize(
    "body",
    [
        b'{"embeddings":[[NaN,1.0]]}',  # not JSON, but Python's decoder (and so the plain client) reads it
        b'{"s":"\\ud800"}',  # a lone surrogate
    ],
)
def test_what_orjson_refuses_goes_the_standard_way(body: bytes) -> None:
    ours, plain = OrjsonResponse(200, content=body).json(), httpx.Response(200, content=body).json()
    assert repr(ours) == repr(plain)


def test_vectors_as_go_writes_them_give_the_same_numbers() -> None:
    body = (
        b'{"model":"m","embeddings":[[0,-0.0,1e-07,-2.5E+3],[1,2,3,18446744073709551615]],"total_duration":7}'
    )
    ours = ollama.EmbedResponse(**OrjsonResponse(200, content=body).json())
    plain = ollama.EmbedResponse(**httpx.Response(200, content=body).json())
    assert np.array_equal(np.asarray(ours.embeddings), np.asarray(plain.embeddings))
    assert np.signbit(np.asarray(ours.embeddings)[0, 1])
    assert ours.model_dump(exclude={"embeddings"}) == plain.model_dump(exclude={"embeddings"})


def test_invalid_json_raises_the_standard_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        OrjsonResponse(200, content=b"<html>It works!</html>").json()


@pytest.mark.parametrize("fault", [{}, {"non_finite": True}])
async def test_answers_are_those_of_the_plain_client(fault: dict) -> None:
    with OllamaStub(dimensions=DIMENSIONS) as stub:
        ours, plain = make_client(stub.url, 5.0), ollama.AsyncClient(host=stub.url)
        try:
            stub.configure(**fault)
            texts = ["def f(): pass", "ünïcode ✓", "x" * 3000]
            mine = await ours.embed(model="nomic-embed-text", input=texts)
            theirs = await plain.embed(model="nomic-embed-text", input=texts)
            assert type(mine) is type(theirs) is ollama.EmbedResponse
            assert np.array_equal(np.asarray(mine.embeddings), np.asarray(theirs.embeddings), equal_nan=True)
            assert mine.model_dump(exclude={"embeddings"}) == theirs.model_dump(exclude={"embeddings"})
            assert len(mine.embeddings) == 3 and len(mine.embeddings[0]) == DIMENSIONS
            stub.configure(non_finite=False, error_status=404)
            with pytest.raises(ollama.ResponseError) as missing:
                await ours.embed(model="nomic-embed-text", input=["x"])
            assert missing.value.status_code == 404 and "told to fail" in missing.value.error
        finally:
            await ours.close()
            await plain.close()


async def test_closing_the_client_closes_the_transport() -> None:
    closed: list[bool] = []

    class Watched(OrjsonTransport):
        async def aclose(self) -> None:
            closed.append(True)
            await super().aclose()

    with OllamaStub(dimensions=DIMENSIONS) as stub:
        client = ollama.AsyncClient(host=stub.url, transport=Watched())
        answer = await client.embed(model="nomic-embed-text", input=["x"])
        assert len(answer.embeddings[0]) == DIMENSIONS
        await client.close()
    assert closed == [True]


def test_no_private_part_of_the_client_is_used() -> None:
    package = Path(mahavishnu_assets.__file__).parent
    private = re.compile(r"\._request\b|\._client\b|\._request_raw\b")
    found = [
        f"{path.relative_to(package)}:{n}"
        for path in package.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


def test_the_client_is_not_pinned_below_its_next_major_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [d for d in project["dependencies"] if re.match(r"ollama\b", d)]
    assert re.fullmatch(r"ollama>=0\.6(\.\d+)?,<1", spec.replace(" ", ""))
    assert not any("simdjson" in d for d in project["dependencies"])
