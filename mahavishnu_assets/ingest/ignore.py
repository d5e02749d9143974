"""Git's ignore rules through `pathspec`: `.gitignore` files in plain folders, and the configured excludes.

Git's rules: every folder's `.gitignore` applies to the entries below it, relative to that folder; the deepest
file with a pattern matching an entry decides, and in it the last matching pattern wins (`!` re-includes);
nothing inside an ignored folder can be re-included. A pattern matches an entry itself, not the entry's
folders: `a/*` matches `a/b` but not `a/b/c.py`. `pathspec` parses the lines and matches the wildcards of a
name; a whole pattern's regex there also accepts the paths below whatever it matches (that is how a lone spec
ignores a folder's contents), so anchored patterns are matched here component by component. A plain folder is
walked as `git ls-files --others --exclude-standard` lists it: version-control folders skipped, ignored
folders not entered, a symlink an entry, never a folder to enter.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pathspec

logger = logging.getLogger(__name__)

# Version-control folders never hold repository content.
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr"})
# Larger ignore files are not read (git's own limit is 100 MiB; nobody writes 1 MiB of patterns by hand).
MAX_IGNORE_FILE_BYTES = 1 << 20


_WILDCARDS = frozenset("*?[\\")
_TRAILING_SPACES = re.compile(r"(?<!\\) +$")

# A test of one path component (truthy when it matches): a plain name's `__eq__`, or the `search` of the
# pattern pathspec compiled for it. In an anchored pattern, None stands for `**`: any number of folders (at
# least one when it ends the pattern).
NameTest = Callable[[str], object]


@dataclass(frozen=True)
class Rule:
    """One `.gitignore` line. A pattern without a `/` before its end tests an entry's name (`by_name`; `name`
    when it is a plain one); one with it is anchored to the `.gitignore`'s folder and tested component by
    component (`segments`), since a wildcard never crosses a `/`."""

    include: bool
    dir_only: bool
    name: str | None = None
    by_name: NameTest | None = None
    segments: tuple[NameTest | None, ...] = ()
    # A plain component every path an anchored rule matches holds: without it, the rule need not be tried.
    needs: str | None = None

    @classmethod
    def parse(cls, line: str) -> Rule | None:
        """None for blank lines, comments, and patterns git would reject."""
        try:
            found = pathspec.GitIgnoreSpec.from_lines([line]).patterns
        except ValueError:
            return None
        if not found or found[0].include is None:
            return None
        include = bool(found[0].include)
        body = _TRAILING_SPACES.sub("", line)  # unless escaped, trailing spaces are not part of a pattern
        body = body[1:] if body.startswith("!") else body
        dir_only = body.endswith("/")
        body = body.rstrip("/")
        if body.startswith("**/") and "/" not in body[3:]:
            body = body[3:]  # `**/name` is `name`
        try:
            if "/" not in body:
                return cls(include, dir_only, body if _plain(body) else None, by_name=_name_test(body))
            parts = body.lstrip("/").split("/")
            segments = tuple(None if p == "**" else _name_test(p) for p in parts)
            return cls(include, dir_only, segments=segments, needs=next(filter(_plain, parts), None))
        except ValueError:
            return None

    def matches(self, parts: list[str], is_dir: bool) -> bool:
        """Whether the rule matches this entry itself; `parts` are its path's components below the
        `.gitignore`'s folder."""
        if self.dir_only and not is_dir:
            return False
        if self.by_name is not None:
            return bool(self.by_name(parts[-1]))
        return _segments_match(self.segments, parts)


def _plain(part: str) -> bool:
    return bool(part) and part != "**" and not _WILDCARDS.intersection(part) and part[:1] not in ("#", "!")


def _name_test(part: str) -> NameTest:
    """A plain name is compared; one with wildcards or escapes is searched with pathspec's pattern for it
    (escaped, so that `#x` or `!x` is a name, not a comment or a negation; a name holds no `/`, so searching
    is matching). ValueError when pathspec rejects it."""
    if _plain(part):
        return part.__eq__
    found = pathspec.GitIgnoreSpec.from_lines(["\\" + part if part[:1] in ("#", "!") else part]).patterns
    if not found or not isinstance(found[0], pathspec.RegexPattern) or found[0].regex is None:
        raise ValueError(f"not a pattern: {part!r}")
    return found[0].regex.search


def _segments_match(segments: tuple[NameTest | None, ...], parts: list[str]) -> bool:
    if not segments:
        return not parts
    first, rest = segments[0], segments[1:]
    if first is None:
        if not rest:
            return len(parts) >= 1
        if None not in rest:  # the rest has a fixed length: it can only match the last components
            skip = len(parts) - len(rest)
            tail = zip(rest, parts[skip:], strict=True)
            return skip >= 0 and all(test is not None and test(part) for test, part in tail)
        return any(_segments_match(rest, parts[skip:]) for skip in range(len(parts) + 1))
    return bool(parts) and bool(first(parts[0])) and _segments_match(rest, parts[1:])


