"""The dbt project, run through its dagster-dbt assets on bronze exported into the real embedded Postgres."""

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from socialpulse import lake
from socialpulse.contracts import BRONZE

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
DAY = dt.date(2026, 6, 10)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC)


def _seed_bronze(settings) -> None:
    rows = {
        # dbt-u1 is 18 in 2026 and in the US; dbt-u2 gave neither country nor birth year
        "users": [dict(user_id="dbt-u0", handle="user0", is_creator=True, created_at=at(0), country="FR",
                       birth_year=1990),
                  dict(user_id="dbt-u1", handle="user1", is_creator=False, created_at=at(0), country="US",
                       birth_year=2008),
                  dict(user_id="dbt-u2", handle="user2", is_creator=False, created_at=at(0))],
        "posts": [
            dict(post_id="dbt-p1", author_id="dbt-u0", kind="video", hashtags=["fyp"], duration_s=30.0,
                 created_at=at(1), event_date=DAY),
            dict(post_id="dbt-p2", author_id="dbt-u0", kind="image", hashtags=[], created_at=at(2), event_date=DAY),
        ],
        "media": [dict(media_id="dbt-m1", post_id="dbt-p1", uri="media/ab", content_type="video/mp4", size_bytes=10,
                       sha256="ab" * 32, created_at=at(1), event_date=DAY)],
        "interactions": [
            dict(event_id="dbt-e1", event_type="view", user_id="dbt-u1", post_id="dbt-p1", watch_time_s=10.0,
                 created_at=at(3), event_date=DAY),
            dict(event_id="dbt-e2", event_type="view", user_id="dbt-u2", post_id="dbt-p1", watch_time_s=5.0,
                 created_at=at(4), event_date=DAY),
            dict(event_id="dbt-e3", event_type="view", user_id="dbt-u1", post_id="dbt-p1", watch_time_s=1.0,
                 created_at=at(5), event_date=DAY),
            dict(event_id="dbt-e4", event_type="like", user_id="dbt-u1", post_id="dbt-p1", created_at=at(3, 1), event_date=DAY),
            dict(event_id="dbt-e5", event_type="comment", user_id="dbt-u2", post_id="dbt-p2", created_at=at(6), event_date=DAY),
            dict(event_id="dbt-e6", event_type="follow", user_id="dbt-u1", target_user_id="dbt-u0", created_at=at(7),
                 event_date=DAY),
        ],
        "comments": [dict(comment_id="dbt-e5", post_id="dbt-p2", user_id="dbt-u2", text="nice", created_at=at(6),
                          event_date=DAY)],
        "follows": [dict(event_id="dbt-e6", follower_id="dbt-u1", followee_id="dbt-u0", action="follow",
                         created_at=at(7), event_date=DAY)],
    }
    for table, table_rows in rows.items():
        lake.append(BRONZE[table], table_rows, settings=settings)


def _seed_moderation(settings) -> None:
    """dbt-p1 allowed, dbt-p2 sent to review (its review still open), both decided on DAY."""
    from socialpulse import moderation

    with psycopg.connect(settings.postgres) as conn:
        moderation.ensure_tables(conn)
        for post_id, action in (("dbt-p1", "allow"), ("dbt-p2", "review")):
            conn.execute(
                "INSERT INTO moderation.decisions (post_id, author_id, action, reasons, media_status, policy_version, "
                "text_model_version, media_model_version, decided_at, created_at, event_date) VALUES "
                "(%s, 'dbt-u0', %s, '{}', 'ok', 'p1', 't1', 'm1', %s, %s, %s) ON CONFLICT (post_id) DO NOTHING",
                (post_id, action, at(8), at(1), DAY))
        conn.execute("INSERT INTO moderation.review_queue (post_id, reasons, event_date) VALUES ('dbt-p2', '{}', %s) "
                     "ON CONFLICT (post_id) DO NOTHING", (DAY,))


def _export_day(day: dt.date, resources) -> None:
    from assets.warehouse.assets import EXPORT_ASSETS, metrics_timeseries

    partitioned = [a for a in EXPORT_ASSETS if a.partitions_def is not None] + [metrics_timeseries]
    assert dg.materialize(partitioned, partition_key=day.isoformat(), resources=resources).success


def _rows(settings, query, *params):
    with psycopg.connect(settings.postgres) as conn:
        return conn.execute(query, params).fetchall()


def _resources():
    from assets.warehouse.dbt_assets import dbt_resource
    from orchestration.resources import SettingsResource

    return {"settings": SettingsResource(), "dbt": dbt_resource()}


@pytest.fixture(scope="module")
def built_day(stack):
    """DAY seeded in bronze and moderation, exported (users first, as the dimensions job runs before the days)
    and built by the dbt asset's DAY partition; the result of that dbt run."""
    from assets.warehouse.assets import EXPORT_ASSETS
    from assets.warehouse.dbt_assets import socialpulse_dbt

    _seed_bronze(stack)
    _seed_moderation(stack)
    resources = _resources()
    assert dg.materialize([a for a in EXPORT_ASSETS if a.partitions_def is None], resources=resources).success
    _export_day(DAY, resources)
    return dg.materialize([socialpulse_dbt], partition_key=DAY.isoformat(), resources=resources, raise_on_error=False)


