"""Bronze export into Postgres and hourly post metrics: pure logic, then the real embedded Postgres."""

import datetime as dt

import dagster as dg
import psycopg
import pyarrow as pa
import pytest

from assets.warehouse.export import (
    export_bronze_partition,
    export_bronze_table,
    latest_per_key,
    pg_type,
    table_ddl,
)
from assets.warehouse.metrics import (
    compute_hourly_post_metrics,
    ensure_metrics_schema,
    partition_name,
    write_hourly_post_metrics,
)
from socialpulse import lake
from socialpulse.contracts import INTERACTIONS, POSTS, USERS, conform

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


def test_hourly_metrics_count_each_event_type_per_post_and_hour():
    table = conform(INTERACTIONS, [
        event("a", "view", "u1", "p1", at(DAY, 10, 1), 4.0),
        event("b", "view", "u1", "p1", at(DAY, 10, 2), 6.0),
        event("c", "view", "u2", "p1", at(DAY, 10, 59), None),
        event("d", "like", "u2", "p1", at(DAY, 10, 30)),
        event("e", "share", "u3", "p1", at(DAY, 11, 0)),
        event("f", "comment", "u3", "p2", at(DAY, 10, 5)),
        dict(event_id="g", event_type="follow", user_id="u1", target_user_id="u9", created_at=at(DAY, 10), event_date=DAY),
    ])
    rows = {(r["post_id"], r["hour"].hour): r for r in compute_hourly_post_metrics(table).to_pylist()}
    assert set(rows) == {("p1", 10), ("p1", 11), ("p2", 10)}
    p1 = rows[("p1", 10)]
    assert (p1["views"], p1["likes"], p1["shares"], p1["comments"]) == (3, 1, 0, 0)
    assert p1["watch_time_s"] == pytest.approx(10.0)
    assert p1["unique_viewers"] == 2
    assert p1["hour"] == at(DAY, 10)
    assert rows[("p1", 11)]["shares"] == 1 and rows[("p1", 11)]["unique_viewers"] == 0
    assert rows[("p2", 10)]["comments"] == 1
    assert compute_hourly_post_metrics(INTERACTIONS.schema.empty_table()).num_rows == 0


class _RecordingConn:
    """Answers the probes of ensure_metrics_schema as a database with TimescaleDB would, records the SQL."""

    def __init__(self):
        self.statements: list[str] = []

    def execute(self, query, params=None):
        text = query if isinstance(query, str) else query.as_string(None)
        self.statements.append(text)
        row = (1,) if "pg_available_extensions" in text else None  # timescaledb available; table missing

        class _Cursor:
            def fetchone(self_inner):
                return row

        return _Cursor()


def test_metrics_table_is_a_hypertable_where_timescaledb_exists():
    from assets.warehouse.metrics import ensure_day_partition

    conn = _RecordingConn()
    assert ensure_metrics_schema(conn) == "hypertable"
    sql_text = "\n".join(conn.statements)
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in sql_text
    assert "create_hypertable(%s::regclass, 'hour', chunk_time_interval => INTERVAL '1 day'" in sql_text
    assert "PARTITION BY" not in sql_text
    conn = _RecordingConn()
    assert ensure_day_partition(conn, DAY) is None  # chunks are TimescaleDB's business
    assert not any("PARTITION OF" in q for q in conn.statements)


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
        dict(user_id="wh-u1", handle="renamed", is_creator=True, created_at=at(DAY, 2)),
    ], settings=stack)
    n = export_bronze_table(stack, "users")
    assert export_bronze_table(stack, "users") == n
    assert _count(stack, "SELECT count(*) FROM bronze.users") == n
    assert _count(stack, "SELECT count(*) FROM bronze.users WHERE user_id = 'wh-u1'") == 1
    assert _count(stack, "SELECT handle FROM bronze.users WHERE user_id = 'wh-u1'") == "renamed"
    with pytest.raises(ValueError):
        export_bronze_table(stack, "posts")
    with pytest.raises(ValueError):
        export_bronze_partition(stack, "users", DAY)


@pytest.mark.integration
def test_hourly_metrics_use_day_partitions_and_replace_a_day(stack):
    lake.append(INTERACTIONS, [
        event("wh-m1", "view", "u1", "wh-p0", at(DAY, 8, 5), 7.0),
        event("wh-m2", "like", "u1", "wh-p0", at(DAY, 8, 6)),
        event("wh-m3", "view", "u2", "wh-p0", at(NEXT, 0, 1), 3.0),
    ], settings=stack)
    with psycopg.connect(stack.postgres) as conn:
        assert ensure_metrics_schema(conn) == "native"  # no TimescaleDB here
    assert write_hourly_post_metrics(stack, DAY) == 1
    assert write_hourly_post_metrics(stack, NEXT) == 1
    with psycopg.connect(stack.postgres) as conn:
        parts = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'metrics.post_metrics_hourly'::regclass")}
        assert {partition_name(DAY), partition_name(NEXT)} <= parts
        # rows live in the day's own partition
        assert conn.execute(f"SELECT count(*) FROM metrics.{partition_name(DAY)}").fetchone()[0] == 1

    # more events for the day: a rerun replaces the day's rows, not adds to them
    lake.append(INTERACTIONS, [
        event("wh-m4", "view", "u3", "wh-p0", at(DAY, 8, 30), 2.0),
        event("wh-m5", "share", "u3", "wh-p1", at(DAY, 21, 0)),
    ], settings=stack)
    assert write_hourly_post_metrics(stack, DAY) == 2
    assert write_hourly_post_metrics(stack, DAY) == 2
    with psycopg.connect(stack.postgres) as conn:
        rows = conn.execute(
            "SELECT post_id, hour, views, likes, shares, watch_time_s, unique_viewers FROM metrics.post_metrics_hourly "
            "WHERE hour >= %s AND hour < %s ORDER BY hour", (at(DAY, 0), at(NEXT, 0))).fetchall()
        assert rows == [("wh-p0", at(DAY, 8), 2, 1, 0, pytest.approx(9.0), 2), ("wh-p1", at(DAY, 21), 0, 0, 1, 0.0, 0)]
        assert conn.execute("SELECT count(*) FROM metrics.post_metrics_hourly WHERE hour >= %s",
                            (at(NEXT, 0),)).fetchone()[0] == 1


@pytest.mark.integration
def test_dagster_assets_export_and_report_row_counts(stack):
    from assets.warehouse.assets import EXPORT_ASSETS, post_metrics_hourly
    from orchestration.resources import SettingsResource

    day = dt.date(2026, 6, 5)
    lake.append(INTERACTIONS, [event(f"wh-d{i}", "view", f"u{i % 2}", "wh-p0", at(day, i), 1.0) for i in range(5)],
                settings=stack)
    interactions_asset = next(a for a in EXPORT_ASSETS if a.key == dg.AssetKey(["postgres", "bronze", "interactions"]))
    result = dg.materialize([interactions_asset, post_metrics_hourly], partition_key=day.isoformat(),
                            resources={"settings": SettingsResource()})
    assert result.success
    counts = {m.asset_key.path[-1]: m.metadata["dagster/row_count"].value
              for m in result.get_asset_materialization_events() for m in [m.materialization]}
    assert counts["interactions"] == 5
    assert _count(stack, "SELECT count(*) FROM bronze.interactions WHERE event_date = %s", day) == 5
    assert counts["post_metrics_hourly"] == 5  # one post, five distinct hours
