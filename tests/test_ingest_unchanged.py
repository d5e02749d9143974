"""The unchanged shortcut: a re-ingest of a clean git work tree that a run proved unchanged reads nothing.

Every change git can see must still be ingested, and anything git cannot vouch for (symlinks, plain folders,
other settings, an interrupted run) must take the full path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import MahavishnuError
from mahavishnu_assets.ingest.pipeline import IngestResult, ingest_repository
from mahavishnu_assets.settings import Settings
from mahavishnu_assets.testing.ollama_stub import OllamaStub
from tests import ingest_helpers
from tests.ingest_helpers import (
    commit_all,
    fingerprint,
    ingest_settings,
    make_repo,
    python_module,
    write_files,
)

stub = ingest_helpers.stub  # the fixture


def files() -> dict[str, str | bytes]:
    return {
        "src/alpha.py": python_module("alpha"),
        "src/beta.py": python_module("beta"),
        "README.md": "# Demo\n\nWords about the demo.\n",
        "logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),  # a skip verdict the shortcut must carry
        ".gitignore": "scratch/\n",
    }


def shortcut(result: IngestResult) -> bool:
    return "unchanged_check" in result.phases and "discover" not in result.phases


async def key_of(db: Database, name: str) -> str | None:
    async with db.connection() as conn:
        value = await conn.fetchval("SELECT unchanged_key FROM mahavishnu.repositories WHERE name = $1", name)
    return str(value) if value is not None else None


async def forget_key(db: Database, name: str) -> None:
    async with db.connection() as conn:
        await conn.execute("UPDATE mahavishnu.repositories SET unchanged_key = NULL WHERE name = $1", name)


async def proven(db: Database, settings: Settings, repo: Path) -> IngestResult:
    """A first ingest of a settled clean tree stores HEAD's content and records the key. Returned is what the
    full path reports for an unchanged re-ingest (the key forgotten once), for the shortcut to match."""
    first = await ingest_repository(db, settings, repo, name="demo")
    assert not shortcut(first) and first.files_read > 0
    key = await key_of(db, "demo")
    assert key is not None
    await forget_key(db, "demo")
    full = await ingest_repository(db, settings, repo, name="demo")
    assert not shortcut(full) and full.files_read == 0
    assert await key_of(db, "demo") == key  # the same proof, reached without reading
    return full


async def test_a_proven_clean_tree_is_not_read_again(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    second = await proven(db, settings, repo)
    async with db.connection() as conn:
        before = await fingerprint(conn)
    requests = stub.stats.embed_requests

    third = await ingest_repository(db, settings, repo, name="demo")
    assert shortcut(third)
    for field in ("files_seen", "files_skipped", "skipped", "files_unchanged", "commit", "embedding_space"):
        assert getattr(third, field) == getattr(second, field), field
    assert third.skipped == {"binary": 1}
    assert third.files_changed == third.files_read == third.chunks_written == third.embeddings_computed == 0
    assert stub.stats.embed_requests == requests
    async with db.connection() as conn:
        assert await fingerprint(conn) == before
        runs = await conn.fetch("SELECT status, stats FROM mahavishnu.ingest_runs ORDER BY id")
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    assert runs[-1]["stats"]["files_seen"] == third.files_seen
    # Ignored files are outside what is ingested: changing them keeps the shortcut.
    write_files(repo, {"scratch/tmp.py": "x = 1\n"})
    assert shortcut(await ingest_repository(db, settings, repo, name="demo"))


@pytest.mark.parametrize("change", ["edit", "add_untracked", "delete", "commit", "stage", "binary_to_text"])
async def test_every_change_git_sees_is_ingested(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub, change: str
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await proven(db, settings, repo)

    marker = "shortcut_must_not_hide_this"
    if change == "edit":
        write_files(repo, {"src/alpha.py": python_module("alpha") + f"\n# {marker}\n"})
    elif change == "add_untracked":
        write_files(repo, {"src/new.py": f"def {marker}():\n    return 1\n"})
    elif change == "delete":
        (repo / "src/beta.py").unlink()
    elif change == "commit":
        write_files(repo, {"src/alpha.py": python_module("alpha") + f"\n# {marker}\n"})
        commit_all(repo, "change")
    elif change == "stage":
        write_files(repo, {"docs/new.md": f"# {marker}\n"})
        ingest_helpers.git(repo, "add", "docs/new.md")
    elif change == "binary_to_text":
        write_files(repo, {"logo.png": f"now text: {marker}\n"})

    result = await ingest_repository(db, settings, repo, name="demo")
    assert not shortcut(result)
    async with db.connection() as conn:
        hits = await conn.fetchval(
            "SELECT count(*) FROM mahavishnu.chunks WHERE content LIKE $1", f"%{marker}%"
        )
        paths = {r["path"] for r in await conn.fetch("SELECT path FROM mahavishnu.source_files")}
    if change == "delete":
        assert "src/beta.py" not in paths and result.files_deleted == 1
    else:
        assert hits >= 1
    # The database is exactly what a clean ingest of the work tree gives.
    async with db.connection() as conn:
        incremental = await fingerprint(conn, include_commit=False)
        await conn.execute("TRUNCATE mahavishnu.repositories, mahavishnu.embeddings CASCADE")
    await ingest_repository(db, settings, repo, name="demo")
    async with db.connection() as conn:
        assert await fingerprint(conn, include_commit=False) == incremental


async def test_touched_files_keep_the_database_right(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await proven(db, settings, repo)
    async with db.connection() as conn:
        before = await fingerprint(conn)
    os.utime(repo / "src/alpha.py", (1_600_000_500, 1_600_000_500))
    result = await ingest_repository(db, settings, repo, name="demo")
    assert result.embeddings_computed == result.chunks_written == 0
    async with db.connection() as conn:
        assert await fingerprint(conn) == before


async def test_other_settings_or_space_take_the_full_path(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await proven(db, settings, repo)

    stricter = ingest_settings(database, tmp_path / "home", stub.url, exclude_patterns=["*.md"])
    result = await ingest_repository(db, stricter, repo, name="demo")
    assert not shortcut(result) and result.skipped.get("ignored") == 1 and result.files_deleted == 1
    # That run left HEAD's content under the new patterns stored (the tree did not move): it proved it.
    again = await ingest_repository(db, stricter, repo, name="demo")
    assert shortcut(again) and again.skipped == result.skipped and again.files_unchanged == 3

    local = ingest_settings(database, tmp_path / "home", None, exclude_patterns=["*.md"])
    other_space = await ingest_repository(db, local, repo, name="demo")
    assert not shortcut(other_space) and other_space.embedding_space.startswith("local:")


async def test_symlinks_and_plain_folders_never_take_the_shortcut(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    linked = make_repo(tmp_path / "linked", files(), use_git=False)
    (linked / "alias.md").symlink_to("README.md")
    ingest_helpers.git(linked, "init", "-q", "-b", "main")
    commit_all(linked, "initial")
    plain = make_repo(tmp_path / "plain", files(), use_git=False)
    for repo, name in ((linked, "linked"), (plain, "plain")):
        for _ in range(3):
            result = await ingest_repository(db, settings, repo, name=name)
            assert not shortcut(result)
        assert await key_of(db, name) is None


async def test_an_interrupted_run_clears_the_key(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await proven(db, settings, repo)

    write_files(repo, {"src/alpha.py": python_module("alpha", 5)})
    stub.configure(error_status=500)
    with pytest.raises(MahavishnuError):
        await ingest_repository(db, settings, repo, name="demo")
    assert await key_of(db, "demo") is None
    # Back as it was: git is clean again, but only a full run may say the database matches.
    write_files(repo, {"src/alpha.py": python_module("alpha")})
    stub.configure(error_status=None)
    result = await ingest_repository(db, settings, repo, name="demo")
    assert not shortcut(result)


async def test_a_refused_chunk_keeps_the_full_path(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    content = files()
    content["src/poison.py"] = "POISON = 'the server refuses this'\n"
    repo = make_repo(tmp_path / "repo", content)
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    stub.configure(reject_containing="POISON")
    for _ in range(3):
        result = await ingest_repository(db, settings, repo, name="demo")
        assert not shortcut(result) and result.skipped.get("embedding_rejected") == 1
    assert await key_of(db, "demo") is None


async def test_a_repository_with_clean_filters_never_runs_them(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    marker = tmp_path / "filter-ran"
    # A hostile repository's config: `git status` would run this clean filter on files whose stat changed.
    write_files(repo, {".gitattributes": "*.py filter=marker\n"})
    commit_all(repo, "attributes")
    ingest_helpers.git(repo, "config", "filter.marker.clean", f"sh -c 'touch {marker}; cat'")
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    for _ in range(3):
        os.utime(repo / "src/alpha.py", None)  # a fresh mtime: git would re-hash it through the filter
        result = await ingest_repository(db, settings, repo, name="demo")
        assert not shortcut(result)
    assert not marker.exists()
    assert await key_of(db, "demo") is None


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
async def test_files_git_was_told_not_to_check_are_still_checked(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub, flag: str
) -> None:
    repo = make_repo(tmp_path / "repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    await proven(db, settings, repo)
    ingest_helpers.git(repo, "update-index", flag, "src/alpha.py")
    write_files(repo, {"src/alpha.py": "def hidden_from_git_status():\n    return 1\n"})
    assert ingest_helpers.git(repo, "status", "--porcelain") == ""  # git itself no longer sees it
    result = await ingest_repository(db, settings, repo, name="demo")
    assert not shortcut(result)
    async with db.connection() as conn:
        hits = await conn.fetchval(
            "SELECT count(*) FROM mahavishnu.chunks WHERE content LIKE '%hidden_from_git_status%'"
        )
    assert hits == 1


async def test_a_folder_with_spaces_keeps_its_commit_and_the_shortcut(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    repo = make_repo(tmp_path / "my repo", files())
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    second = await proven(db, settings, repo)
    assert second.commit == ingest_helpers.git(repo, "rev-parse", "HEAD")
    assert shortcut(await ingest_repository(db, settings, repo, name="demo"))


async def test_freshly_written_files_prove_nothing_on_first_ingest(
    db: Database, database: ConnectTarget, tmp_path: Path, stub: OllamaStub
) -> None:
    """A file modified just before it was read may change again without its stat showing it."""
    repo = make_repo(tmp_path / "repo", files())
    write_files(repo, {"src/alpha.py": python_module("alpha", 3)}, settle=False)
    commit_all(repo, "fresh")
    settings = ingest_settings(database, tmp_path / "home", stub.url)
    first = await ingest_repository(db, settings, repo, name="demo")
    assert not shortcut(first) and await key_of(db, "demo") is None


def test_still_as_found_sees_every_way_the_tree_moved(tmp_path: Path) -> None:
    import time

    from mahavishnu_assets.ingest.discover import (
        compile_patterns,
        discover,
        git_clean_head,
        resolve_root,
        still_as_found,
    )

    def check(repo: Path, change: str) -> bool:
        root = resolve_root(repo)
        head = git_clean_head(root)
        assert head is not None
        found = discover(root, max_file_bytes=1_000_000, exclude=compile_patterns([]))
        started = time.time_ns()
        if change == "edit":
            write_files(repo, {"src/alpha.py": python_module("alpha", 9)})  # same old mtime, other size
        elif change == "same size":
            (repo / "src" / "beta.py").write_text(python_module("beta").replace("beta", "BETA"))
            os.utime(repo / "src" / "beta.py", (ingest_helpers.OLD, ingest_helpers.OLD))
        elif change == "untracked":
            write_files(repo, {"new.py": "x = 1\n"})
        elif change == "commit":
            write_files(repo, {"new.py": "x = 1\n"})
            commit_all(repo, "moved")
        elif change == "recent":
            started = ingest_helpers.OLD * 1_000_000_000 + 1_000_000_000  # began 1 s after the files' mtime
        return still_as_found(root, found, head, started)

    for change in ("edit", "same size", "untracked", "commit", "recent"):
        repo = make_repo(tmp_path / change.replace(" ", "_"), files())
        assert check(repo, "nothing") is True
        assert check(repo, change) is False, change
