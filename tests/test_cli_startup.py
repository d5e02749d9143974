"""What starting the `mahavishnu` command costs: no heavy module and no plugin scan before a command needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = (
    "import json, os, sys\n"
    "import mahavishnu_assets.cli\n"
    "mahavishnu_assets.cli.build_parser().parse_args(['status'])\n"
    "early = sorted(m for m in ('asyncio', 'asyncpg', 'pydantic') if m in sys.modules)\n"
    "from mahavishnu_assets.settings import load_settings\n"
    "load_settings()\n"
    "heavy = ('yaml', 'httpx', 'ollama', 'numpy', 'llama_index', 'dagster', 'multiprocessing',\n"
    "         'importlib.metadata')\n"
    "print(json.dumps({'early': early, 'loaded': sorted(m for m in heavy if m in sys.modules),\n"
    "                  'plugins': os.environ.get('PYDANTIC_DISABLE_PLUGINS')}))\n"
)


def probe(settings_dir: Path, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "PYDANTIC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**base, "MAHAVISHNU_SETTINGS_DIR": str(settings_dir), **env},
    )
    return json.loads(out.stdout)


def test_the_command_loads_no_heavy_module_and_scans_no_plugins(tmp_path: Path) -> None:
    result = probe(tmp_path)
    # The command parses its arguments (and an ingest starts git) before the database machinery is imported.
    assert result == {"early": [], "loaded": [], "plugins": "__all__"}


def test_a_users_plugin_setting_is_kept_and_a_settings_file_loads_yaml(tmp_path: Path) -> None:
    (tmp_path / "local.yaml").write_text("postgres:\n  pool_max_size: 12\n")
    result = probe(tmp_path, PYDANTIC_DISABLE_PLUGINS="")
    # Plugins on: pydantic's own loader looks for them.
    assert result == {"early": [], "loaded": ["importlib.metadata", "yaml"], "plugins": ""}


def test_the_stand_in_loader_hands_over_to_pydantics_own() -> None:
    """While plugins are off, models are built without pydantic's loader; what else is asked of it, or plugins
    turned on later, loads the real loader."""
    done = _python(
        "import os, sys\n"
        "os.environ.pop('PYDANTIC_DISABLE_PLUGINS', None)\n"
        "import mahavishnu_assets.cli\n"
        "from pydantic import BaseModel\n"
        "class M(BaseModel):\n"
        "    x: int\n"
        "assert M(x='1').x == 1\n"
        "assert 'importlib.metadata' not in sys.modules\n"
        "stand_in = sys.modules['pydantic.plugin._loader']\n"
        "assert stand_in.get_plugins() == ()\n"
        "os.environ['PYDANTIC_DISABLE_PLUGINS'] = ''\n"
        "assert list(stand_in.get_plugins()) == []\n"
        "real = sys.modules['pydantic.plugin._loader']\n"
        "assert real is not stand_in and 'importlib.metadata' in sys.modules\n"
        "assert stand_in.PYDANTIC_ENTRY_POINT_GROUP == real.PYDANTIC_ENTRY_POINT_GROUP == 'pydantic'\n"
        "class N(BaseModel):\n"
        "    y: str\n"
        "assert N(y='a').y == 'a'\n"
        "print('ok')\n"
    )
    assert done.stdout == "ok\n", done.stderr


def test_collection_pauses_while_a_command_loads_and_then_resumes() -> None:
    import gc
    import time

    from mahavishnu_assets.cli import _pause_collection

    assert gc.isenabled()
    try:
        _pause_collection(0.05)
        assert not gc.isenabled()
        deadline = time.monotonic() + 5
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.isenabled()
    finally:
        gc.enable()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_quick_exit_keeps_the_code_the_output_and_the_exit_handlers() -> None:
    done = _python(
        "import atexit\n"
        "from mahavishnu_assets.cli import _exit\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "print('x' * 100000)\n"
        "_exit(5)\n"
    )
    assert done.returncode == 5
    assert done.stdout == "x" * 100000 + "\nexit handler ran\n"


def test_a_thread_still_at_work_gets_the_normal_exit() -> None:
    done = _python(
        "import threading, time\n"
        "from mahavishnu_assets.cli import _exit\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished', flush=True))).start()\n"
        "_exit(3)\n"
    )
    assert done.returncode == 3
    assert done.stdout == "thread finished\n"


def test_worker_processes_are_joined_before_the_quick_exit(tmp_path: Path) -> None:
    """As after a first ingest: a process pool used and shut down, and a worker process still running (no thread
    is left to make the exit wait)."""
    script = tmp_path / "workers.py"  # a file: worker processes import the main module again
    marker = tmp_path / "child-finished"
    script.write_text(
        "import multiprocessing, pathlib, time\n"
        "from mahavishnu_assets.cli import _exit\n"
        "from mahavishnu_assets.ingest.reader import make_executor\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "if __name__ == '__main__':\n"
        "    pool, workers = make_executor(10, processes=2, min_files=1)\n"
        "    assert workers == 2 and pool.submit(sum, [1, 2]).result() == 3\n"
        "    pool.shutdown()\n"
        "    multiprocessing.get_context('forkserver').Process(target=late).start()\n"
        "    print('done', flush=True)\n"
        "    _exit(4)\n"
    )
    # Files, not pipes: the wait below ends when the command's own process does, not when its children do.
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        done = subprocess.run([sys.executable, str(script)], stdout=out, stderr=err, timeout=60)
    assert marker.exists()  # the command waited for its child
    assert done.returncode == 4
    assert (tmp_path / "out").read_text() == "done\n"
    assert "Traceback" not in (tmp_path / "err").read_text()


def test_the_fork_server_skips_its_teardown_and_no_other_process_does() -> None:
    """The fork server holds the command's stdout: a caller reading the output would wait for its teardown."""
    from mahavishnu_assets.ingest import _preload
    from mahavishnu_assets.ingest.reader import make_executor

    pool, workers = make_executor(10, processes=1, min_files=1)
    try:
        # Workers are forked from the fork server after its imports: they see the flag it set.
        flag = "__import__('mahavishnu_assets.ingest._preload', fromlist=['_']).QUICK_EXIT"
        assert pool.submit(eval, flag).result() is True
    finally:
        pool.shutdown()
    assert _preload.QUICK_EXIT is False
    done = _python("import mahavishnu_assets.ingest._preload\nraise SystemExit(3)\n")
    assert done.returncode == 3


def test_the_command_exits_with_its_code(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    env = {**base, "MAHAVISHNU_SETTINGS_DIR": str(tmp_path), "MAHAVISHNU_EMBEDDER": "quantum"}
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu_assets.cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"] == "configuration_error"


def test_a_command_builds_only_the_parsers_of_its_module() -> None:
    import argparse

    from mahavishnu_assets import cli
    from mahavishnu_assets.cli import ingest, memory, search, server

    def commands(argv: list[str] | None) -> list[str]:
        parser = cli.build_parser(argv)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(sub.choices)

    everything = commands(None)
    # Each module's COMMANDS are what it registers, in `mahavishnu --help` order.
    assert everything == [name for module in cli.COMMAND_MODULES for name in module.COMMANDS]
    assert len(everything) == 10
    for module in cli.COMMAND_MODULES:
        for name in module.COMMANDS:
            assert commands(["--json", name, "search"]) == list(module.COMMANDS)
    assert commands(["bogus"]) == commands(["--help"]) == commands([]) == everything
    # `mahavishnu status` builds only the server's parsers and still reports every domain.
    assert server.STATUS_EXTENSIONS == [ingest.ingest_status, search.index_status, memory.pool_status]
