"""`mahavishnu pipeline PATH`: the main job through Dagster, on a real instance, then a search."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mahavishnu_assets.cli.output import SubParsers, subcommand
from mahavishnu_assets.errors import MahavishnuError


def dagster_home(settings_home: Path) -> Path:
    """DAGSTER_HOME when set, else a folder under MAHAVISHNU_HOME, so runs show in `dagster dev` later."""
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured) if configured else settings_home.expanduser().resolve() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not configured:
        _write_instance_config(home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _write_instance_config(path: Path) -> None:
    """The project's local instance (storage in PostgreSQL, run queue, concurrency), so `dagster dev` on this
    home behaves like one started from the repository root. A file without a storage section was written by an
    earlier version, when runs stayed in SQLite: it is replaced (those old runs are not migrated)."""
    shipped = Path(__file__).resolve().parents[2] / "dagster.yaml"
    if path.exists() and "\nstorage:" in "\n" + path.read_text():
        return
    path.write_text(shipped.read_text() if shipped.is_file() else _MINIMAL_INSTANCE)


# For an install without the repository's dagster.yaml beside the package (a wheel): the storage alone.
_MINIMAL_INSTANCE = """storage:
  custom:
    module: mahavishnu_assets.defs.instance
    class: MahavishnuPostgresStorage
telemetry:
  enabled: false
"""


def _plain(value: Any) -> Any:
    inner = getattr(value, "value", value)
    return inner if isinstance(inner, int | float | str | bool) or inner is None else str(inner)


def run_main_job(repo: str, log_level: str = "WARNING") -> dict[str, Any]:
    """Execute the main job for one repository partition in this process (blocking)."""
    from dagster import AssetCheckSeverity, DagsterInstance

    from mahavishnu_assets.definitions import defs
    from mahavishnu_assets.defs.ingestion import PARTITIONS_NAME
    from mahavishnu_assets.defs.pipeline import MAIN_JOB_NAME

    instance = DagsterInstance.get()
    if not instance.has_dynamic_partition(PARTITIONS_NAME, repo):
        instance.add_dynamic_partitions(PARTITIONS_NAME, [repo])
    job = defs.resolve_job_def(MAIN_JOB_NAME)
    result = job.execute_in_process(
        partition_key=repo,
        instance=instance,
        raise_on_error=False,
        tags={"mahavishnu/repository": repo},
        # The console shows warnings (an offline embedder, a failed check); the full log is in the instance.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    assets: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat is None:
            continue
        assets[mat.asset_key.to_user_string()] = {k: _plain(v) for k, v in mat.metadata.items()}
    evaluations = result.get_asset_check_evaluations()
    checks = {f"{c.asset_key.to_user_string()}:{c.check_name}": c.passed for c in evaluations}
    # A failed warning check (retrieval quality dropped) is reported, not a failure of the run.
    warnings = sorted(
        f"{c.asset_key.to_user_string()}:{c.check_name}"
        for c in evaluations
        if not c.passed and c.severity == AssetCheckSeverity.WARN
    )
    failures = [
        e.step_failure_data.error.message.strip().splitlines()[0]
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data is not None and e.step_failure_data.error is not None
    ]
    return {
        "run_id": result.run_id,
        "success": result.success and all(ok or name in warnings for name, ok in checks.items()),
        "dagster_home": os.environ["DAGSTER_HOME"],
        "assets": assets,
        "checks": checks,
        "warnings": warnings,
        "failures": failures,
    }


async def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from mahavishnu_assets.cli.context import opened
    from mahavishnu_assets.ingest import store
    from mahavishnu_assets.ingest.discover import resolve_root
    from mahavishnu_assets.ingest.names import check_repo_name, default_repo_name
    from mahavishnu_assets.search.filters import SearchFilters
    from mahavishnu_assets.search.service import search_text

    root = resolve_root(args.path)
    repo = check_repo_name(args.name or default_repo_name(root))
    # Start the server, migrate and register the repository before Dagster runs, so the job's assets find it.
    # The pool stays open (idle) during the job and serves the search afterwards: one start, one migration check.
    async with opened() as (settings, db):
        async with db.transaction() as conn:
            await store.register_repository(conn, repo, str(root), move=args.name is not None)
        dagster_home(settings.home)
        import asyncio

        outcome = await asyncio.to_thread(run_main_job, repo, "DEBUG" if args.verbose else "WARNING")
        outcome = {"repo": repo, "root_path": str(root), **outcome}
        if not outcome["success"]:
            failed = [
                name for name, ok in outcome["checks"].items() if not ok and name not in outcome["warnings"]
            ]
            detail = "; ".join(outcome["failures"] + [f"check {name} failed" for name in failed])
            raise MahavishnuError(
                f"The main job did not succeed (run {outcome['run_id']}): {detail or 'see the run log'}",
                suggestion=f"Open the run in the Dagster UI: DAGSTER_HOME={outcome['dagster_home']} dagster dev",
            )
        if args.query:
            outcome["search"] = await search_text(
                db, settings, args.query, mode=args.mode, k=args.k, filters=SearchFilters(repo=repo)
            )
    return outcome


def render(result: dict[str, Any]) -> str:
    lines = [f"run {result['run_id']} for {result['repo']} ({result['root_path']}): succeeded"]
    ingest = result["assets"].get("repository_ingestion", {})
    if ingest:
        lines.append(
            f"  ingestion: {ingest.get('files_seen')} files seen, {ingest.get('files_changed')} changed, "
            f"{ingest.get('chunks_written')} chunks written, {ingest.get('embeddings_computed')} embedded, "
            f"{ingest.get('embeddings_reused')} reused"
        )
    index = result["assets"].get("ann_index", {})
    if index:
        lines.append(
            f"  index: {index.get('method')} recall@10 {index.get('recall_at_10')} ({index.get('reason', '')})"
        )
    quality = result["assets"].get("retrieval_quality", {})
    if quality:
        lines.append(
            f"  retrieval quality: MRR@10 {quality.get('mrr_at_10')}, hit@10 {quality.get('hit_at_10')} "
            f"over {quality.get('queries')} sampled queries"
        )
    passed = sum(1 for ok in result["checks"].values() if ok)
    lines.append(f"  checks: {passed}/{len(result['checks'])} passed")
    for name in result.get("warnings", []):
        lines.append(f"  warning: check {name} failed")
    search = result.get("search")
    if search:
        for notice in search.get("notices", []):
            lines.append(f"  note: {notice}")
        lines.append(f"search {search['query']!r} ({search.get('mode')}):")
        for hit in search["results"]:
            first = hit["content"].strip().splitlines()[0][:90] if hit["content"].strip() else ""
            lines.append(
                f"  {hit['score']:.4f}  {hit['path']}:{hit['start_line']}-{hit['end_line']}  {first}"
            )
    lines.append(f"Dagster UI: DAGSTER_HOME={result['dagster_home']} dagster dev")
    return "\n".join(lines)


def register(sub: SubParsers) -> None:
    parser = subcommand(
        sub,
        "pipeline",
        pipeline,
        "run the main job through Dagster for one repository (schema, ingest, embed, index), then search",
        render=render,
    )
    parser.add_argument("path", help="the repository's folder (a git work tree or a plain folder)")
    parser.add_argument("--name", help="the repository's name (default: the folder's name)")
    parser.add_argument("--query", help="search the fresh memory for this text afterwards")
    parser.add_argument("--mode", choices=["vector", "text", "hybrid"], default="hybrid")
    parser.add_argument("--k", type=int, default=5)
