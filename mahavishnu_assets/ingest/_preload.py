"""Imported once by the reader processes' fork server, so every forked worker starts with the chunkers loaded."""

import atexit
import os

from mahavishnu_assets.ingest.chunk import _quiet_llama_index

_quiet_llama_index()

# The fork server leaves when the command does. Tearing its interpreter down (llama-index loaded) took about
# 0.25 s, all the while holding the command's stdout and stderr, so whoever read the command's output waited
# for it. It has nothing to flush or clean up (the workers it forked end with os._exit and never run this).
atexit.register(os._exit, 0)
