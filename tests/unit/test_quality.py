"""Great Expectations suites for bronze, and the blocking bronze asset checks built on them (lake only)."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from quality.bronze import build_suite, validate_bronze
from quality.checks import bronze_asset_checks, read_recent
from socialpulse import lake
from socialpulse.contracts import BRONZE, FOLLOWS, INTERACTIONS, POSTS, USERS, conform

UTC = dt.timezone.utc
DAY = dt.date(2026, 5, 1)


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def views(n: int, day: dt.date = DAY, prefix: str = "e") -> list[dict]:
    return [dict(event_id=f"{prefix}{i}", event_type="view", user_id=f"u{i}", post_id="p1", watch_time_s=float(i),
                 created_at=at(day, i % 24), event_date=day) for i in range(n)]


def test_every_bronze_table_has_a_suite_covering_required_columns():
    for name, contract in BRONZE.items():
        suite = build_suite(name)
        null_checked = {e.column for e in suite.expectations if type(e).__name__ == "ExpectColumnValuesToNotBeNull"}
        assert set(contract.required) <= null_checked, name


def test_good_rows_pass():
    result = validate_bronze("interactions", conform(INTERACTIONS, views(5)))
    assert result.success, result.failures
    assert result.failures == [] and result.rows == 5
    assert result.statistics["evaluated_expectations"] >= 8
    posts = conform(POSTS, [dict(post_id="p1", author_id="u", kind="video", hashtags=["fyp", "#café", "日本", "भारत"],
                                 created_at=at(DAY, 1), event_date=DAY)])
    assert validate_bronze("posts", posts).success
    assert validate_bronze("users", USERS.schema.empty_table()).success


def test_bad_values_are_caught_with_a_reason():
    good = conform(INTERACTIONS, views(4))
    bad = pa.concat_tables([good, pa.Table.from_pylist([
        dict(event_id="e0", event_type="teleport", user_id="u9", post_id="p1", watch_time_s=-5.0,
             created_at=at(DAY, 23), event_date=DAY + dt.timedelta(days=1)),
    ], schema=INTERACTIONS.schema)])
    result = validate_bronze("interactions", bad)
    assert not result.success
    text = " | ".join(result.failures)
    assert "watch_time_s between 0 and 3600: 1 unexpected" in text
    assert "event_id is unique" in text
    assert "event_type in" in text and "teleport" in text
    assert "event_date equals the UTC day of created_at" in text

    posts = conform(POSTS, [dict(post_id="p1", author_id="u", kind="video", hashtags=["two words"],
                                 created_at=at(DAY, 1), event_date=DAY)])
    assert any("hashtag" in f for f in validate_bronze("posts", posts).failures)
    follows = pa.Table.from_pylist([dict(event_id="f1", follower_id="a", followee_id="b", action="block",
                                         created_at=at(DAY, 1), event_date=DAY)], schema=FOLLOWS.schema)
    assert not validate_bronze("follows", follows).success


def test_missing_columns_fail_without_running_the_suite():
    result = validate_bronze("interactions", conform(INTERACTIONS, views(2)).drop_columns(["event_date"]))
    assert not result.success and "missing columns ['event_date']" in result.failures[0]


def test_read_recent_takes_the_latest_days_and_caps_rows(local_settings):
    for offset in range(5):
        lake.append(INTERACTIONS, views(4, DAY + dt.timedelta(days=offset), prefix=f"d{offset}-"), settings=local_settings)
    rows, days = read_recent(local_settings, "interactions", days=3)
    assert days == ["2026-05-03", "2026-05-04", "2026-05-05"]
    assert rows.num_rows == 12
    assert set(rows["event_date"].to_pylist()) == {DAY + dt.timedelta(days=d) for d in (2, 3, 4)}
    assert read_recent(local_settings, "interactions", max_rows=5)[0].num_rows == 5
    assert read_recent(local_settings, "comments")[0].num_rows == 0


def _run_check(table: str) -> dg.AssetCheckResult:
    from orchestration.resources import SettingsResource

    check = next(c for c in bronze_asset_checks([table]))
    return check(settings=SettingsResource())


def test_asset_check_passes_on_good_data_and_blocks_a_planted_bad_row(local_settings):
    checks = bronze_asset_checks()
    specs = [spec for c in checks for spec in c.check_specs]
    assert {s.asset_key for s in specs} == {dg.AssetKey(["lake", "bronze", t]) for t in
                                            ("users", "posts", "media", "interactions", "comments", "follows")}
    assert all(s.blocking for s in specs)

    lake.append(INTERACTIONS, views(6), settings=local_settings)
    passed = _run_check("interactions")
    assert passed.passed and passed.metadata["rows_checked"].value == 6

    # a write that bypasses the contract (delta-rs directly), as a buggy job or a manual fix could
    planted = pa.Table.from_pylist([dict(event_id="bad-1", event_type="view", user_id="u1", post_id="p1",
                                         watch_time_s=-5.0, created_at=at(DAY, 12), event_date=DAY)],
                                   schema=INTERACTIONS.schema)
    write_deltalake(lake.table_uri(INTERACTIONS, local_settings), planted, mode="append", partition_by=["event_date"])
    failed = _run_check("interactions")
    assert not failed.passed
    assert failed.metadata["rows_checked"].value == 7
    assert any("watch_time_s" in f for f in failed.metadata["failures"].value)


def test_users_check_reads_the_unpartitioned_table(local_settings):
    lake.append(USERS, [dict(user_id="u1", handle="a", is_creator=False, created_at=at(DAY, 1)),
                        dict(user_id="u1", handle="b", is_creator=True, created_at=at(DAY, 2))], settings=local_settings)
    result = _run_check("users")
    assert result.passed, result.metadata["failures"].value  # append-only: a repeated user_id is by design
    assert result.metadata["rows_checked"].value == 2


def test_users_written_before_birth_year_are_checked_and_an_implausible_birth_year_is_caught(local_settings):
    # a users table written before the contract had birth_year: its rows read the column as null
    old = conform(USERS, [dict(user_id="u1", handle="a", is_creator=False, created_at=at(DAY, 1))])
    write_deltalake(lake.table_uri(USERS, local_settings), old.drop_columns(["birth_year"]))
    rows, _ = read_recent(local_settings, "users")
    assert rows.column_names == USERS.schema.names and rows["birth_year"].to_pylist() == [None]
    assert _run_check("users").passed
    planted = conform(USERS, [dict(user_id="u2", handle="b", is_creator=False, created_at=at(DAY, 2),
                                   birth_year=DAY.year)])  # a newborn, written by some other path
    lake.append(USERS, planted, settings=local_settings)
    failed = _run_check("users")
    assert not failed.passed and any("birth_year between 1900 and" in f for f in failed.metadata["failures"].value)


@pytest.mark.parametrize("table", ["posts", "media", "comments", "follows"])
def test_empty_tables_pass(local_settings, table):
    assert _run_check(table).passed
