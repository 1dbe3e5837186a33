"""Bronze export into Postgres and the creator analytics metrics: pure logic, then the real embedded Postgres."""

import datetime as dt

import dagster as dg
import psycopg
import pyarrow as pa
import pytest

from assets.warehouse.export import (
    export_bronze_partition,
    export_bronze_table,
    latest_per_key,
    table_ddl,
)
from socialpulse import lake, metrics
from socialpulse.stores.postgres import pg_type
from socialpulse.contracts import FOLLOWS, INTERACTIONS, POSTS, USERS, conform
from tests.tokens import bearer

UTC = dt.timezone.utc
# days no other test writes, so counts are exact on the shared session stack
DAY = dt.date(2026, 6, 3)
NEXT = dt.date(2026, 6, 4)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def event(event_id, event_type, user, post, ts, watch=None):
    return dict(event_id=event_id, event_type=event_type, user_id=user, post_id=post, watch_time_s=watch,
                created_at=ts, event_date=ts.date())


# --- pure -------------------------------------------------------------------------------------
def test_postgres_types_follow_the_arrow_contract():
    assert pg_type(pa.string()) == "text"
    assert pg_type(pa.timestamp("us", tz="UTC")) == "timestamptz"
    assert pg_type(pa.date32()) == "date"
    assert pg_type(pa.float32()) == "real"
    assert pg_type(pa.int64()) == "bigint"
    assert pg_type(pa.int16()) == "smallint"
    assert pg_type(pa.bool_()) == "boolean"
    assert pg_type(pa.list_(pa.string())) == "text[]"
    with pytest.raises(TypeError):
        pg_type(pa.struct([("a", pa.int8())]))
    ddl = table_ddl(POSTS).as_string(None)
    assert '"hashtags" text[] NOT NULL' in ddl and '"caption" text,' in ddl
    assert 'PRIMARY KEY ("post_id")' in ddl


def test_latest_per_key_keeps_the_newest_row():
    users = conform(USERS, [
        dict(user_id="u1", handle="old", is_creator=False, created_at=at(DAY, 1)),
        dict(user_id="u2", handle="only", is_creator=True, created_at=at(DAY, 2)),
        dict(user_id="u1", handle="new", is_creator=True, created_at=at(DAY, 3)),
    ])
    out = {r["user_id"]: r["handle"] for r in latest_per_key(users, ("user_id",)).to_pylist()}
    assert out == {"u1": "new", "u2": "only"}


def _day_tables(events, follows=(), posts=(("p1", "c1", 10.0), ("p2", "c1", None), ("p3", "c2", 20.0))):
    interactions = conform(INTERACTIONS, events).select(["event_type", "user_id", "post_id", "watch_time_s",
                                                          "created_at"])
    follows = conform(FOLLOWS, [dict(event_id=f"f{i}", follower_id=a, followee_id=b, action=act, created_at=ts,
                                     event_date=ts.date()) for i, (a, b, act, ts) in enumerate(follows)])
    posts = pa.table({"post_id": [p for p, _, _ in posts], "author_id": [a for _, a, _ in posts],
                      "duration_s": pa.array([d for _, _, d in posts], pa.float32())})
    return interactions, follows.select(["follower_id", "followee_id", "action", "created_at"]), posts


