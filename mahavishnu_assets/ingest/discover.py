"""Find a repository's files and decide, safely, which of them can be read as text.

Inside a git work tree git's own view is used (tracked and untracked-but-not-ignored files, `.gitignore`
respected, HEAD recorded); a plain folder is walked, its `.gitignore` files applied as git would (ignore.py).
Nothing outside the repository's real root is ever read: every path is resolved and symlinks leaving the root
are refused. Decisions that need no reading (ignored
patterns, size, symlinks) are made here from `lstat`; `inspect_file` reads and classifies the rest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mahavishnu_assets.errors import IngestError
from mahavishnu_assets.ingest.ignore import VCS_DIRS, ExcludePatterns, Rule, walk_paths

logger = logging.getLogger(__name__)

# Stable skip reasons (INTERFACE.md), plus ours.
BINARY = "binary"
TOO_LARGE = "too_large"
UNDECODABLE = "undecodable"
SECRET = "secret"
OUTSIDE_REPOSITORY = "outside_repository"
IGNORED = "ignored"
NOT_A_FILE = "not_a_file"  # a directory, socket, device or broken symlink where a file was listed
BAD_PATH = "bad_path"  # a path that is not valid UTF-8
MINIFIED = "minified"  # a line longer than ingest.max_line_chars (minified code, data blobs)
UNREADABLE = "unreadable"  # permission denied, or the file vanished while being read
EMBEDDING_REJECTED = "embedding_rejected"  # the embedding server refused one of its chunks
SKIP_REASONS = (
    BINARY,
    TOO_LARGE,
    UNDECODABLE,
    SECRET,
    OUTSIDE_REPOSITORY,
    IGNORED,
    NOT_A_FILE,
    BAD_PATH,
    MINIFIED,
    UNREADABLE,
    EMBEDDING_REJECTED,
)

# Magic numbers of common binary formats that may carry no NUL byte in their first bytes.
_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ\x00",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\x7fELF",
    b"\xca\xfe\xba\xbe",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
    b"\xce\xfa\xed\xfe",
    b"\x00asm",
    b"SQLite format 3\x00",
    b"RIFF",
    b"OggS",
    b"ID3",
    b"fLaC",
    b"wOFF",
    b"wOF2",
    b"OTTO",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"!<arch>\n",
    b"\x89HDF\r\n\x1a\n",
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\x04\x22\x4d\x18",  # lz4
    b"PAR1",
    b"ARROW1",
)
# Bytes that never appear in text (C0 controls except tab, newlines, form feed, escape).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileStat:
    """What `lstat` says about a file; equal stats let an unchanged file go unread."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class Candidate:
    """A regular file inside the repository that may be ingested."""

    path: str  # relative, POSIX separators
    abs_path: str  # a str, not a Path: building thousands of Path objects costs more than the lstat calls
    stat: FileStat
    real_path: str | None = None  # for a symlink: its target, checked to be inside the root


@dataclass
class Discovery:
    root: Path
    commit: str | None
    is_git: bool
    candidates: list[Candidate] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason, decided without reading

    @property
    def files_seen(self) -> int:
        return len(self.candidates) + len(self.skipped)


@dataclass
class FileContent:
    """A text file read and accepted: its text (newlines normalized) and the hash of its bytes."""

    text: str
    content_hash: bytes
    size: int


def content_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def check_configured_path(path: Path | str) -> None:
    """Configured repository paths may not climb with `..`: settings must name the folder itself."""
    if ".." in Path(path).parts:
        raise IngestError(
            f"Repository path {str(path)!r} contains '..'",
            suggestion="Give the repository's path without '..' components (an absolute path is best).",
        )


def compile_patterns(patterns: Iterable[str]) -> ExcludePatterns | None:
    """The configured exclude patterns, in gitignore syntax as if in the root's `.gitignore`: `/name` is
    anchored at the root, `name/` names folders, `!` re-includes, `**` spans folders. One difference: a pattern
    with a `/` inside (`node_modules/*`) matches below any folder too, as the settings have always meant."""
    rules = []
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negation = "!" if pattern.startswith("!") else ""
        body = pattern[len(negation) :]
        if "/" in body.rstrip("/") and not body.startswith(("/", "**/")):
            body = "**/" + body
        rule = Rule.parse(negation + body)
        if rule is None:
            raise IngestError(
                f"Exclude pattern {raw!r} is not a valid gitignore pattern",
                suggestion="Fix ingest.exclude_patterns (gitignore syntax: 'build/', '*.min.js', '!keep.js').",
            )
        rules.append(rule)
    return ExcludePatterns(tuple(rules)) if rules else None


