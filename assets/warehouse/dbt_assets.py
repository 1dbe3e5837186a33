"""The dbt project (``dbt/``) as Dagster assets: models are ``["postgres","dbt",<model>]``, dbt sources link
to the bronze export assets through their ``meta.dagster.asset_key``, and dbt tests surface as asset checks.
"""

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
            done = subprocess.run(
                [
                    DBT_EXECUTABLE, "parse", "--quiet",
                    "--project-dir", os.fspath(project.project_dir),
                    "--profiles-dir", os.fspath(project.profiles_dir),
                    "--target", project.target or "local",
                    "--target-path", os.fspath(target),
                ],
                env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0 or not project.manifest_path.exists():
                raise RuntimeError(
                    f"dbt parse failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
                )
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


@dbt_assets(
    manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=dbt_translator, name="socialpulse_dbt"
)
def socialpulse_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: SettingsResource):
    """Build the dbt models (staging views, marts) and run their tests on Postgres."""
    import psycopg

    from socialpulse import metrics

    s = settings.get()
    # the metrics sources exist (empty) before the metrics asset first writes a day, so a build never fails on
    # a missing relation
    with psycopg.connect(s.postgres, connect_timeout=5) as conn, conn.transaction():
        metrics.ensure_schema(conn)
    with patched_environ(dbt_env(s)):
        yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=dbt_project, profiles_dir=os.fspath(DBT_PROJECT_DIR), target="local", dbt_executable=DBT_EXECUTABLE
    )
