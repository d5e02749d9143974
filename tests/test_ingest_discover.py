"""Discovery and file classification: every skip reason, hostile repositories, secrets never stored or logged."""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import pytest

from mahavishnu_assets.database.pool import Database
from mahavishnu_assets.database.target import ConnectTarget
from mahavishnu_assets.errors import IngestError
from mahavishnu_assets.ingest.discover import (
    compile_patterns,
    discover,
    sniff_binary,
)
from mahavishnu_assets.ingest.ignore import walk_paths
from mahavishnu_assets.ingest.pipeline import ingest_repository
from mahavishnu_assets.ingest.secrets import find_secrets, is_secret_file
from mahavishnu_assets.settings import IngestSettings
from tests.ingest_helpers import git, ingest_settings, make_repo, python_module, write_files

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----\n"
)
AWS_KEY = "AKIAZ7QWERTYUIOPASDF"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def hostile_files(outside: Path) -> dict[str, str | bytes]:
    return {
        "good.py": python_module("good"),
        "image.txt": PNG,  # a PNG named .txt
        "late_nul.py": "x = 1\n" * 3000 + "\x00tail\n",  # NUL far beyond the sniffed head
        "latin1.txt": "caf\xe9 cr\xe8me\n".encode("latin-1"),
        "big.txt": "y = 1\n" * 10000,
        "vendor/lib.js": "export const vendored = 1;\n",
        "pkg/node_modules/dep/index.js": "module.exports = 1;\n",
        "app.min.js": "var a=1;\n",
        "keys/deploy.py": f"KEY = '''{PRIVATE_KEY}'''\n",
        "settings_prod.py": f"AWS_ACCESS_KEY_ID = '{AWS_KEY}'\n",
        "ci.yaml": f"token: {GITHUB_TOKEN}\n",
        ".env": "DATABASE_PASSWORD=hunter2\n",
        "minified.css": "a{color:red}" * 2000 + "\n",
        "sql_like.sql": "DROP TABLE mahavishnu.chunks; -- '); DELETE FROM x; --\nSELECT $1, $$quoted$$;\n",
    }


def _settings(database: ConnectTarget, tmp_path: Path):
    return ingest_settings(database, tmp_path / "home", None, max_file_bytes=40_000, max_line_chars=2000)


@pytest.mark.parametrize("use_git", [True, False])
async def test_every_skip_reason_is_counted_and_nothing_leaks(
    db: Database, database: ConnectTarget, tmp_path: Path, use_git: bool, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the repository\n")
    repo = make_repo(tmp_path / "repo", hostile_files(outside), use_git=use_git)
    # Symlinks: a file and a folder leaving the repository, a file staying inside, a dangling one.
    os.symlink(outside / "secret.txt", repo / "escape.txt")
    os.symlink(outside, repo / "escape_dir")
    os.symlink(repo / "good.py", repo / "alias.py")
    os.symlink(repo / "missing.py", repo / "dangling.py")
    os.mkfifo(repo / "pipe.txt")
    if use_git:
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "links")

    caplog.set_level(logging.DEBUG)
    result = await ingest_repository(db, _settings(database, tmp_path), repo, name="hostile")
    assert result.skipped == {
        "binary": 2,  # image.txt, late_nul.py
        "undecodable": 1,  # latin1.txt
        "too_large": 1,  # big.txt
        "ignored": 3,  # vendor/, node_modules/, *.min.js
        "secret": 4,  # private key, AWS key, GitHub token, .env
        "minified": 1,
        "outside_repository": 2,  # escape.txt, escape_dir
        # dangling.py, and pipe.txt where a folder walk meets it (git lists no fifos)
        "not_a_file": 1 if use_git else 2,
    }
    assert result.files_skipped == sum(result.skipped.values())
    assert result.files_changed == 3  # good.py, alias.py (inside), sql_like.sql
    async with db.connection() as conn:
        paths = sorted(r["path"] for r in await conn.fetch("SELECT path FROM mahavishnu.source_files"))
        dump = "\n".join(
            r["content"] for r in await conn.fetch("SELECT content FROM mahavishnu.chunks ORDER BY path")
        )
        sql = await conn.fetchval("SELECT content FROM mahavishnu.chunks WHERE path = 'sql_like.sql'")
        skipped_rows = {
            r["path"]: r["reason"]
            for r in await conn.fetch("SELECT path, reason FROM mahavishnu.skipped_files")
        }
    assert paths == ["alias.py", "good.py", "sql_like.sql"]
    assert "DROP TABLE mahavishnu.chunks" in sql  # stored as text, never executed
    for secret in (AWS_KEY, GITHUB_TOKEN, "hunter2", "MIIEowIBAAKCAQEA", "outside the repository"):
        assert secret not in dump
        assert secret not in caplog.text
    assert "\x00" not in dump
    assert skipped_rows["image.txt"] == "binary" and skipped_rows[".env"] == "secret"
    # Tables still intact after the SQL-like text.
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM mahavishnu.chunks") == result.chunks_written

    # A second run reads none of the judged files again and reports the same verdicts.
    again = await ingest_repository(db, _settings(database, tmp_path), repo, name="hostile")
    assert again.skipped == result.skipped
    assert again.files_read == 0


