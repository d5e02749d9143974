"""The MCP tools and the repository summary resource over one `Memory`: schemas, checks, trimmed results.

Every tool answers with structured content (also given as compact JSON text) or, for any failure, a tool error
(`isError`) with a one-line message: arguments are declared loosely to the SDK and checked here and in the API,
so a wrong type or value reads as a sentence, never as a validation dump or a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Annotated, Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AnyHttpUrl, Field
from typing_extensions import TypedDict

from mahavishnu_assets.api import MAX_QUERY_CHARS, Memory
from mahavishnu_assets.database.pool import CONNECTION_ERRORS
from mahavishnu_assets.errors import ArgumentError, MahavishnuError, redact

logger = logging.getLogger(__name__)

MAX_K = 100
MAX_SNAPSHOTS = 100
# Content per search hit or recalled memory, and per read_lines answer: what a context window can spare.
HIT_CHARS = 2000
READ_CHARS = 20_000
MAX_CHARS = 100_000
MODES = ("hybrid", "vector", "text", "symbol")

INSTRUCTIONS = (
    "A memory of ingested code repositories and of notes agents leave. search_code finds code by meaning and "
    "keywords; find_symbol finds definitions by name; read_lines returns exact stored lines around a hit; "
    "list_repositories shows what is ingested and whether it is stale; remember and recall keep notes."
)


# -- arguments: loose types for the SDK, exact JSON schemas for the model --------------------------------------
def _arg(description: str, **schema: Any) -> Any:
    return Field(description=description, json_schema_extra=schema)


Query = Annotated[
    Any,
    _arg(
        "What to look for: words, an identifier or a question.",
        type="string",
        minLength=1,
        maxLength=MAX_QUERY_CHARS,
    ),
]
Repo = Annotated[Any, _arg("Only this repository (a name from list_repositories).", type="string")]
PathPrefix = Annotated[
    Any, _arg("Only files whose path (relative to the repository root) starts with this.", type="string")
]
Language = Annotated[Any, _arg("Only files of this language, e.g. python, typescript, go.", type="string")]
Mode = Annotated[
    Any,
    _arg(
        "hybrid (meaning and keywords, best in general), vector (meaning) or text (keywords).",
        type="string",
        enum=list(MODES),
    ),
]
K = Annotated[Any, _arg("How many results.", type="integer", minimum=1, maximum=MAX_K)]
HitChars = Annotated[
    Any,
    _arg(
        "Characters of content per result; longer content is cut at a line end and marked truncated.",
        type="integer",
        minimum=1,
        maximum=MAX_CHARS,
    ),
]
ReadChars = Annotated[
    Any,
    _arg(
        "Characters of content at most; longer content is cut at a line end, end_line follows the cut.",
        type="integer",
        minimum=1,
        maximum=MAX_CHARS,
    ),
]
SymbolName = Annotated[
    Any,
    _arg(
        "A definition's name, plain (parse_config) or qualified (Config.parse, pkg.module.func, a::b).",
        type="string",
        minLength=1,
    ),
]
FileRepo = Annotated[Any, _arg("The repository (a name from list_repositories).", type="string")]
FilePath = Annotated[
    Any, _arg("The file's path relative to the repository root, as search results give it.", type="string")
]
StartLine = Annotated[Any, _arg("First line to return (1-based, inclusive).", type="integer", minimum=1)]
EndLine = Annotated[Any, _arg("Last line to return (inclusive, >= start_line).", type="integer", minimum=1)]
Content = Annotated[Any, _arg("The note to keep.", type="string", minLength=1)]
Tags = Annotated[
    Any,
    _arg("Labels for the note, e.g. design, auth.", type="array", items={"type": "string"}, maxItems=32),
]
RecallTags = Annotated[
    Any,
    _arg("Only notes carrying every one of these tags.", type="array", items={"type": "string"}, maxItems=32),
]
Agent = Annotated[Any, _arg("The agent or session writing the note.", type="string")]
SnapshotName = Annotated[Any, _arg("A name for the snapshot (default: snapshot-<UTC time>).", type="string")]
Limit = Annotated[
    Any, _arg("At most this many, newest first.", type="integer", minimum=1, maximum=MAX_SNAPSHOTS)
]


# -- results ------------------------------------------------------------------------------------------------
class SearchHit(TypedDict):
    repo: str
    path: str
    start_line: int
    end_line: int
    score: float
    symbol: str | None
    language: str
    content: str
    truncated: bool


class SearchOutput(TypedDict):
    results: list[SearchHit]
    mode: str
    notices: list[str]


class Definition(TypedDict):
    repo: str
    path: str
    start_line: int
    end_line: int
    kind: str
    symbol: str


class SymbolOutput(TypedDict):
    results: list[Definition]


class LinesOutput(TypedDict):
    repo: str
    path: str
    start_line: int
    end_line: int
    content: str
    truncated: bool
    line_count: int
    language: str
    commit: str | None


class Repository(TypedDict):
    name: str
    commit: str | None
    files: int
    chunks: int
    last_ingested_at: str | None
    stale: bool | None
    root_path: str


class RepositoriesOutput(TypedDict):
    repositories: list[Repository]


class RememberOutput(TypedDict):
    id: int


class Recalled(TypedDict):
    id: int
    content: str
    tags: list[str]
    agent: str | None
    score: float
    memory_type: str
    created_at: str
    truncated: bool


class RecallOutput(TypedDict):
    results: list[Recalled]


class SnapshotOutput(TypedDict):
    snapshot: dict[str, Any]


class SnapshotsOutput(TypedDict):
    snapshots: list[dict[str, Any]]


# -- the tools ----------------------------------------------------------------------------------------------
class MemoryTools:
    """The tool functions; each checks its arguments, calls the API and shapes a small answer."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    async def search_code(
        self,
        query: Query = None,
        repo: Repo = None,
        path_prefix: PathPrefix = None,
        language: Language = None,
        mode: Mode = "hybrid",
        k: K = 10,
        max_chars: HitChars = HIT_CHARS,
    ) -> Annotated[CallToolResult, SearchOutput]:
        return await _answer(self._search_code(query, repo, path_prefix, language, mode, k, max_chars))

    async def _search_code(
        self, query: Any, repo: Any, path_prefix: Any, language: Any, mode: Any, k: Any, max_chars: Any
    ) -> dict[str, Any]:
        mode = _choice(mode, "mode", MODES, "hybrid")
        k = _integer(k, "k", 10, 1, MAX_K)
        limit = _integer(max_chars, "max_chars", HIT_CHARS, 1, MAX_CHARS)
        found = await self.memory.search(
            _required_text(query, "query"),
            repo=_optional_text(repo, "repo"),
            path_prefix=_optional_text(path_prefix, "path_prefix"),
            language=_optional_text(language, "language"),
            mode=mode,
            k=k,
        )
        results = []
        for hit in found["results"]:
            content, end_line, cut = trim(hit["content"], hit["start_line"], hit["end_line"], limit)
            results.append(
                {
                    "repo": hit["repo"],
                    "path": hit["path"],
                    "start_line": hit["start_line"],
                    "end_line": end_line,
                    "score": hit["score"],
                    "symbol": hit.get("symbol"),
                    "language": hit["language"],
                    "content": content,
                    "truncated": cut,
                }
            )
        return {"results": results, "mode": found["mode"], "notices": found["notices"]}

    async def find_symbol(
        self, name: SymbolName = None, repo: Repo = None
    ) -> Annotated[CallToolResult, SymbolOutput]:
        return await _answer(self._find_symbol(name, repo))

    async def _find_symbol(self, name: Any, repo: Any) -> dict[str, Any]:
        found = await self.memory.find_symbol(_required_text(name, "name"), repo=_optional_text(repo, "repo"))
        return {"results": found}

    async def read_lines(
        self,
        repo: FileRepo = None,
        path: FilePath = None,
        start_line: StartLine = None,
        end_line: EndLine = None,
        max_chars: ReadChars = READ_CHARS,
    ) -> Annotated[CallToolResult, LinesOutput]:
        return await _answer(self._read_lines(repo, path, start_line, end_line, max_chars))

    async def _read_lines(
        self, repo: Any, path: Any, start_line: Any, end_line: Any, max_chars: Any
    ) -> dict[str, Any]:
        limit = _integer(max_chars, "max_chars", READ_CHARS, 1, MAX_CHARS)
        got = await self.memory.read_lines(
            _required_text(repo, "repo"),
            _required_text(path, "path"),
            _integer(start_line, "start_line", None, None, None),
            _integer(end_line, "end_line", None, None, None),
        )
        content, end, cut = trim(got["content"], got["start_line"], got["end_line"], limit)
        return {**got, "content": content, "end_line": end, "truncated": cut}

    async def list_repositories(self) -> Annotated[CallToolResult, RepositoriesOutput]:
        return await _answer(self._list_repositories())

    async def _list_repositories(self) -> dict[str, Any]:
        return {"repositories": await self.memory.list_repositories()}

    async def remember(
        self, content: Content = None, tags: Tags = None, agent: Agent = None
    ) -> Annotated[CallToolResult, RememberOutput]:
        return await _answer(self._remember(content, tags, agent))

    async def _remember(self, content: Any, tags: Any, agent: Any) -> dict[str, Any]:
        memory_id = await self.memory.remember(
            _required_text(content, "content"), tags=tags, agent=_optional_text(agent, "agent")
        )
        return {"id": memory_id}

    async def recall(
        self, query: Query = None, k: K = 10, tags: RecallTags = None, max_chars: HitChars = HIT_CHARS
    ) -> Annotated[CallToolResult, RecallOutput]:
        return await _answer(self._recall(query, k, tags, max_chars))

    async def _recall(self, query: Any, k: Any, tags: Any, max_chars: Any) -> dict[str, Any]:
        k = _integer(k, "k", 10, 1, MAX_K)
        limit = _integer(max_chars, "max_chars", HIT_CHARS, 1, MAX_CHARS)
        found = await self.memory.recall(_required_text(query, "query"), k=k, tags=tags)
        results = []
        for hit in found:
            content, _, cut = trim(hit["content"], 1, 1 + hit["content"].count("\n"), limit)
            results.append({**hit, "content": content, "truncated": cut})
        return {"results": results}

    async def snapshot_create(self, name: SnapshotName = None) -> Annotated[CallToolResult, SnapshotOutput]:
        return await _answer(self._snapshot_create(name))

    async def _snapshot_create(self, name: Any) -> dict[str, Any]:
        return {"snapshot": await self.memory.snapshot_create(_optional_text(name, "name"))}

    async def snapshot_list(self, limit: Limit = 20) -> Annotated[CallToolResult, SnapshotsOutput]:
        return await _answer(self._snapshot_list(limit))

    async def _snapshot_list(self, limit: Any) -> dict[str, Any]:
        count = _integer(limit, "limit", 20, 1, MAX_SNAPSHOTS)
        return {"snapshots": await self.memory.snapshot_list(limit=count)}

    async def repository_summary(self, name: str) -> str:
        try:
            summary = await self.memory.repository(name)
        except MahavishnuError as exc:
            raise ResourceError(_one_line(exc)) from None
        return json.dumps(summary, separators=(",", ":"), default=str)


READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
# name -> (one-line description for a model, annotations, required arguments)
TOOLS: dict[str, tuple[str, ToolAnnotations, tuple[str, ...]]] = {
    "search_code": (
        "Search the ingested code repositories by meaning and keywords; returns the best chunks with "
        "repository, path and exact line range.",
        READ_ONLY,
        ("query",),
    ),
    "find_symbol": (
        "Find where a function, class, method or type is defined, by plain or qualified name; returns each "
        "definition's file and line.",
        READ_ONLY,
        ("name",),
    ),
    "read_lines": (
        "Read exact lines of a file as last ingested (not the live disk) by repository, path and 1-based "
        "inclusive line range.",
        READ_ONLY,
        ("repo", "path", "start_line", "end_line"),
    ),
    "list_repositories": (
        "List the ingested repositories with commit, file and chunk counts, last ingest time, and whether the "
        "work tree moved past the ingested commit (stale).",
        READ_ONLY,
        (),
    ),
    "remember": (
        "Keep a note in the shared agent memory, with optional tags and the agent or session writing it; "
        "returns its id.",
        WRITES,
        ("content",),
    ),
    "recall": (
        "Find the stored notes most similar to a query, optionally only those carrying every given tag.",
        READ_ONLY,
        ("query",),
    ),
    "snapshot_create": (
        "Take a point-in-time snapshot of the whole memory (code and notes); returns the snapshot.",
        WRITES,
        (),
    ),
    "snapshot_list": ("List the memory's snapshots, newest first.", READ_ONLY, ()),
}


