"""A git work tree owned by another user (an unpacked archive, a mounted volume) keeps git's view."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mahavishnu_assets.ingest.discover import discover, git_head
from tests.ingest_helpers import make_repo

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="changing a folder's owner needs root"
)


def test_foreign_owned_work_tree_keeps_commit_and_gitignore(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "foreign",
        {"app.py": "print('hi')\n", ".gitignore": "generated.py\n", "generated.py": "X = 1\n"},
    )
    head = git_head(root)
    assert head
    os.chown(root, 54321, 54321)  # git now calls this repository's ownership "dubious"
    found = discover(root, max_file_bytes=1_000_000, exclude=None)
    assert found.commit == head
    assert found.is_git
    paths = {c.path for c in found.candidates}
    assert "app.py" in paths
    assert "generated.py" not in paths  # .gitignore still respected: git's view, not a plain walk
