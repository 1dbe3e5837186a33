"""The dbt project (``dbt/``) as Dagster assets: models are ``["postgres","dbt",<model>]``, dbt sources link
to the bronze export, metrics and moderation assets through their ``meta.dagster.asset_key``, and dbt tests
surface as asset checks. The assets are partitioned by UTC day: a partition's run passes its day to dbt
(``--vars '{"day": ...}'``), so the incremental marts replace that day's rows and nothing else.
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets
from filelock import FileLock

from assets.common import daily_backfill, daily_partitions
from orchestration.resources import SettingsResource
from socialpulse.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="local")


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment variables that ``dbt/profiles.yml`` reads, derived from ``settings.postgres``."""
    parts = urlsplit(settings.postgres)
    return {
        "SOCIALPULSE_PG_HOST": unquote(parts.hostname or "127.0.0.1"),
        "SOCIALPULSE_PG_PORT": str(parts.port or 5432),
        "SOCIALPULSE_PG_USER": unquote(parts.username or "postgres"),
        "SOCIALPULSE_PG_PASSWORD": unquote(parts.password or ""),
        "SOCIALPULSE_PG_DB": unquote(parts.path.lstrip("/") or settings.postgres_db),
    }


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (the dbt subprocess inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _dbt_executable() -> str:
    """The dbt beside this interpreter (a venv not on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return os.fspath(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


DBT_EXECUTABLE = _dbt_executable()


def _manifest_is_stale(project: DbtProject) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [project.project_dir / "dbt_project.yml"]
    for folder in ("models", "macros", "tests"):
        sources.extend((project.project_dir / folder).rglob("*"))
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def run_dbt(command: list[str], target: Path, project: DbtProject = dbt_project,
            env: Mapping[str, str] | None = None, timeout: int = 300) -> None:
    """Run a dbt command outside Dagster (parse, docs generate) on ``project``, writing to ``target``; raise
    with dbt's output when it fails."""
    done = subprocess.run(
        [
            DBT_EXECUTABLE, *command, "--quiet",
            "--project-dir", os.fspath(project.project_dir),
            "--profiles-dir", os.fspath(project.profiles_dir),
            "--target", project.target or "local",
            "--target-path", os.fspath(target),
        ],
        env={**os.environ, **(env or {}), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(command)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                           f"{done.stderr[-4000:]}")


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """Make sure ``target/manifest.json`` exists and is newer than every project file (``dbt parse``).

    Runs once in a fresh clone or CI and again whenever a model changes (this also covers ``dagster dev``).
    Parsing opens no database connection, so the profile's env-var defaults suffice. A file lock keeps
    concurrent imports (several run workers) from parsing at the same time.
    """
    if not _manifest_is_stale(project):
        return project.manifest_path
    target = project.project_dir / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(os.fspath(target / "parse.lock"), timeout=300):
        if _manifest_is_stale(project):
            run_dbt(["parse"], target, project)
            if not project.manifest_path.exists():
                raise RuntimeError(f"dbt parse wrote no {project.manifest_path}")
    return project.manifest_path


ensure_manifest()


class SocialPulseDbtTranslator(DagsterDbtTranslator):
    """dbt models become ``["postgres","dbt",<model>]`` in group ``warehouse``, owned by data engineering."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey(["postgres", "dbt", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "warehouse"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        return ["team:data-eng"]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        props = dbt_resource_props
        return props.get("description") or f"dbt {props['resource_type']} {props['name']}"


dbt_translator = SocialPulseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def build_args(day: str) -> list[str]:
    """``dbt build`` for one UTC day: the incremental marts replace that day's rows, views and the other marts
    are rebuilt whole (a plain ``dbt build``, without the var, builds every day)."""
    dt.date.fromisoformat(day)  # a malformed day fails here, before dbt runs
    return ["build", "--vars", json.dumps({"day": day})]


def ensure_sources(settings: Settings) -> None:
    """Create every dbt source table that does not exist yet (empty), so a build never fails on a missing
    relation: before the first export of a bronze table, metrics day or moderation run."""
    import psycopg

    from assets.warehouse.export import EXPORTED_TABLES, ensure_bronze_table
    from socialpulse import metrics, moderation

    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        for table in EXPORTED_TABLES:
            ensure_bronze_table(conn, table)
        with conn.transaction():
            metrics.ensure_schema(conn)
        moderation.ensure_tables(conn)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=dbt_translator,
    name="socialpulse_dbt",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
)
def socialpulse_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: SettingsResource):
    """Build the dbt models (staging views, intermediate joins, marts) for one UTC day and run their tests."""
    s = settings.get()
    ensure_sources(s)
    with patched_environ(dbt_env(s)):
        yield from dbt.cli(build_args(context.partition_key), context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=dbt_project, profiles_dir=os.fspath(DBT_PROJECT_DIR), target="local", dbt_executable=DBT_EXECUTABLE
    )


#: what the docs site is: the page and the two artifacts it loads (the rest of dbt's target folder, run
#: results, compiled SQL and parse caches, is never served); the page last, as the API serves once it exists
DOCS_FILES = ("manifest.json", "catalog.json", "index.html")


def generate_docs(settings: Settings) -> Path:
    """``dbt docs generate`` against the settings' Postgres; its site (:data:`DOCS_FILES`) is copied into
    ``settings.dbt_docs``, which the API serves at /analytics/dbt-docs/. Returns that folder."""
    ensure_sources(settings)
    work = settings.home_abs / "dbt" / "docs-target"
    work.mkdir(parents=True, exist_ok=True)
    run_dbt(["docs", "generate"], work, env=dbt_env(settings), timeout=600)
    site = settings.dbt_docs
    site.mkdir(parents=True, exist_ok=True)
    for name in DOCS_FILES:
        shutil.copyfile(work / name, site / name)
    return site