def _git(root: Path, *args: str) -> bytes | None:
    """Run git read-only inside `root`; None when git is missing or `root` is not in a work tree."""
    try:
        result = subprocess.run(
            # A hostile repository's config must not make git run commands for us. With that closed, a work
            # tree owned by another user (an unpacked archive, a mounted volume) is read like our own instead of
            # being refused as "dubious ownership" and losing its commit and .gitignore.
            [
                "git",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.untrackedCache=false",
                "-c",
                f"safe.directory={root}",
                *args,
            ],
            cwd=root,
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("git %s failed in %s: %s", args[0], root, exc)
        return None
    if result.returncode != 0:
        logger.debug("git %s failed in %s: %s", args[0], root, result.stderr[-300:])
        return None
    return result.stdout


def git_head(root: Path) -> str | None:
    out = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    return out.decode().strip() or None if out else None


def git_clean_head(root: Path) -> str | None:
    """HEAD when `root` is the top of a git work tree in which git sees nothing modified, staged, deleted or
    untracked (ignored files aside); None otherwise, or outside git."""
    return _clean_head(root)


# Files modified this close to being read may change again within the file system's timestamp granularity
# without their stat changing ("racy clean", as git calls it): their stat is not trusted.
RACY_NANOSECONDS = 2_000_000_000


def still_as_found(root: Path, found: Discovery, head: str, started_ns: int) -> bool:
    """Whether the work tree is still as `found` saw it and clean at `head`, so that what a run that began at
    `started_ns` stored for these files is `head`'s content: no file's stat moved since discovery, none was
    modified so close to the run that its stat could hide a change, and git sees nothing changed."""
    for candidate in found.candidates:
        if candidate.stat.mtime_ns >= started_ns - RACY_NANOSECONDS:
            return False
        try:
            st = os.lstat(candidate.abs_path)
        except OSError:
            return False
        if FileStat.of(st) != candidate.stat:
            return False
    return _clean_head(root) == head


def _top_and_head(root: Path) -> tuple[bytes, str | None] | None:
    """The top folder of the work tree holding `root` and its HEAD (None before the first commit); None outside
    git."""
    # One call for both in the common case; rev-parse prints one per line (a path may hold spaces).
    both = (_git(root, "rev-parse", "--show-toplevel", "HEAD") or b"").splitlines()
    if len(both) == 2:
        return both[0], both[1].decode()
    top = (_git(root, "rev-parse", "--show-toplevel") or b"").strip()
    return (top, None) if top else None


def _is_top(root: Path, top: bytes) -> bool:
    return os.path.realpath(os.fsdecode(top)) == str(root)


def _clean_head(root: Path) -> str | None:
    found = _top_and_head(root)
    if found is None or found[1] is None or not _is_top(root, found[0]):
        return None
    head = found[1]
    # `git status` re-hashes files through the repository's clean filters: commands its config names, which
    # we never run. Such a repository gets the full path instead (listing files runs no filter).
    if _git(root, "config", "--get-regexp", r"^filter\.") is not None:
        return None
    # Entries git was told not to check (assume-unchanged, skip-worktree) would look clean while changed.
    flags = _git(root, "ls-files", "-v", "-z")
    if flags is None or any(entry[:1].islower() or entry[:2] == b"S " for entry in flags.split(b"\0")):
        return None
    status = _git(
        root,
        # Full stat comparison whatever the repository's config says (checkStat=minimal misses changes).
        "-c",
        "core.checkStat=default",
        "-c",
        "core.trustctime=true",
        "-c",
        "core.ignoreStat=false",
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        # Submodules are never ingested (their folders are skipped), so their state does not matter, and
        # git would otherwise run inside them with their own config.
        "--ignore-submodules=all",
    )
    if status is None or status.strip(b"\0"):
        return None
    return head


def _git_paths(root: Path) -> tuple[list[bytes], str | None] | None:
    """Git's list of the work tree's files and its HEAD; None outside a work tree (or one that ignores root)."""
    found = _top_and_head(root)
    if found is None:
        return None
    top, head = found
    if not _is_top(root, top):
        # A folder inside someone's work tree: git's view only if that work tree does not ignore it.
        try:
            ignored = subprocess.run(
                [
                    "git",
                    "-c",
                    "core.fsmonitor=false",
                    "-c",
                    f"safe.directory={root}",
                    "check-ignore",
                    "-q",
                    ".",
                ],
                cwd=root,
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if ignored.returncode == 0:
            return None
    listing = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listing is None:
        return None
    return [p for p in dict.fromkeys(listing.split(b"\0")) if p], head


def resolve_root(path: Path | str) -> Path:
    root = Path(path).expanduser()
    try:
        real = root.resolve(strict=True)
    except (OSError, RuntimeError):
        raise IngestError(f"Repository path {str(path)!r} does not exist") from None
    if not real.is_dir():
        raise IngestError(f"Repository path {str(path)!r} is not a folder")
    return real


def discover(root: Path, *, max_file_bytes: int, exclude: ExcludePatterns | None) -> Discovery:
    """List the repository's files, skipping what can be judged without reading them."""
    root = resolve_root(root)
    listed = _git_paths(root)
    is_git = listed is not None
    raw_paths, commit = listed if listed is not None else (walk_paths(root), None)
    found = Discovery(root=root, commit=commit, is_git=is_git)
    root_str = str(root)
    root_prefix = root_str.rstrip("/") + "/"
    inside_dirs: dict[str, bool] = {"": True}

    def inside(real: str) -> bool:
        return real == root_str or real.startswith(root_prefix)

    def dir_inside(rel_dir: str) -> bool:
        # A listed path's folders may have become symlinks since git recorded them. Each folder is judged once:
        # inside when its parent is and it is a real folder there; only a symlinked one is resolved.
        known = inside_dirs.get(rel_dir)
        if known is None:
            parent = rel_dir.rpartition("/")[0]
            full = root_prefix + rel_dir
            try:
                st = os.lstat(full)
            except OSError:
                known = False
            else:
                if not dir_inside(parent):
                    known = False
                elif stat.S_ISLNK(st.st_mode):
                    known = inside(os.path.realpath(full))
                else:
                    known = stat.S_ISDIR(st.st_mode)
            inside_dirs[rel_dir] = known
        return known

    for raw in raw_paths:
        try:
            rel = raw.decode("utf-8")
        except UnicodeDecodeError:
            found.skipped[raw.decode("utf-8", "replace")] = BAD_PATH
            continue
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        if not rel or rel.startswith("/") or ".." in parts or "\0" in rel:
            found.skipped[rel] = OUTSIDE_REPOSITORY
            continue
        if parts[0] in VCS_DIRS:
            continue
        if exclude is not None and exclude.match_file(rel):
            found.skipped[rel] = IGNORED
            continue
        if not dir_inside(rel.rpartition("/")[0]):
            found.skipped[rel] = OUTSIDE_REPOSITORY
            continue
        abs_path = root_prefix + rel
        try:
            st = os.lstat(abs_path)
        except FileNotFoundError:
            continue  # listed by git's index but deleted from the work tree: gone
        except OSError:
            found.skipped[rel] = UNREADABLE
            continue
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(abs_path)
            if not inside(real):
                found.skipped[rel] = OUTSIDE_REPOSITORY
                continue
            try:
                st = os.stat(real)
            except OSError:
                found.skipped[rel] = NOT_A_FILE
                continue
        else:
            real = None
        if not stat.S_ISREG(st.st_mode):
            found.skipped[rel] = NOT_A_FILE
            continue
        if st.st_size > max_file_bytes:
            found.skipped[rel] = TOO_LARGE
            continue
        found.candidates.append(Candidate(rel, abs_path, FileStat.of(st), real))
    return found


def sniff_binary(data: bytes) -> bool:
    """Binary by content, not by name: NUL bytes, known magic numbers, or mostly control bytes."""
    if b"\0" in data:
        return True
    head = data[:_SNIFF_BYTES]
    if head.startswith(_MAGIC):
        return True
    if not head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL))
    return controls * 10 > len(head)


