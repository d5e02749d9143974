"""Test helpers that ship with the package: a local Ollama-compatible embedding server."""