def test_git_view_respects_gitignore_and_sees_untracked_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": "*.log\nbuild_out/\n", "a.py": "a = 1\n"})
    (repo / "debug.log").write_text("noise\n")
    (repo / "build_out").mkdir()
    (repo / "build_out" / "x.py").write_text("x = 1\n")
    (repo / "new.py").write_text("untracked = 1\n")
    (repo / "a.py").unlink()  # tracked, deleted in the work tree: gone
    found = discover(repo, max_file_bytes=10_000, exclude=None)
    assert found.is_git and found.commit == git(repo, "rev-parse", "HEAD")
    assert sorted(c.path for c in found.candidates) == [".gitignore", "new.py"]


def test_plain_folder_inside_an_ignoring_work_tree_is_walked(tmp_path: Path) -> None:
    outer = make_repo(tmp_path / "outer", {".gitignore": "inner/\n"})
    inner = outer / "inner"
    inner.mkdir()
    (inner / "code.py").write_text("v = 1\n")
    (inner / ".git").mkdir()  # VCS folders are never content
    (inner / ".git" / "config").write_text("[core]\n")
    found = discover(inner, max_file_bytes=10_000, exclude=None)
    assert not found.is_git
    assert [c.path for c in found.candidates] == ["code.py"]


def test_exclude_patterns_match_at_any_depth() -> None:
    spec = compile_patterns(IngestSettings().exclude_patterns)
    assert spec is not None
    for path in (
        "node_modules/a.js",
        "web/node_modules/a/b.js",
        "x/yarn.lock",
        "a.min.js",
        "gen/foo_pb2.py",
        "vendor/lib.py",
        "src/vendor/deep/lib.py",
    ):
        assert spec.match_file(path), path
    for path in ("src/vendored.py", "lib/builder.py", "main.py", "docs/build.md", "vendor"):
        assert not spec.match_file(path), path


def test_exclude_patterns_use_gitignore_syntax() -> None:
    spec = compile_patterns(
        ["/generated", "docs/", "*.min.js", "!keep.min.js", "data/**/raw", "logs/**", "out/", "!out/keep.txt"]
        + ["# a comment", " "]
    )
    assert spec is not None
    expected = {
        "generated": True,  # anchored at the root
        "generated/x.py": True,
        "src/generated/x.py": False,
        "docs/a.md": True,  # a folder at any depth
        "site/docs/a.md": True,
        "docs": False,  # `docs/` names a folder only
        "app.min.js": True,
        "web/keep.min.js": False,  # re-included by `!`
        "data/2024/raw/x.csv": True,
        "lib/data/raw/x.csv": True,  # a `/` inside: below any folder too
        "data/cooked/x.csv": False,
        "logs": False,  # `logs/**` is what the folder holds, not the folder
        "logs/today.txt": True,
        "out/keep.txt": True,  # inside an excluded folder nothing is re-included
        "# a comment": False,
    }
    assert {path: spec.match_file(path) for path in expected} == expected
    assert compile_patterns(["", "  ", "# only comments"]) is None
    with pytest.raises(IngestError, match="not a valid gitignore pattern"):
        compile_patterns(["ok.txt", "trailing\\"])


