"""Imported once by the reader processes' fork server, so every forked worker starts with the chunkers loaded."""

from mahavishnu_assets.ingest.chunk import _quiet_llama_index

_quiet_llama_index()
