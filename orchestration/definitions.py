"""The Dagster code location: it only loads and merges what each domain package exports."""

from __future__ import annotations

from socialpulse.runtime import prepare_process

# before any domain module imports Feast: run workers spawned by the code server inherit this
prepare_process()

import dagster as dg  # noqa: E402

import assets.captions as captions  # noqa: E402
import assets.content as content  # noqa: E402
import assets.engagement as engagement  # noqa: E402
import assets.ingest as ingest  # noqa: E402
import assets.moderation as moderation  # noqa: E402
import assets.notifications as notifications  # noqa: E402
import assets.privacy as privacy  # noqa: E402
import assets.ranking as ranking  # noqa: E402
import assets.trends as trends  # noqa: E402
import assets.virality as virality  # noqa: E402
import assets.warehouse as warehouse  # noqa: E402
from orchestration.jobs import build_jobs_and_schedules  # noqa: E402
from orchestration.resources import build_resources  # noqa: E402

DOMAINS = (ingest, warehouse, engagement, moderation, content, trends, ranking, virality, notifications, privacy,
           captions)


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