GITIGNORED_TREE: dict[str, str | bytes] = {
    ".gitignore": "*.log\nbuild/\n!build/keep.py\n/root_only.txt\nnested/*.tmp\n",
    "a.py": "a = 1\n",
    "debug.log": "x\n",
    "root_only.txt": "x\n",
    "build/out.py": "x = 1\n",
    "build/keep.py": "kept = 1\n",  # under an ignored folder: git cannot re-include it
    "nested/x.tmp": "x\n",
    "nested/deeper/x.tmp": "x\n",  # `nested/*.tmp` is anchored to the .gitignore's folder and one level
    "sub/.gitignore": "!keep.log\n/local/\n*.cache\n\\#hash.txt\n",
    "sub/keep.log": "kept by the deeper .gitignore\n",
    "sub/other.log": "x\n",
    "sub/root_only.txt": "kept: the root's pattern is anchored\n",
    "sub/local/x.py": "x = 1\n",
    "sub/deep/local/y.py": "kept: `/local/` is anchored to sub/\n",
    "sub/deep/z.cache": "x\n",
    "sub/#hash.txt": "x\n",
    "sub/deep/.gitignore": "*\n!*.py\n!*/\n",
    "sub/deep/w.py": "w = 1\n",
    "sub/deep/w.txt": "x\n",
}


def _git_untracked(root: Path) -> list[str]:
    """Git's own list of the folder's files, honouring only its .gitignore files (no global or user excludes)."""
    git(root, "init", "-q")
    listing = git(root, "-c", "core.excludesFile=/dev/null", "ls-files", "--others", "--exclude-standard")
    shutil.rmtree(root / ".git")
    return sorted(listing.splitlines())


def test_plain_folder_lists_what_git_would(tmp_path: Path) -> None:
    """The walk of a plain folder gives exactly git's own list of untracked, not ignored files."""
    root = tmp_path / "tree"
    write_files(root, GITIGNORED_TREE)
    ours = sorted(p.decode() for p in walk_paths(root))
    assert ours == _git_untracked(root)
    assert "sub/keep.log" in ours and "sub/deep/local/y.py" in ours and "build/keep.py" not in ours


# Lines that interact: anchoring, folder-only, negation, `**` at either end or inside, classes, escapes.
IGNORE_LINES = (
    "*.log",
    "!keep.log",
    "build/",
    "/root.txt",
    "a/*",
    "!a/b/",
    "!a/b",
    "*",
    "!*/",
    "!*.py",
    "**/gen/**",
    "docs/*.md",
    "x/**/y",
    "*.tmp",
    "!important.tmp",
    "/local/",
    "sub/",
    "!sub/",
    "c",
    "!c/d.py",
    "d/",
    "b/c/",
    "**/b",
    "a/**",
    "!**/keep*",
    "keep*",
    "\\#x",
    "b*/",
    "?.py",
    "[ab].txt",
    "a/b/*",
    "!a/b/c/",
    "a/**/",
    "sub/**/*.py",
    "!a/**/keep*",
    "/*",
    "!/a",
    "a/b",
    "**/c/*",
    "*/",
    "!**/",
    "?/",
    "/b/**",
    "b/**/",
    "[!a]*.py",
    "a/?",
    "sub/*/x.py",
    "**/a/**",
    "a/**/b/",
    "x.py ",
    "!a/**/c/*",
    "/*/b/",
)
FOLDERS = (
    "",
    "a/",
    "a/b/",
    "a/b/c/",
    "sub/",
    "sub/a/",
    "sub/a/b/",
    "build/",
    "b/",
    "b/c/",
    "gen/",
    "x/y/",
    "x/z/y/",
    "c/",
    "local/",
    "sub/local/",
)
NAMES = (
    "x.py",
    "y.log",
    "keep.log",
    "root.txt",
    "d.py",
    "t.tmp",
    "important.tmp",
    "m.md",
    "#x",
    "a.txt",
    "keepme",
)


