"""`python -m mahavishnu_assets.cli`."""

from __future__ import annotations

from mahavishnu_assets.cli import run

run()