def test_metrics_count_each_figure_per_post_and_creator_by_hour_and_day():
    rows = metrics.compute_day(*_day_tables([
        event("a", "view", "u1", "p1", at(DAY, 10, 1), 9.5),   # completes p1 (>= 90 % of 10 s)
        event("b", "view", "u1", "p1", at(DAY, 17, 2), 3.0),   # the same viewer later: one unit of the day's reach
        event("c", "view", "u2", "p1", at(DAY, 10, 59), None),
        event("d", "like", "u2", "p1", at(DAY, 10, 30)),
        event("e", "share", "u3", "p2", at(DAY, 11, 0)),
        event("f", "comment", "u3", "p2", at(DAY, 10, 5)),
        event("g", "view", "u4", "p2", at(DAY, 10, 6), 50.0),  # no duration: never a completion
        event("h", "view", "u4", "gone", at(DAY, 10, 7), 1.0),  # a post without a row has no creator: left out
        dict(event_id="i", event_type="follow", user_id="u1", target_user_id="c1", created_at=at(DAY, 10), event_date=DAY),
    ], follows=[("u1", "c1", "follow", at(DAY, 10)), ("u5", "c1", "follow", at(DAY, 22)),
                ("u6", "c2", "unfollow", at(DAY, 3))]))
    hourly = {(r["post_id"], r["hour"].hour): r for r in rows["post_metrics_hourly"].to_pylist()}
    assert set(hourly) == {("p1", 10), ("p1", 17), ("p2", 10), ("p2", 11)}
    p1 = hourly[("p1", 10)]
    assert (p1["views"], p1["unique_viewers"], p1["likes"], p1["completions"], p1["author_id"]) == (2, 2, 1, 1, "c1")
    assert p1["watch_time_s"] == pytest.approx(9.5) and p1["hour"] == at(DAY, 10)
    assert hourly[("p2", 10)]["completions"] == 0 and hourly[("p2", 11)]["shares"] == 1
    daily = {r["post_id"]: r for r in rows["post_metrics_daily"].to_pylist()}
    assert (daily["p1"]["views"], daily["p1"]["unique_viewers"], daily["p1"]["day"]) == (3, 2, DAY)
    creator_day = {r["creator_id"]: r for r in rows["creator_metrics_daily"].to_pylist()}
    c1 = creator_day["c1"]
    assert (c1["views"], c1["unique_viewers"], c1["likes"], c1["shares"], c1["comments"], c1["completions"]) == (
        4, 3, 1, 1, 1, 1)
    assert (c1["followers_gained"], c1["followers_lost"]) == (2, 0)
    # a creator with only a follow event that day still has a row
    assert creator_day["c2"]["views"] == 0 and creator_day["c2"]["followers_lost"] == 1
    creator_hours = {(r["creator_id"], r["hour"].hour) for r in rows["creator_metrics_hourly"].to_pylist()}
    assert creator_hours == {("c1", 10), ("c1", 11), ("c1", 17), ("c1", 22), ("c2", 3)}
    empty = metrics.compute_day(*_day_tables([]))
    assert all(t.num_rows == 0 for t in empty.values()) and set(empty) == {t.name for t in metrics.ALL}


def test_a_post_appended_twice_counts_its_events_once():
    rows = metrics.compute_day(*_day_tables([event("a", "view", "u1", "p1", at(DAY, 10), 1.0)],
                                            posts=[("p1", "c1", 10.0), ("p1", "c1", 10.0)]))
    assert rows["creator_metrics_daily"].to_pylist()[0]["views"] == 1


class _RecordingConn:
    """Answers the probes of metrics.ensure_schema as a database with TimescaleDB would (each table missing
    until created), and records the SQL."""

    def __init__(self):
        self.statements: list[str] = []
        self.created: set[str] = set()

    def execute(self, query, params=None):
        text = query if isinstance(query, str) else query.as_string(None)
        self.statements.append(text)
        if text.startswith("SELECT create_hypertable"):
            self.created.add(params[0].split(".")[1])
        if "pg_available_extensions" in text:
            row = (1,)
        elif "relkind" in text:
            row = ("r",) if params[1] in self.created else None
        else:
            row = None

        class _Cursor:
            def fetchone(self_inner):
                return row

        return _Cursor()


def test_metrics_tables_are_hypertables_with_policies_where_timescaledb_exists():
    conn = _RecordingConn()
    assert metrics.ensure_schema(conn) == "hypertable"
    sql_text = "\n".join(conn.statements)
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in sql_text
    assert "PARTITION BY" not in sql_text
    for series in metrics.ALL:
        assert f"CREATE TABLE {series.qualified}" in sql_text
    assert sql_text.count("create_hypertable(%s::regclass, 'hour', chunk_time_interval => INTERVAL '1 day'") == 2
    assert sql_text.count("create_hypertable(%s::regclass, 'day', chunk_time_interval => INTERVAL '1 month'") == 2
    assert sql_text.count("add_compression_policy") == 4 and sql_text.count("add_retention_policy") == 4
    assert "INTERVAL '90 days'" in sql_text and "INTERVAL '730 days'" in sql_text
    assert metrics.ensure_partitions(conn, DAY) == []  # chunks are TimescaleDB's business