def build_server(
    memory: Memory, *, token_verifier: TokenVerifier | None = None, issuer_url: str | None = None
) -> MCPServer:
    """The MCP server for `memory`; with a token verifier every HTTP request must carry a valid bearer token."""
    tools = MemoryTools(memory)
    made = [_tool(getattr(tools, name), name, *spec) for name, spec in TOOLS.items()]
    auth = None
    if token_verifier is not None:
        # Only the bearer check: no OAuth endpoints are served, so the issuer is the server itself.
        auth = AuthSettings(issuer_url=AnyHttpUrl(issuer_url or "http://127.0.0.1"), resource_server_url=None)
    server: MCPServer = MCPServer(
        "mahavishnu",
        instructions=INSTRUCTIONS,
        tools=made,
        token_verifier=token_verifier,
        auth=auth,
        log_level="WARNING",
    )
    server.resource(
        "repo://{name}/summary",
        name="repository_summary",
        description="One ingested repository: commit, counts, languages, skipped files, staleness.",
        mime_type="application/json",
    )(tools.repository_summary)
    return server


def _tool(
    fn: Any, name: str, description: str, annotations: ToolAnnotations, required: tuple[str, ...]
) -> Tool:
    tool = Tool.from_function(fn, name=name, description=description, annotations=annotations)
    # The arguments default to None for the SDK (a missing one is reported by our checks in one line); the
    # schema still tells the model which are required.
    for arg in required:
        tool.parameters["properties"][arg].pop("default", None)
    if required:
        tool.parameters["required"] = list(required)
    return tool