@pytest.mark.parametrize("seed", range(12))
def test_plain_folder_matches_git_on_mixed_ignore_files(tmp_path: Path, seed: int) -> None:
    """Random trees with several .gitignore files mixing the rules above; git itself is the judge."""
    rng = random.Random(seed)
    files: dict[str, str | bytes] = {f + n: "x\n" for f in FOLDERS for n in rng.sample(NAMES, 4)}
    for folder in rng.sample(FOLDERS, 4):
        files[folder + ".gitignore"] = "\n".join(rng.sample(IGNORE_LINES, rng.randint(2, 6))) + "\n"
    root = tmp_path / "tree"
    write_files(root, files)
    assert sorted(p.decode() for p in walk_paths(root)) == _git_untracked(root)


def test_plain_folder_discovery_honours_gitignore_and_exclude_patterns(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "plain", GITIGNORED_TREE, use_git=False)
    found = discover(root, max_file_bytes=10_000, exclude=compile_patterns(["*.txt"]))
    assert not found.is_git
    assert (
        sorted(c.path for c in found.candidates)
        == [
            ".gitignore",
            "a.py",
            "nested/deeper/x.tmp",
            "sub/.gitignore",
            "sub/deep/local/y.py",  # sub/deep/.gitignore ignores everything there but Python files, itself included
            "sub/deep/w.py",
            "sub/keep.log",
        ]
    )
    # Files .gitignore hides are not listed (as in a git work tree); configured patterns are counted skips.
    assert found.skipped == {"sub/root_only.txt": "ignored"}


def test_a_symlinked_gitignore_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("*.py\n")
    root = make_repo(tmp_path / "plain", {"a.py": "a = 1\n", "b.txt": "b\n"}, use_git=False)
    os.symlink(outside, root / ".gitignore")
    assert sorted(p.decode() for p in walk_paths(root)) == [".gitignore", "a.py", "b.txt"]


def test_binary_sniffing_is_by_content() -> None:
    assert sniff_binary(PNG)
    assert sniff_binary(b"%PDF-1.7\n1 0 obj\n")
    assert sniff_binary(b"text\x00more")
    assert sniff_binary(bytes(range(1, 9)) * 100)
    assert not sniff_binary("plain ünïcode text\n\ttabs\x1b[0m escapes\n".encode())
    assert not sniff_binary(b"")


def test_reading_leaves_access_times_alone(tmp_path: Path) -> None:
    from mahavishnu_assets.ingest.discover import compile_patterns, discover, read_file

    path = tmp_path / "a.py"
    path.write_text("x = 1\n")
    # Accessed before its last change: a plain read updates the access time, even under relatime.
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_500_000_000_000_000_000))
    (candidate,) = discover(tmp_path, max_file_bytes=1000, exclude=compile_patterns([])).candidates
    assert read_file(candidate, 1000) == b"x = 1\n"
    assert path.stat().st_atime_ns == 1_000_000_000_000_000_000
    path.read_bytes()  # the check above can tell: a plain read does move it here
    assert path.stat().st_atime_ns != 1_000_000_000_000_000_000