# --- real Postgres and Delta ------------------------------------------------------------------
def _count(settings, query, *params):
    with psycopg.connect(settings.postgres) as conn:
        return conn.execute(query, params).fetchone()[0]


@pytest.mark.integration
def test_export_partition_is_idempotent_and_replaces_its_day(stack):
    lake.append(POSTS, [
        dict(post_id=f"wh-p{i}", author_id="wh-u1", kind="video", caption="hi", hashtags=["fyp", "cats"],
             duration_s=12.5, created_at=at(DAY, 9, i), event_date=DAY)
        for i in range(3)
    ] + [dict(post_id="wh-next", author_id="wh-u1", kind="text", hashtags=[], created_at=at(NEXT, 1), event_date=NEXT)],
        settings=stack)
    assert export_bronze_partition(stack, "posts", DAY) == 3
    assert export_bronze_partition(stack, "posts", DAY) == 3
    assert export_bronze_partition(stack, "posts", NEXT.isoformat()) == 1
    assert _count(stack, "SELECT count(*) FROM bronze.posts WHERE event_date = %s", DAY) == 3
    with psycopg.connect(stack.postgres) as conn:
        hashtags, created, duration = conn.execute(
            "SELECT hashtags, created_at, duration_s FROM bronze.posts WHERE post_id = 'wh-p1'").fetchone()
    assert hashtags == ["fyp", "cats"] and created == at(DAY, 9, 1) and duration == pytest.approx(12.5)

    # a late row for the day lands on re-export; the other day is untouched
    lake.append(POSTS, [dict(post_id="wh-late", author_id="wh-u2", kind="image", hashtags=["late"],
                             created_at=at(DAY, 23, 59), event_date=DAY)], settings=stack)
    assert export_bronze_partition(stack, "posts", DAY) == 4
    assert _count(stack, "SELECT count(*) FROM bronze.posts WHERE event_date = %s", DAY) == 4
    assert _count(stack, "SELECT count(*) FROM bronze.posts WHERE event_date = %s", NEXT) == 1
    # an empty day exports nothing and fails nothing
    assert export_bronze_partition(stack, "posts", dt.date(2026, 6, 1)) == 0


@pytest.mark.integration
def test_export_users_keeps_the_latest_row_per_user(stack):
    lake.append(USERS, [
        dict(user_id="wh-u1", handle="first", is_creator=False, created_at=at(DAY, 1)),
        dict(user_id="wh-u1", handle="renamed", is_creator=True, created_at=at(DAY, 2), birth_year=2001),
    ], settings=stack)
    n = export_bronze_table(stack, "users")
    assert export_bronze_table(stack, "users") == n
    assert _count(stack, "SELECT count(*) FROM bronze.users") == n
    assert _count(stack, "SELECT count(*) FROM bronze.users WHERE user_id = 'wh-u1'") == 1
    assert _count(stack, "SELECT handle FROM bronze.users WHERE user_id = 'wh-u1'") == "renamed"
    # the birth year the contract gained is carried, as a smallint
    assert _count(stack, "SELECT birth_year FROM bronze.users WHERE user_id = 'wh-u1'") == 2001
    assert _count(stack, "SELECT data_type FROM information_schema.columns WHERE table_schema = 'bronze' "
                         "AND table_name = 'users' AND column_name = 'birth_year'") == "smallint"
    with pytest.raises(ValueError):
        export_bronze_table(stack, "posts")
    with pytest.raises(ValueError):
        export_bronze_partition(stack, "users", DAY)