def test_dbt_build_runs_models_and_tests_as_asset_checks(stack, built_day):
    from assets.warehouse.dbt_assets import dbt_env, socialpulse_dbt

    assert dbt_env(stack)["SOCIALPULSE_PG_PORT"] == str(stack.postgres_port)
    result = built_day
    evaluations = result.get_asset_check_evaluations()
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert result.success, failed
    assert not failed
    # every dbt test of the project surfaced as a Dagster asset check
    assert len(evaluations) == len(list(socialpulse_dbt.check_specs)) >= 20
    materialized = {m.asset_key for m in result.get_asset_materialization_events() for m in [m.materialization]}
    assert dg.AssetKey(["postgres", "dbt", "fct_post_daily_engagement"]) in materialized
    assert dg.AssetKey(["postgres", "dbt", "stg_bronze__interactions"]) in materialized
    assert dg.AssetKey(["postgres", "dbt", "fct_creator_daily_performance"]) in materialized

    with psycopg.connect(stack.postgres) as conn:
        rows = conn.execute(
            "SELECT post_id, author_id, kind, views, likes, comments, watch_time_s, unique_viewers "
            "FROM marts.fct_post_daily_engagement WHERE activity_date = %s ORDER BY post_id", (DAY,)).fetchall()
        kind = conn.execute("SELECT table_type FROM information_schema.tables "
                            "WHERE table_schema = 'staging' AND table_name = 'stg_bronze__posts'").fetchone()
    assert rows == [
        ("dbt-p1", "dbt-u0", "video", 3, 1, 0, pytest.approx(16.0), 2),
        ("dbt-p2", "dbt-u0", "image", 0, 0, 1, 0.0, 0),
    ]
    assert kind == ("VIEW",)
    with psycopg.connect(stack.postgres) as conn:
        creator = conn.execute(
            "SELECT posts_published, views, unique_viewers, likes, comments, completions, followers_gained, "
            "engagement_rate FROM marts.fct_creator_daily_performance WHERE creator_id = 'dbt-u0' AND activity_date = %s",
            (DAY,)).fetchone()
        growth = conn.execute("SELECT net_followers, followers_to_date FROM marts.fct_follower_growth "
                              "WHERE creator_id = 'dbt-u0' AND activity_date = %s", (DAY,)).fetchone()
    # dbt-p1 (30 s): views of 10, 5 and 1 s, none completed; two viewers; a like on p1, a comment on p2
    assert creator == (2, 3, 2, 1, 1, 0, 1, pytest.approx(2 / 3))
    assert growth == (1, 1)

    # audience: dbt-u1 (US, 18) viewed dbt-p1 twice for 11 s; dbt-u2 (nothing declared) once for 5 s
    audience = _rows(stack, "SELECT country, age_band, views, unique_viewers, watch_time_s "
                     "FROM marts.fct_creator_audience_daily WHERE creator_id = 'dbt-u0' AND activity_date = %s "
                     "ORDER BY country", DAY)
    assert audience == [("US", "18-24", 2, 1, pytest.approx(11.0)), ("unknown", "unknown", 1, 1, pytest.approx(5.0))]
    performance = _rows(stack, "SELECT post_id, views_first_24h, reach_7d, views, unique_viewers, likes, comments, "
                        "completions, engagement_rate, completion_share FROM marts.fct_post_performance "
                        "WHERE creator_id = 'dbt-u0' ORDER BY post_id")
    assert performance == [("dbt-p1", 3, 2, 3, 2, 1, 0, 0, pytest.approx(1 / 3), 0.0),
                           ("dbt-p2", 0, 0, 0, 0, 0, 1, 0, None, None)]
    outcomes = _rows(stack, "SELECT decision_date, posts_allowed, posts_limited, posts_sent_to_review, posts_removed, "
                     "reviews_open, reviews_resolved FROM marts.fct_creator_moderation_outcomes "
                     "WHERE creator_id = 'dbt-u0'")
    assert outcomes == [(DAY, 1, 0, 1, 0, 1, 0)]
    # the contracts are enforced: the marts' columns have the declared types
    types = dict(_rows(stack, "SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'marts' AND table_name = 'fct_creator_audience_daily'"))
    assert types == {"creator_id": "text", "activity_date": "date", "country": "text", "age_band": "text",
                     "views": "bigint", "unique_viewers": "bigint", "watch_time_s": "double precision"}