def test_secret_detection() -> None:
    assert find_secrets(f"key = '{AWS_KEY}'")[0].kind == "AWS Access Key"
    assert find_secrets(PRIVATE_KEY)[0].kind == "Private Key"
    assert find_secrets(f"x: {GITHUB_TOKEN}")[0].kind == "GitHub Token"
    assert find_secrets("url = 'postgresql://admin:S3cr3t-pw@db.internal/prod'")
    assert not find_secrets("engine = create_engine('postgresql://scott:tiger@localhost/test')")
    assert not find_secrets("url = 'postgresql://user:${DB_PASSWORD}@db/prod'")
    assert not find_secrets(python_module("clean"))
    finding = find_secrets(f"line one\nline two {AWS_KEY}\n")[0]
    assert finding.line == 2 and AWS_KEY not in repr(finding)
    assert is_secret_file(".env") and is_secret_file("config/.env.production") and is_secret_file("id_rsa")
    assert not is_secret_file(".env.example") and not is_secret_file("environment.py")


@pytest.mark.parametrize(
    "token",
    [
        "glpat-" + "Ab3_" * 5,
        "glptt-" + "0123456789abcdefABCD" * 2,
        "glimt-" + "x1Y2z" * 5,
        "glagent-" + "Q7" * 25,
        "GR1348941" + "k9-L" * 6,
    ],
)
def test_every_gitlab_token_type_is_found(token: str) -> None:
    # Built at run time so this file holds no token-shaped literal.
    text = f"def connect():\n    token = '{token}'\n    return token\n"
    assert [f.kind for f in find_secrets(text)] == ["GitLab Token"]


def _jwt() -> str:
    import base64
    import json

    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return ".".join([part({"alg": "HS256", "typ": "JWT"}), part({"sub": "42"}), "s1gn4ture" * 3])


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        ("AccountKey=" + "Zq9+" * 22, "Azure Storage Account access key"),
        (_jwt(), "JSON Web Token"),
        ("//registry.npmjs.org/:_authToken=" + "1a2b3c4d-" * 4, "NPM tokens"),
        ("sk-" + "Ab1" * 7 + "T3BlbkFJ" + "Cd2" * 7, "OpenAI Token"),
        ("pypi-AgEIcHlwaS5vcmc" + "Xy_9" * 18, "PyPI Token"),
        ("sq0csp-" + "Qw3-" * 11, "Square OAuth Secret"),
        ("ghs_" + "Zz9" * 12, "GitHub Token"),
    ],
)
def test_plugins_gated_by_a_substring_still_find_their_secret(secret: str, kind: str) -> None:
    # Built at run time so this file holds no token-shaped literal.
    text = f"def connect():\n    value = '{secret}'\n    return value\n"
    assert [f.kind for f in find_secrets(text)] == [kind]


async def test_configured_path_with_dotdot_and_missing_paths_are_refused(
    db: Database, database: ConnectTarget, tmp_path: Path
) -> None:
    from mahavishnu_assets.ingest.discover import check_configured_path

    with pytest.raises(IngestError):
        check_configured_path("/srv/repos/../etc")
    with pytest.raises(IngestError, match="does not exist"):
        await ingest_repository(db, _settings(database, tmp_path), tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(IngestError, match="not a folder"):
        await ingest_repository(db, _settings(database, tmp_path), tmp_path / "file.txt")
    with pytest.raises(IngestError, match="not allowed"):
        await ingest_repository(db, _settings(database, tmp_path), tmp_path, name="../evil")


async def test_a_name_bound_to_another_folder_is_refused_unless_named_explicitly(
    db: Database, database: ConnectTarget, tmp_path: Path
) -> None:
    one = make_repo(tmp_path / "a" / "app", {"x.py": "x = 1\n"}, use_git=False)
    two = make_repo(tmp_path / "b" / "app", {"y.py": "y = 1\n"}, use_git=False)
    settings = _settings(database, tmp_path)
    await ingest_repository(db, settings, one)
    with pytest.raises(IngestError, match="already registered"):
        await ingest_repository(db, settings, two)
    moved = await ingest_repository(db, settings, two, name="app")
    assert moved.files_deleted == 1 and moved.files_changed == 1
