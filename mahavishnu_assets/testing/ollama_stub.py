"""A small HTTP server speaking Ollama's embedding API, for tests, benchmarks and offline demos.

It answers `POST /api/embed` (and the older `/api/embeddings`), `GET /api/version`, `GET /api/tags` and
`POST /api/show` like Ollama does, with deterministic, L2-normalized vectors: word-hash vectors (texts sharing
words are neighbours), real vectors of the WordLlama model shipped in its wheel (`vectors="wordllama"`, at most
256 dimensions: a small real model, for quality tests and benchmarks), or in `zero_cost` mode one of a few
precomputed vectors picked by a hash of the text (no compute at all, for measuring the client side). Faults can
be switched on while it runs: transient 5xx (the next N requests, every Nth, or a seeded share of them),
connections closed without an answer (every Nth), hanging (every request or every Nth), a fixed 4xx, refusing
inputs that contain a marker, wrong dimensions, too few vectors, non-finite values, and a fixed delay per text (a
slow model; requests are served `parallel` at a time, as a GPU would).

In a test:   `with OllamaStub(dimensions=8) as stub: ... stub.url ... stub.config.fail_next = 2`
From a shell: `python -m mahavishnu_assets.testing.ollama_stub --port 11434 [--zero-cost] [--delay-per-text S]`
              `python -m mahavishnu_assets.testing.ollama_stub --vectors wordllama` (256 dimensions)
A running server is reconfigured with `POST /_stub/config` (JSON of StubConfig fields) and reports its
counters at `GET /_stub/stats`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mahavishnu_assets.ingest.local_embed import WORDLLAMA_DIMENSIONS, wordllama_vectors

DEFAULT_MODEL = "nomic-embed-text"
VECTOR_KINDS = ("hash", "wordllama")


@dataclass
class StubConfig:
    dimensions: int = 768
    models: list[str] | None = None  # None: any model name is served
    vectors: str = "hash"  # "hash" (word hashing) or "wordllama" (the real model in its wheel)
    zero_cost: bool = False
    delay_per_text: float = 0.0  # seconds of simulated compute per input text
    parallel: int = 1  # requests computed at once (the delay is serialized beyond this)
    fail_next: int = 0  # the next N embed requests fail with `fail_status`
    fail_status: int = 503
    error_status: int | None = None  # every embed request fails with this status (e.g. 400, 404)
    reject_containing: str | None = None  # a request holding an input with this marker gets HTTP 400
    wrong_dimensions: int | None = None  # vectors of this size instead
    too_few: bool = False  # one vector fewer than inputs
    ragged: bool = False  # the last vector one dimension short
    non_finite: bool = False  # NaN in the first vector
    non_numeric: bool = False  # strings in the first vector
    hang_seconds: float = 0.0  # wait this long before answering each embed request (or every hang_every-th)
    hang_every: int = 0  # with hang_seconds: only embed requests number N, 2N, ... hang (0: all of them)
    fail_every: int = 0  # embed requests number N, 2N, ... fail with `fail_status`
    fail_ratio: float = 0.0  # this share of embed requests fails with `fail_status`, drawn from fail_seed
    fail_seed: int = 0
    reset_every: int = 0  # embed requests number N, 2N, ...: the connection is closed without an answer
    not_json: bool = False  # HTTP 200 with an HTML page (another server behind OLLAMA_HOST)
    no_embeddings: bool = False  # HTTP 200 with JSON that has no "embeddings"
    trickle_seconds: float = 0.0  # an embed answer's body is sent in 20 pieces spread over this long


@dataclass
class StubStats:
    requests: int = 0
    embed_requests: int = 0
    texts: int = 0
    failures: int = 0
    resets: int = 0  # connections closed without an answer
    hangs: int = 0
    busy_seconds: float = 0.0  # time spent in the simulated per-text delay
    first_request_at: float | None = None  # time.time() of the first embed request since the last reset
    last_response_at: float | None = None  # time.time() when the last embed answer was ready
    text_counts: Counter[str] = field(default_factory=Counter)  # sha256 of each text -> times embedded

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["text_counts"] = dict(self.text_counts)
        out["distinct_texts"] = len(self.text_counts)
        return out


class _Reset(Exception):
    """This request's connection is to be closed without an answer."""


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _json(values: Any) -> str:
    return "[" + ",".join(f"{x:.7f}" for x in values.tolist()) + "]"


