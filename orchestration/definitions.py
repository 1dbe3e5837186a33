"""The Dagster code location: it only loads and merges what each domain package exports."""

from __future__ import annotations

import dagster as dg

import assets.content as content
import assets.engagement as engagement
import assets.ingest as ingest
import assets.moderation as moderation
import assets.trends as trends
import assets.warehouse as warehouse
from orchestration.jobs import build_jobs_and_schedules
from orchestration.resources import build_resources

DOMAINS = (ingest, warehouse, engagement, moderation, content, trends)


def _collect(attr: str) -> list:
    return [item for domain in DOMAINS for item in getattr(domain, attr, [])]


ALL_ASSETS = _collect("ASSETS")
JOBS, SCHEDULES = build_jobs_and_schedules(ALL_ASSETS)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=_collect("ASSET_CHECKS"),
    jobs=_collect("JOBS") + JOBS,
    sensors=_collect("SENSORS"),
    schedules=_collect("SCHEDULES") + SCHEDULES,
    resources={**build_resources(), **{k: v for d in DOMAINS for k, v in getattr(d, "RESOURCES", {}).items()}},
)
