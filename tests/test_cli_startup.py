"""The `mahavishnu` command itself: every subcommand in its parser, exit codes, no heavy import to parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Imported by a command's handler when it runs, never to parse the command line (`mahavishnu --help` stays fast).
HANDLER_IMPORTS = ("asyncpg", "pydantic", "yaml", "httpx", "ollama", "numpy", "llama_index", "dagster")


def test_parsing_a_command_imports_none_of_the_handlers_machinery() -> None:
    probe = (
        "import json, sys\n"
        "import mahavishnu_assets.cli\n"
        "mahavishnu_assets.cli.build_parser().parse_args(['status'])\n"
        f"print(json.dumps(sorted(m for m in {HANDLER_IMPORTS!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_every_command_is_in_the_parser_in_help_order() -> None:
    from mahavishnu_assets.cli import build_parser

    commands = ["up", "down", "status", "ingest", "index", "search", "snapshot", "maintain", "pipeline"]
    parser = build_parser()
    listed = [line.split()[0] for line in parser.format_help().splitlines() if line.startswith("    ")]
    assert [word for word in listed if word in commands] == commands
    args = parser.parse_args(["--json", "ingest", "some/path", "--name", "demo"])
    assert (args.command, args.path, args.name, args.json) == ("ingest", "some/path", "demo", True)


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
