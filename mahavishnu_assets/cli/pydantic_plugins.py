"""No pydantic plugin discovery in the `mahavishnu` command: it costs a tenth of a quick command.

Finding plugins reads the metadata of every installed package (about 50 ms), and merely importing pydantic's
loader imports `importlib.metadata` with email, zipfile and csv (about 10 ms), before the loader reads
PYDANTIC_DISABLE_PLUGINS. The command uses no plugins."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterable

LOADER = "pydantic.plugin._loader"
# The values for which pydantic's loader returns no plugins.
PLUGINS_OFF = ("__all__", "1", "true")


def disable() -> None:
    """Turn plugins off unless the user chose (a value the user set, even empty, is kept), and while they are
    off stand in for the loader: `get_plugins()` answers none, as the loader would; anything else it is asked
    (a later pydantic may ask more, or plugins may be turned on later) loads the real loader."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if LOADER not in sys.modules and _plugins_off():
        sys.modules[LOADER] = _StandIn(LOADER)


def _plugins_off() -> bool:
    return os.environ.get("PYDANTIC_DISABLE_PLUGINS") in PLUGINS_OFF


def _real_loader() -> types.ModuleType:
    if isinstance(sys.modules.get(LOADER), _StandIn):
        del sys.modules[LOADER]
    return importlib.import_module(LOADER)


class _StandIn(types.ModuleType):
    def __getattr__(self, attr: str) -> object:
        if attr.startswith("__"):  # the import system asking whether this is a package
            raise AttributeError(attr)
        return getattr(_real_loader(), attr)

    @staticmethod
    def get_plugins() -> Iterable[object]:
        if _plugins_off():
            return ()
        loaded: Iterable[object] = _real_loader().get_plugins()
        return loaded