class _Vectors:
    """Word-hash vector making, cached per dimension count."""

    def __init__(self, dimensions: int) -> None:
        from mahavishnu_assets.ingest.hashing import HashingVectorizer

        self.dimensions = dimensions
        self.hashing = HashingVectorizer(dimensions)
        self._precomputed: list[str] | None = None

    def json_vectors(self, texts: list[str]) -> list[str]:
        return [self.json_vector(t) for t in texts]

    def json_vector(self, text: str) -> str:
        return _json(self.hashing.vector(text))

    def cheap_json_vector(self, text: str) -> str:
        if self._precomputed is None:
            self._precomputed = [self.json_vector(f"stub cluster {i} centre") for i in range(64)]
        return self._precomputed[zlib.crc32(text.encode("utf-8", "surrogatepass")) % 64]


class _WordLlamaVectors(_Vectors):
    """Real model vectors: the offline embedder's WordLlama model, whose weights ship inside its wheel."""

    def json_vectors(self, texts: list[str]) -> list[str]:
        # An empty text is embedded as a single space, as Ollama gives every input some vector.
        return [_json(row) for row in wordllama_vectors([t or " " for t in texts], self.dimensions)]

    def json_vector(self, text: str) -> str:
        return self.json_vectors([text])[0]


def _check(config: StubConfig) -> None:
    if config.vectors not in VECTOR_KINDS:
        raise ValueError(f"unknown stub vectors {config.vectors!r}; use one of {VECTOR_KINDS}")
    if config.vectors == "wordllama" and not 1 <= config.dimensions <= WORDLLAMA_DIMENSIONS:
        raise ValueError(
            f"WordLlama gives at most {WORDLLAMA_DIMENSIONS} dimensions, not {config.dimensions}; "
            f"use dimensions={WORDLLAMA_DIMENSIONS} or fewer"
        )


