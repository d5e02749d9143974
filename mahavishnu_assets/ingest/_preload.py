"""Imported once by the reader processes' fork server, so every forked worker starts with the chunkers loaded."""

import atexit
import os
import sys
from types import FrameType

from mahavishnu_assets.ingest.chunk import _quiet_llama_index

_quiet_llama_index()


def _in_fork_server() -> bool:
    """Whether the fork server's own start imports this module (and not, say, a tool walking the package)."""
    from multiprocessing import forkserver

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


# The fork server leaves when the command does. Tearing its interpreter down (llama-index loaded) took about
# 0.25 s, all the while holding the command's stdout and stderr, so whoever read the command's output waited
# for it. It has nothing to flush or clean up (the workers it forks end with os._exit and never run this).
QUICK_EXIT = _in_fork_server()
if QUICK_EXIT:
    atexit.register(os._exit, 0)