# -- shaping ------------------------------------------------------------------------------------------------
def trim(content: str, start_line: int, end_line: int, max_chars: int) -> tuple[str, int, bool]:
    """Content cut to at most `max_chars` at a line end, the range's last line, and whether it was cut.

    The range stays exact for what is kept; only a first line longer than the limit is cut inside the line."""
    if len(content) <= max_chars:
        return content, end_line, False
    cut = content.rfind("\n", 0, max_chars + 1)
    if cut <= 0:
        return content[:max_chars], start_line, True
    kept = content[:cut]
    return kept, start_line + kept.count("\n"), True


async def _answer(work: Awaitable[dict[str, Any]]) -> CallToolResult:
    try:
        payload = await work
    except MahavishnuError as exc:
        return _error(exc.code, _one_line(exc))
    except CONNECTION_ERRORS as exc:
        return _error(
            "database_unavailable",
            f"The database connection failed ({exc.__class__.__name__}). Retry: the server reconnects.",
        )
    except Exception as exc:
        logger.exception("tool failed unexpectedly")
        return _error("unexpected", f"Unexpected {exc.__class__.__name__}: {_flat(redact(str(exc)))[:300]}")
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)


def _error(code: str, message: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structured_content={"error": code, "message": message},
        is_error=True,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())


def _one_line(exc: MahavishnuError) -> str:
    message = _flat(exc.message)
    suggestion = _flat(exc.suggestion)
    return (
        f"{message}. {suggestion}" if suggestion and not message.endswith(".") else f"{message} {suggestion}"
    )


def _required_text(value: Any, name: str) -> str:
    if value is None:
        raise ArgumentError(f"{name} is required")
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a string, not {_json_type(value)}")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a string, not {_json_type(value)}")
    return value


def _integer(value: Any, name: str, default: int | None, low: int | None, high: int | None) -> int:
    if value is None:
        if default is None:
            raise ArgumentError(f"{name} is required")
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgumentError(f"{name} must be an integer, not {_json_type(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ArgumentError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ArgumentError(f"{name} must be one of {', '.join(choices)}, got {shown}")
    return str(value)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object" if isinstance(value, dict) else type(value).__name__)