def decode_text(data: bytes) -> str | None:
    """UTF-8 (a BOM is dropped); None when the bytes are not valid UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[1:] if text.startswith("\ufeff") else text


def normalize_newlines(text: str) -> str:
    """Universal newlines, as Python's text mode reads files: lines are then split on '\\n' only."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


NOATIME = getattr(os, "O_NOATIME", 0)


def read_file(candidate: Candidate, max_file_bytes: int) -> bytes | str:
    """The file's bytes, or a skip reason. Re-checks the size: the file may have grown since lstat."""
    # O_NOFOLLOW: a file swapped for a symlink since discovery is refused, not followed out of the root.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    path = candidate.real_path or candidate.abs_path
    try:
        try:
            # Reading leaves access times alone: on a fresh clone the first read of every file would otherwise
            # write its inode. Allowed to the file's owner (and root); others read it the usual way.
            fd = os.open(path, flags | NOATIME)
        except PermissionError:
            fd = os.open(path, flags)
    except OSError:
        return UNREADABLE
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return NOT_A_FILE
        if st.st_size > max_file_bytes:
            return TOO_LARGE
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(max_file_bytes + 1)
    except OSError:
        return UNREADABLE
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_file_bytes:
        return TOO_LARGE
    return data


def inspect_file(
    candidate: Candidate,
    *,
    max_file_bytes: int,
    max_line_chars: int,
    detect_secrets: bool,
    secret_plugins: tuple[str, ...] | None = None,
) -> FileContent | str:
    """Read one file and accept it as text, or return why it is skipped."""
    from mahavishnu_assets.ingest import secrets

    if detect_secrets and secrets.is_secret_file(candidate.path):
        return SECRET
    data = read_file(candidate, max_file_bytes)
    if isinstance(data, str):
        return data
    if sniff_binary(data):
        return BINARY
    text = decode_text(data)
    if text is None:
        return UNDECODABLE
    text = normalize_newlines(text)
    if max_line_chars and len(text) > max_line_chars:
        longest = max(map(len, text.split("\n")))
        if longest > max_line_chars:
            return MINIFIED
    if detect_secrets:
        found = secrets.find_secrets(text, secret_plugins or secrets.DEFAULT_PLUGINS)
        if found:
            # The type and line only: the value itself must never reach a log.
            logger.info(
                "Skipping %s: it holds a secret (%s, line %d)", candidate.path, found[0].kind, found[0].line
            )
            return SECRET
    return FileContent(text=text, content_hash=content_hash(data), size=len(data))
