"""Repository names: the default taken from the folder, and the names allowed."""

from __future__ import annotations

import re
from pathlib import Path

from mahavishnu_assets.errors import IngestError

_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


def default_repo_name(root: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip("-.")
    return name or "repository"


def is_allowed(name: str) -> bool:
    return bool(_NAME.match(name)) and not name.startswith("/") and ".." not in name.split("/")


def check_repo_name(name: str) -> str:
    if not is_allowed(name):
        raise IngestError(
            f"Repository name {name!r} is not allowed",
            suggestion="Use letters, digits, '.', '_', '-' and '/' only (at most 200 characters).",
        )
    return name
