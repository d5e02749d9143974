"""Mahavishnu assets: a PostgreSQL + pgvector memory of code repositories, kept fresh by Dagster."""

from __future__ import annotations

__version__ = "0.1.0"