class OllamaStub:
    """The server; runs in a daemon thread (`start`/`stop`, or as a context manager)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self.config = StubConfig(**config)
        _check(self.config)
        self.stats = StubStats()
        self._lock = threading.Lock()
        self._vectors: dict[tuple[str, int], _Vectors] = {}
        if self.config.vectors == "wordllama":
            # Loaded now: a model that cannot load fails the start, not the first request.
            self._vectors_for("wordllama", self.config.dimensions)
        self._compute = threading.Semaphore(max(1, self.config.parallel))
        self._random = random.Random(self.config.fail_seed)
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OllamaStub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ollama-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OllamaStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.stats = StubStats()

    def configure(self, **changes: Any) -> None:
        known = {f.name for f in fields(StubConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown stub setting {unknown[0]!r}")
        _check(StubConfig(**{**asdict(self.config), **changes}))
        for key, value in changes.items():
            setattr(self.config, key, value)
        if "parallel" in changes:
            self._compute = threading.Semaphore(max(1, self.config.parallel))
        if "fail_seed" in changes or "fail_ratio" in changes:
            self._random = random.Random(self.config.fail_seed)

    def times_embedded(self, text: str) -> int:
        return self.stats.text_counts.get(text_key(text), 0)

    # -- behaviour ----------------------------------------------------------------------------------------
    def _vectors_for(self, kind: str, dimensions: int) -> _Vectors:
        with self._lock:
            vectors = self._vectors.get((kind, dimensions))
            if vectors is None:
                make = _WordLlamaVectors if kind == "wordllama" else _Vectors
                vectors = self._vectors[kind, dimensions] = make(dimensions)
        return vectors

    def _model_ok(self, model: str) -> bool:
        if self.config.models is None:
            return True
        wanted = model if ":" in model else f"{model}:latest"
        return any((m if ":" in m else f"{m}:latest") == wanted for m in self.config.models)

    def embed(self, body: dict[str, Any]) -> tuple[int, str]:
        """Status and JSON body for an /api/embed request."""
        cfg = self.config
        model = str(body.get("model") or "")
        raw = body.get("input", "")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        with self._lock:
            self.stats.embed_requests += 1
            number = self.stats.embed_requests
            if self.stats.first_request_at is None:
                self.stats.first_request_at = time.time()
            failing = cfg.fail_next > 0
            if failing:
                cfg.fail_next -= 1
            failing = failing or _nth(number, cfg.fail_every)
            if cfg.fail_ratio and self._random.random() < cfg.fail_ratio:
                failing = True
            hanging = bool(cfg.hang_seconds) and (not cfg.hang_every or _nth(number, cfg.hang_every))
            resetting = _nth(number, cfg.reset_every)
            self.stats.hangs += hanging
            self.stats.resets += resetting
        if hanging:
            self._closing.wait(cfg.hang_seconds)
        if resetting:
            raise _Reset
        if failing:
            return self._fail(cfg.fail_status, "server busy, please try again")
        if cfg.error_status is not None:
            return self._fail(cfg.error_status, "the stub was told to fail")
        if not self._model_ok(model):
            return self._fail(404, f'model "{model}" not found, try pulling it first')
        if cfg.not_json:
            return 200, "<html><body>It works!</body></html>"
        if cfg.no_embeddings:
            return 200, json.dumps({"model": model, "error_detail": "nothing here"})
        if not all(isinstance(t, str) for t in texts):
            return self._fail(400, "input must be a string or a list of strings")
        if cfg.reject_containing and any(cfg.reject_containing in t for t in texts):
            return self._fail(400, "the input could not be processed")
        if cfg.delay_per_text and texts:
            with self._compute:
                started = time.perf_counter()
                self._closing.wait(cfg.delay_per_text * len(texts))
                busy = time.perf_counter() - started
            with self._lock:
                self.stats.busy_seconds += busy
        dims = cfg.wrong_dimensions or cfg.dimensions
        # Vectors of the wrong size are a fault to inject, of any size: word hashing makes them.
        vectors = self._vectors_for("hash" if cfg.wrong_dimensions else cfg.vectors, dims)
        if cfg.zero_cost:
            encoded = [vectors.cheap_json_vector(t) for t in texts]
        else:
            encoded = vectors.json_vectors(texts)
        if cfg.too_few and encoded:
            encoded = encoded[:-1]
        if cfg.ragged and encoded:
            encoded[-1] = "[" + ",".join(["0.5"] * (dims - 1)) + "]"
        if cfg.non_numeric and encoded:
            encoded[0] = "[" + ",".join(['"x"'] * dims) + "]"
        if cfg.non_finite and encoded:
            encoded[0] = "[" + ",".join(["NaN"] * dims) + "]"
        with self._lock:
            self.stats.texts += len(texts)
            for t in texts:
                self.stats.text_counts[text_key(t)] += 1
            self.stats.last_response_at = time.time()
        payload = (
            '{"model":' + json.dumps(model) + ',"embeddings":[' + ",".join(encoded) + "]"
            ',"total_duration":1000,"load_duration":0,"prompt_eval_count":' + str(len(texts)) + "}"
        )
        return 200, payload

    def _fail(self, status: int, message: str) -> tuple[int, str]:
        with self._lock:
            self.stats.failures += 1
        return status, json.dumps({"error": message})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "ollama-stub"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _send(self, status: int, payload: str, trickle: float = 0.0) -> None:
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if not trickle:
                        self.wfile.write(data)
                        return
                    # Never silent long enough for a read timeout, yet slow as a whole.
                    step = max(1, -(-len(data) // 20))
                    for start in range(0, len(data), step):
                        self.wfile.write(data[start : start + step])
                        self.wfile.flush()
                        if stub._closing.wait(trickle / 20):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _reset(self) -> None:
                # Closed with SO_LINGER 0: the client sees the connection reset, as when a server process dies.
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass

            def _body(self) -> dict[str, Any] | None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return None
                return body if isinstance(body, dict) else None

            def do_GET(self) -> None:
                with stub._lock:
                    stub.stats.requests += 1
                if self.path == "/api/version":
                    self._send(
                        200, "<html>It works!</html>" if stub.config.not_json else '{"version":"0.0.0-stub"}'
                    )
                elif self.path == "/api/tags":
                    names = stub.config.models or [DEFAULT_MODEL]
                    models = [
                        {"name": n if ":" in n else f"{n}:latest", "model": n, "size": 0} for n in names
                    ]
                    self._send(200, json.dumps({"models": models}))
                elif self.path == "/_stub/stats":
                    with stub._lock:
                        self._send(200, json.dumps(stub.stats.to_dict()))
                elif self.path == "/_stub/config":
                    self._send(200, json.dumps(asdict(stub.config)))
                elif self.path == "/":
                    self._send(200, '"Ollama is running"')
                else:
                    self._send(404, '{"error":"not found"}')

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                with stub._lock:
                    stub.stats.requests += 1
                body = self._body()
                if body is None:
                    self._send(400, '{"error":"invalid JSON body"}')
                    return
                try:
                    self._post(body)
                except _Reset:
                    self._reset()

            def _post(self, body: dict[str, Any]) -> None:
                if self.path == "/api/embed":
                    self._send(*stub.embed(body), trickle=stub.config.trickle_seconds)
                elif self.path == "/api/embeddings":
                    status, payload = stub.embed(
                        {"model": body.get("model"), "input": [body.get("prompt", "")]}
                    )
                    if status == 200:
                        vector = json.loads(payload)["embeddings"][0]
                        payload = json.dumps({"embedding": vector})
                    self._send(status, payload)
                elif self.path == "/api/show":
                    model = str(body.get("model") or body.get("name") or "")
                    if not stub._model_ok(model):
                        self._send(404, json.dumps({"error": f'model "{model}" not found'}))
                        return
                    info = {
                        "general.architecture": "nomic-bert",
                        "nomic-bert.context_length": 2048,
                        "nomic-bert.embedding_length": stub.config.dimensions,
                    }
                    self._send(200, json.dumps({"model_info": info, "details": {"family": "nomic-bert"}}))
                elif self.path == "/_stub/config":
                    try:
                        stub.configure(**body)
                    except (ValueError, TypeError) as exc:
                        self._send(400, json.dumps({"error": str(exc)}))
                        return
                    self._send(200, json.dumps(asdict(stub.config)))
                elif self.path == "/_stub/reset":
                    stub.reset()
                    self._send(200, "{}")
                else:
                    self._send(404, '{"error":"not found"}')

        return Handler


def _nth(number: int, every: int) -> bool:
    return every > 0 and number % every == 0


def finite(vector: list[float]) -> bool:
    return all(math.isfinite(x) for x in vector)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument(
        "--dimensions", type=int, default=None, help=f"default 768; {WORDLLAMA_DIMENSIONS} for wordllama"
    )
    parser.add_argument(
        "--vectors",
        choices=VECTOR_KINDS,
        default="hash",
        help="word-hash vectors or the real WordLlama model",
    )
    parser.add_argument("--model", action="append", help="serve only these models (default: any name)")
    parser.add_argument("--zero-cost", action="store_true", help="precomputed vectors: no compute at all")
    parser.add_argument("--delay-per-text", type=float, default=0.0, help="simulated seconds per input")
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args(argv)
    dimensions = args.dimensions or (WORDLLAMA_DIMENSIONS if args.vectors == "wordllama" else 768)
    stub = OllamaStub(
        args.host,
        args.port,
        dimensions=dimensions,
        vectors=args.vectors,
        models=args.model,
        zero_cost=args.zero_cost,
        delay_per_text=args.delay_per_text,
        parallel=args.parallel,
    )
    print(f"ollama stub listening on {stub.url}", flush=True)
    try:
        stub._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stub._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


class RecordingOllamaStub(OllamaStub):
    """The stub, also keeping every text it was asked to embed, in order (`received`), to check exactly what a
    client sends (prefixes, truncation)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        super().__init__(host, port, **config)
        self.received: list[str] = []

    def embed(self, body: dict[str, Any]) -> tuple[int, str]:
        raw = body.get("input", "")
        with self._lock:
            self.received.extend(
                t for t in ([raw] if isinstance(raw, str) else list(raw or [])) if isinstance(t, str)
            )
        return super().embed(body)
