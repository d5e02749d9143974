"""Where the project reads its inputs from: the settings folder and files, the migrations folder, the code."""

from __future__ import annotations

import os
from pathlib import Path

ENV_PREFIX = "MAHAVISHNU_"
# The settings files in the order they are merged (later wins); see `Settings`.
SETTINGS_FILES = ("mahavishnu.yaml", "local.yaml")
PACKAGE_DIR = Path(__file__).resolve().parent


def settings_dir() -> Path:
    """Where the committed and local YAML files live: MAHAVISHNU_SETTINGS_DIR, else ./settings."""
    return Path(os.environ.get("MAHAVISHNU_SETTINGS_DIR", "settings"))


def migrations_dir() -> Path:
    configured = os.environ.get("MAHAVISHNU_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    return PACKAGE_DIR.parent / "migrations"