class RuleSet:
    """The rules of one `.gitignore` (or the configured excludes), in order."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        # Without `!` lines the order does not matter, any match ignores, and plain names are looked up in sets.
        self.no_negation = all(rule.include for rule in rules)
        named = [r for r in rules if self.no_negation and r.name is not None]
        self.names = frozenset(r.name for r in named if not r.dir_only)
        self.folder_names = frozenset(r.name for r in named if r.dir_only)
        self.others = tuple(r for r in rules if r not in named) if self.no_negation else rules
        self.needed = frozenset(r.needs for r in rules if r.needs is not None)

    def decide(self, parts: list[str], is_dir: bool) -> bool | None:
        """True (ignored) or False (re-included) by the last rule matching the entry whose components below this
        file's folder are `parts`; None when no rule matches."""
        present = self.needed.intersection(parts) if self.needed else self.needed
        if not self.no_negation:
            for rule in reversed(self.rules):
                if (rule.needs is None or rule.needs in present) and rule.matches(parts, is_dir):
                    return rule.include
            return None
        if parts[-1] in self.names or (is_dir and parts[-1] in self.folder_names):
            return True
        for rule in self.others:
            if (rule.needs is None or rule.needs in present) and rule.matches(parts, is_dir):
                return True
        return None


# The `.gitignore` rules in force in a folder: (that file's folder relative to the root, with a trailing `/`, or
# "" for the root; its rules), outermost first.
Rules = tuple[tuple[str, RuleSet], ...]


def walk_paths(root: Path) -> list[bytes]:
    """The files below `root` git would list as untracked, as paths relative to it (bytes, `/`-separated)."""
    out: list[bytes] = []
    base = os.fsencode(root)
    rules: dict[bytes, Rules] = {}
    for folder, dirs, files in os.walk(base, followlinks=False):
        rel = os.path.relpath(folder, base)
        prefix = "" if rel == b"." else os.fsdecode(rel) + "/"
        here = rules.pop(rel, ())
        if b".gitignore" in files:
            own = read_gitignore(os.path.join(folder, b".gitignore"))
            if own is not None:
                here = (*here, (prefix, own))
        kept = []
        for d in dirs:
            if os.fsdecode(d) in VCS_DIRS:
                continue
            if os.path.islink(os.path.join(folder, d)):
                files.append(d)  # a symlink is an entry to judge, never a folder to enter
            elif not ignored(here, prefix + os.fsdecode(d) + "/"):
                kept.append(d)
                rules[d if rel == b"." else os.path.join(rel, d)] = here
        dirs[:] = sorted(kept)
        for name in sorted(files):
            if not ignored(here, prefix + os.fsdecode(name)):
                out.append(name if rel == b"." else os.path.join(rel, name))
    return out


def ignored(rules: Rules, path: str) -> bool:
    """Whether the entry at `path` (relative to the root; a folder ends with `/`) is ignored by `rules`."""
    is_dir = path.endswith("/")
    parts = path.rstrip("/").split("/")
    for folder, rule_set in reversed(rules):
        decision = rule_set.decide(parts[folder.count("/") :], is_dir)
        if decision is not None:
            return decision
    return False


class ExcludePatterns:
    """Gitignore patterns applied to paths listed from the root: a path is excluded when it, or one of its
    folders, is ignored by them (the folders' answers are kept, so each is judged once)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self._rules: Rules = (("", RuleSet(rules)),)
        self._folders: dict[str, bool] = {}

    def match_file(self, path: str) -> bool:
        """Whether `path` (relative to the root, `/`-separated, a file) is excluded."""
        end = path.find("/")
        while end >= 0:
            folder = path[: end + 1]
            known = self._folders.get(folder)
            if known is None:
                known = self._folders[folder] = ignored(self._rules, folder)
            if known:
                return True
            end = path.find("/", end + 1)
        return ignored(self._rules, path)


def read_gitignore(path: bytes) -> RuleSet | None:
    """The rules of one `.gitignore`. Like git, a symlinked one is not followed (it could name a file outside
    the repository), and a line git would reject is dropped, not fatal."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IGNORE_FILE_BYTES:
            return None
        with open(path, "rb") as handle:
            data = handle.read(MAX_IGNORE_FILE_BYTES)
    except OSError as exc:
        logger.debug("Cannot read %r: %s", path, exc)
        return None
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    rules = tuple(rule for line in lines if (rule := Rule.parse(line)) is not None)
    return RuleSet(rules) if rules else None
