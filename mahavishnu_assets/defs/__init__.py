"""Every Dagster object of the project, grouped by domain; `definitions.py` gathers them into one Definitions."""
