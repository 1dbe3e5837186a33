"""The `socialpulse warehouse` commands: the dbt project on Postgres (marts for analysts, their docs site)."""

from __future__ import annotations

import datetime as dt

import click

from cli.common import emit, fail, progress


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def warehouse() -> None:
    """The dbt warehouse on Postgres: staging views, intermediate joins, marts, and the dbt docs site."""


@warehouse.command("docs")
@click.option("--build/--no-build", default=True, show_default=True,
              help="first build today's dbt partition (dbt_job), so the marts and their catalog are current")
def docs_cmd(build: bool) -> None:
    """Generate the dbt docs site (`dbt docs generate` against Postgres) that the API serves at
    /analytics/dbt-docs/. Needs the services up (`socialpulse services up`)."""
    from socialpulse.settings import get_settings

    settings = get_settings()
    if build:
        from orchestration.runner import warehouse_docs

        out = warehouse_docs(settings, dt.datetime.now(dt.timezone.utc).date(), progress=progress)
        if out["failed"]:
            fail(f"dbt failed: {out['failed']} (see the runs in the Dagster UI)")
    else:
        from assets.warehouse.dbt_assets import generate_docs

        out = {"docs": {"path": str(generate_docs(settings))}}
    emit(out)