def test_a_days_partition_replaces_only_that_days_rows_of_the_incremental_marts(stack, built_day):
    """DAY is built; now the next day arrives and is built, then a late event of DAY lands and DAY is rebuilt."""
    from assets.warehouse.dbt_assets import socialpulse_dbt

    assert built_day.success
    nxt = DAY + dt.timedelta(days=1)
    resources = _resources()
    # a second view by dbt-u2 the next day (25 h after dbt-p1 was made: in its 7-day reach, not its first 24 h)
    lake.append(BRONZE["interactions"], [
        dict(event_id="dbt-n1", event_type="view", user_id="dbt-u2", post_id="dbt-p1", watch_time_s=29.0,
             created_at=at(2) + dt.timedelta(days=1), event_date=nxt)], settings=stack)
    _export_day(nxt, resources)
    assert dg.materialize([socialpulse_dbt], partition_key=nxt.isoformat(), resources=resources).success
    audience_sql = ("SELECT activity_date, country, views, watch_time_s FROM marts.fct_creator_audience_daily "
                    "WHERE creator_id = 'dbt-u0' ORDER BY activity_date, country")
    assert _rows(stack, audience_sql) == [(DAY, "US", 2, pytest.approx(11.0)), (DAY, "unknown", 1, pytest.approx(5.0)),
                                          (nxt, "unknown", 1, pytest.approx(29.0))]
    p1 = "SELECT views_first_24h, reach_7d, views, completions FROM marts.fct_post_performance WHERE post_id = 'dbt-p1'"
    assert _rows(stack, p1) == [(3, 2, 4, 1)]  # lifetime figures of a post the day touched; 29 s completes 30 s

    # mark NEXT's rows: a rebuild of DAY must leave them alone
    with psycopg.connect(stack.postgres) as conn:
        conn.execute("UPDATE marts.fct_creator_audience_daily SET views = 999 WHERE activity_date = %s", (nxt,))
        conn.execute("UPDATE marts.fct_post_daily_engagement SET views = 999 WHERE activity_date = %s", (nxt,))
    # a late view on DAY (dbt-u1 again) lands, DAY is exported and rebuilt
    lake.append(BRONZE["interactions"], [
        dict(event_id="dbt-late", event_type="view", user_id="dbt-u1", post_id="dbt-p1", watch_time_s=4.0,
             created_at=at(23), event_date=DAY)], settings=stack)
    _export_day(DAY, resources)
    assert dg.materialize([socialpulse_dbt], partition_key=DAY.isoformat(), resources=resources).success
    assert _rows(stack, audience_sql) == [(DAY, "US", 3, pytest.approx(15.0)), (DAY, "unknown", 1, pytest.approx(5.0)),
                                          (nxt, "unknown", 999, pytest.approx(29.0))]
    assert _rows(stack, "SELECT activity_date, views FROM marts.fct_post_daily_engagement WHERE post_id = 'dbt-p1' "
                 "ORDER BY 1") == [(DAY, 4), (nxt, 999)]
    assert _rows(stack, p1) == [(4, 2, 5, 1)]


def _analyst_queries() -> list[tuple[str, str]]:
    """(engine, sql) of every ```sql block of the README's "For analysts" section; the first line names the engine."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## For analysts\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    return [(block.splitlines()[0].removeprefix("--").strip(), block) for block in blocks]


def test_the_analyst_readme_queries_run_on_the_marts_and_the_lake(stack, built_day):
    import duckdb

    assert built_day.success
    queries = _analyst_queries()
    assert sorted({engine for engine, _ in queries}) == ["DuckDB", "Postgres"] and len(queries) >= 5
    for engine, query in queries:
        if engine == "Postgres":
            rows = _rows(stack, query)
        else:
            con = duckdb.connect()
            try:
                # the README's lake is the state folder's from the repository root; here the test stack's
                rows = con.execute(query.replace("'.socialpulse/lake/", f"'{stack.lake}/")).fetchall()
            finally:
                con.close()
        assert rows, f"no rows from the README's {engine} query:\n{query}"


def test_dbt_docs_are_generated_and_served_by_the_api(stack, built_day, tmp_path):
    from fastapi.testclient import TestClient

    from assets.warehouse.dbt_assets import generate_docs
    from serving.app import create_app

    settings = stack.model_copy(update={"dbt_docs_dir": tmp_path / "dbt-docs"})
    with TestClient(create_app(settings, warm=False)) as client:
        before = client.get("/analytics/dbt-docs/")
        assert before.status_code == 404 and "not generated yet" in before.json()["error"]
        assert generate_docs(settings) == tmp_path / "dbt-docs"
        page = client.get("/analytics/dbt-docs/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "dbt" in page.text.lower()
        catalog = client.get("/analytics/dbt-docs/catalog.json").json()
        manifest = client.get("/analytics/dbt-docs/manifest.json").json()
        # only the site: dbt's run results, compiled SQL and caches stay in its work folder
        assert client.get("/analytics/dbt-docs/run_results.json").status_code == 404
    # the catalog read the built marts' columns from Postgres; the manifest holds the project's docs
    audience = catalog["nodes"]["model.socialpulse.fct_creator_audience_daily"]
    assert set(audience["columns"]) == {"creator_id", "activity_date", "country", "age_band", "views",
                                        "unique_viewers", "watch_time_s"}
    assert "age band" in manifest["nodes"]["model.socialpulse.fct_creator_audience_daily"]["description"]