@pytest.mark.integration
def test_metrics_use_partitions_replace_a_day_and_drop_past_retention(stack):
    lake.append(POSTS, [dict(post_id=p, author_id="wh-c1", kind="video", hashtags=[], duration_s=10.0,
                             created_at=at(DAY, 1), event_date=DAY) for p in ("wh-mp0", "wh-mp1")], settings=stack)
    lake.append(INTERACTIONS, [
        event("wh-m1", "view", "u1", "wh-mp0", at(DAY, 8, 5), 7.0),
        event("wh-m2", "like", "u1", "wh-mp0", at(DAY, 8, 6)),
        event("wh-m3", "view", "u2", "wh-mp0", at(NEXT, 0, 1), 3.0),
    ], settings=stack)
    lake.append(FOLLOWS, [dict(event_id="wh-f1", follower_id="u7", followee_id="wh-c1", action="follow",
                               created_at=at(DAY, 9), event_date=DAY)], settings=stack)
    with psycopg.connect(stack.postgres) as conn:
        assert metrics.ensure_schema(conn) == "native"  # no TimescaleDB here
    assert metrics.write_day(stack, DAY)["post_metrics_hourly"] == 1
    assert metrics.write_day(stack, NEXT)["post_metrics_hourly"] == 1
    with psycopg.connect(stack.postgres) as conn:
        for series in metrics.ALL:
            parts = {r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass", (series.qualified,))}
            assert metrics.partition_name(series, DAY) in parts, (series.name, parts)
        assert metrics.partition_name(metrics.POST_DAILY, DAY) == "post_metrics_daily_p202606"
        # rows live in the day's own partition
        assert conn.execute(f"SELECT count(*) FROM metrics.{metrics.partition_name(metrics.POST_HOURLY, DAY)}"
                            ).fetchone()[0] == 1

    # more events for the day: a rerun replaces the day's rows, not adds to them
    lake.append(INTERACTIONS, [
        event("wh-m4", "view", "u3", "wh-mp0", at(DAY, 8, 30), 9.5),
        event("wh-m5", "share", "u3", "wh-mp1", at(DAY, 21, 0)),
    ], settings=stack)
    assert metrics.write_day(stack, DAY)["post_metrics_hourly"] == 2
    assert metrics.write_day(stack, DAY)["post_metrics_hourly"] == 2
    with psycopg.connect(stack.postgres) as conn:
        rows = conn.execute(
            "SELECT post_id, hour, views, likes, shares, watch_time_s, unique_viewers, completions "
            "FROM metrics.post_metrics_hourly WHERE hour >= %s AND hour < %s ORDER BY hour",
            (at(DAY, 0), at(NEXT, 0))).fetchall()
        assert rows == [("wh-mp0", at(DAY, 8), 2, 1, 0, pytest.approx(16.5), 2, 1),
                        ("wh-mp1", at(DAY, 21), 0, 0, 1, 0.0, 0, 0)]
        series = metrics.creator_series(conn, "wh-c1", at(DAY, 0), at(NEXT, 0) + dt.timedelta(days=1), "day")
        assert [r["bucket"] for r in series] == [DAY, NEXT]
        assert (series[0]["views"], series[0]["followers_gained"], series[1]["views"]) == (2, 1, 1)
        hours = metrics.creator_series(conn, "wh-c1", at(DAY, 6), at(DAY, 10), "hour")
        assert [r["bucket"] for r in hours] == [at(DAY, h) for h in range(6, 10)]  # every hour, zeros included
        assert [r["views"] for r in hours] == [0, 0, 2, 0] and hours[3]["followers_gained"] == 1
        assert metrics.totals(series)["views"] == 3
        with pytest.raises(ValueError, match="granularity"):
            metrics.creator_series(conn, "wh-c1", at(DAY, 0), at(NEXT, 0), "week")
        # 92 days on, the day's hourly partitions are past retention; its daily (monthly) ones are kept
        dropped = metrics.apply_retention(conn, DAY + dt.timedelta(days=92))
        assert metrics.partition_name(metrics.POST_HOURLY, DAY) in dropped["post_metrics_hourly"]
        assert "post_metrics_daily" not in dropped
        assert conn.execute("SELECT count(*) FROM metrics.post_metrics_hourly WHERE hour < %s",
                            (at(NEXT, 0),)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM metrics.post_metrics_daily WHERE day = %s", (DAY,)).fetchone()[0] == 2


@pytest.mark.integration
def test_dagster_assets_export_and_report_row_counts(stack):
    from assets.warehouse.assets import EXPORT_ASSETS, metrics_timeseries
    from orchestration.resources import SettingsResource

    day = dt.date(2026, 6, 5)
    lake.append(POSTS, [dict(post_id="wh-dp", author_id="wh-c2", kind="video", hashtags=[], duration_s=5.0,
                             created_at=at(day, 0), event_date=day)], settings=stack)
    lake.append(INTERACTIONS, [event(f"wh-d{i}", "view", f"u{i % 2}", "wh-dp", at(day, i), 1.0) for i in range(5)],
                settings=stack)
    interactions_asset = next(a for a in EXPORT_ASSETS if a.key == dg.AssetKey(["postgres", "bronze", "interactions"]))
    posts_asset = next(a for a in EXPORT_ASSETS if a.key == dg.AssetKey(["postgres", "bronze", "posts"]))
    result = dg.materialize([interactions_asset, posts_asset, metrics_timeseries], partition_key=day.isoformat(),
                            resources={"settings": SettingsResource()})
    assert result.success
    counts = {m.asset_key.path[-1]: m.metadata["dagster/row_count"].value
              for m in result.get_asset_materialization_events() for m in [m.materialization]}
    assert counts["interactions"] == 5
    assert _count(stack, "SELECT count(*) FROM bronze.interactions WHERE event_date = %s", day) == 5
    # one post of one creator in five distinct hours: five hourly rows per post and per creator, a daily each
    assert (counts["post_metrics_hourly"], counts["post_metrics_daily"], counts["creator_metrics_hourly"],
            counts["creator_metrics_daily"]) == (5, 1, 5, 1)


@pytest.mark.integration
def test_creator_analytics_endpoint_serves_the_series_and_refuses_bad_windows(stack):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    day = dt.date(2026, 6, 7)
    lake.append(POSTS, [dict(post_id="wh-ap", author_id="wh-c3", kind="video", hashtags=[], duration_s=10.0,
                             created_at=at(day, 0), event_date=day)], settings=stack)
    lake.append(INTERACTIONS, [event("wh-a1", "view", "u1", "wh-ap", at(day, 5), 10.0),
                               event("wh-a2", "view", "u2", "wh-ap", at(day, 5, 30), 2.0),
                               event("wh-a3", "like", "u2", "wh-ap", at(day, 6))], settings=stack)
    metrics.write_day(stack, day)
    with TestClient(create_app(stack, warm=False), headers=bearer(stack, "wh-c3")) as client:
        body = client.get("/v1/creators/wh-c3/analytics",
                          params={"granularity": "hour", "from": f"{day}T04:00:00Z", "to": f"{day}T07:00:00Z"}).json()
        assert [b["bucket"] for b in body["series"]] == [at(day, h).isoformat() for h in (4, 5, 6)]
        assert [(b["views"], b["likes"], b["completions"]) for b in body["series"]] == [(0, 0, 0), (2, 0, 1), (0, 1, 0)]
        assert body["totals"]["views"] == 2 and body["totals"]["completion_rate"] == 0.5
        assert body["totals"]["engagement_rate"] == 0.5
        daily = client.get("/v1/creators/wh-c3/analytics", params={"from": str(day), "to": str(day + dt.timedelta(days=2))})
        assert daily.status_code == 200
        assert [(b["bucket"], b["unique_viewers"]) for b in daily.json()["series"]] == [
            (str(day), 2), (str(day + dt.timedelta(days=1)), 0)]
        # a creator with no activity is zeros, not an error
        assert client.get("/v1/creators/nobody/analytics", params={"from": str(day)},
                          headers=bearer(stack, "ops", "admin")).json()["totals"]["views"] == 0
        for params, field in [({"from": "yesterday"}, "from"), ({"from": str(day), "to": str(day)}, "from"),
                              ({"granularity": "hour", "from": "2026-01-01", "to": "2026-06-01"}, "from")]:
            r = client.get("/v1/creators/wh-c3/analytics", params=params)
            assert r.status_code == 400 and r.json()["field"] == field, r.text
        assert client.get("/v1/creators/wh-c3/analytics", params={"granularity": "week"}).status_code == 422


def test_an_analytics_window_out_of_the_calendar_is_a_400():
    from serving.api.routes.creators import window
    from serving.errors import ApiError

    now = dt.datetime(2026, 6, 1, tzinfo=UTC)
    assert window("day", None, "2026-06-03", now) == (at(dt.date(2026, 5, 6), 0), at(dt.date(2026, 6, 3), 0))
    assert window("hour", None, None, dt.datetime(2026, 6, 1, 10, 30, tzinfo=UTC)) == (
        dt.datetime(2026, 5, 30, 11, tzinfo=UTC), dt.datetime(2026, 6, 1, 11, tzinfo=UTC))
    with pytest.raises(ApiError, match="outside the dates"):
        window("day", None, "0001-01-02", now)
