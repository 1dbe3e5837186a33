import datetime as dt

import pyarrow as pa
import pytest

from socialpulse import lake
from socialpulse.contracts import BRONZE, INTERACTIONS, POSTS, ContractError, conform, utc_day

NOW = dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.timezone.utc)


def view(**over):
    row = dict(event_id="e1", event_type="view", user_id="u1", post_id="p1", watch_time_s=3.5,
               created_at=NOW, event_date=NOW.date())
    row.update(over)
    return row


def test_event_tables_are_partitioned_by_a_date32_day():
    for c in BRONZE.values():
        if c.partition_by:
            assert c.partition_by == ("event_date",)
            assert c.schema.field("event_date").type == pa.date32()


def test_conform_orders_and_casts_columns_and_fills_nullable():
    t = conform(INTERACTIONS, [dict(reversed(list(view(watch_time_s=None, post_id=None).items())))])
    assert t.schema == INTERACTIONS.schema
    assert t["target_user_id"].null_count == 1


@pytest.mark.parametrize(
    "row, message",
    [
        (view(event_type="poke"), "interactions.event_type: 1 value(s) outside"),
        (view(user_id=None), "interactions.user_id: 1 null value(s) in a required column"),
        (view(colour="red"), "unknown columns ['colour']"),
        (view(watch_time_s="long"), "interactions.watch_time_s: cannot cast"),
    ],
)
def test_conform_rejects_with_a_precise_reason(row, message):
    with pytest.raises(ContractError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        conform(INTERACTIONS, [row])


def test_an_optional_field_only_later_rows_carry_is_kept():
    from socialpulse.contracts import USERS

    t = conform(USERS, [dict(user_id="u1", handle="a", is_creator=False, created_at=NOW),
                        dict(user_id="u2", handle="b", is_creator=False, created_at=NOW, birth_year=2001)])
    assert t["birth_year"].to_pylist() == [None, 2001]
    with pytest.raises(ContractError, match="unknown columns"):
        conform(USERS, [dict(user_id="u1", handle="a", is_creator=False, created_at=NOW),
                        dict(user_id="u2", handle="b", is_creator=False, created_at=NOW, birth_yaer=2001)])


def test_missing_required_column_is_named():
    row = view()
    del row["created_at"]
    with pytest.raises(ContractError, match="required column 'created_at' is missing"):
        conform(INTERACTIONS, [row])


def test_utc_day_of_an_offset_timestamp():
    tz = dt.timezone(dt.timedelta(hours=-5))
    assert utc_day(dt.datetime(2026, 11, 20, 22, 0, tzinfo=tz)) == dt.date(2026, 11, 21)


def test_bad_batch_leaves_the_table_untouched(local_settings):
    lake.append(INTERACTIONS, [view()])
    with pytest.raises(ContractError):
        lake.append(INTERACTIONS, [view(event_id="e2"), view(event_id="e3", event_type="poke")])
    assert lake.read(INTERACTIONS).column("event_id").to_pylist() == ["e1"]


def test_app_transaction_version_is_committed_with_the_rows(local_settings):
    assert lake.committed_version(INTERACTIONS, "drain:test") is None
    lake.append(INTERACTIONS, [view()], app_id="drain:test", version=42)
    assert lake.committed_version(INTERACTIONS, "drain:test") == 42
    assert lake.read(INTERACTIONS).num_rows == 1


def test_replace_partitions_replaces_only_the_named_days(local_settings):
    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    ts = lambda d: dt.datetime.combine(d, dt.time(12), dt.timezone.utc)  # noqa: E731
    post = lambda pid, d: dict(post_id=pid, author_id="u1", kind="text", caption="hi", hashtags=[],  # noqa: E731
                               created_at=ts(d), event_date=d)
    lake.replace_partitions(POSTS, [post("a", d1), post("b", d2)], [d1, d2])
    lake.replace_partitions(POSTS, [post("c", d2)], [d2])
    assert sorted(lake.read(POSTS).column("post_id").to_pylist()) == ["a", "c"]


def test_a_column_the_contract_gained_is_added_to_an_existing_table(local_settings):
    from deltalake import write_deltalake

    from assets.warehouse.export import read_bronze_all
    from socialpulse.contracts import USERS

    # a users table written before the contract had birth_year
    old = conform(USERS, [dict(user_id="u1", handle="a", is_creator=False, created_at=NOW)]).drop_columns(
        ["birth_year"])
    write_deltalake(lake.table_uri(USERS, local_settings), old)
    before = read_bronze_all(local_settings, "users")
    assert before.schema == USERS.schema and before["birth_year"].to_pylist() == [None]

    lake.append(USERS, [dict(user_id="u2", handle="b", is_creator=True, created_at=NOW, birth_year=2004)],
                settings=local_settings)
    rows = {r["user_id"]: r["birth_year"] for r in read_bronze_all(local_settings, "users").to_pylist()}
    assert rows == {"u1": None, "u2": 2004}
    # a whole-table overwrite (the synthetic loader's) evolves the table too
    lake.overwrite(USERS, [dict(user_id="u3", handle="c", is_creator=False, created_at=NOW, birth_year=1990)],
                   settings=local_settings)
    assert lake.read(USERS, settings=local_settings)["birth_year"].to_pylist() == [1990]
