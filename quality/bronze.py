"""Great Expectations suites that guard the bronze tables.

The contracts (``socialpulse.contracts``) stop bad records at write time; these suites re-check what is
actually in the lake, including rows that reached it by another path (a manual ``write_deltalake``, a
restored snapshot): ids present and unique, enumerations, ranges, hashtag shape, and ``event_date``
equal to the UTC day of ``created_at``. GX runs in an ephemeral, offline, quiet context.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from socialpulse.contracts import BRONZE, MIN_USER_AGE, OLDEST_BIRTH_YEAR  # noqa: E402
from socialpulse.tags import MAX_TAG_CHARS, TAG_CHAR_CLASS  # noqa: E402

#: longest credible watch time of one view, seconds
MAX_WATCH_TIME_S = 3600
MAX_DURATION_S = 3600
MAX_HASHTAGS = 30
#: a hashtag: optional '#', then 1-100 tag characters (letters and marks of any script, digits, '_': the
#: character rule of socialpulse.tags, so every tag the API accepts passes)
HASHTAG_PATTERN = rf"^#?{TAG_CHAR_CLASS}{{1,{MAX_TAG_CHARS}}}$"

# derived columns computed in Arrow before validation (GX has no list or timezone expectations)
_UTC_DAY = "_created_at_utc_day"
_HASHTAGS_OK = "_hashtags_ok"
_HASHTAG_COUNT = "_hashtag_count"


@dataclass(frozen=True)
class BronzeValidation:
    success: bool
    failures: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    table: str = ""
    rows: int = 0


def _expectations(table_name: str) -> list:
    import great_expectations.expectations as gxe

    def expect(cls, check: str, **kwargs):
        # ``meta.check`` is the human label used in failure messages
        return cls(meta={"check": check}, **kwargs)

    contract = BRONZE[table_name]
    names = contract.schema.names
    out = [expect(gxe.ExpectColumnValuesToNotBeNull, f"{c} is not null", column=c) for c in contract.required]
    # users is append-only by contract (the latest row per user_id wins), so its id repeats by design
    if table_name != "users":
        key = list(contract.key)
        if len(key) == 1:
            out.append(expect(gxe.ExpectColumnValuesToBeUnique, f"{key[0]} is unique", column=key[0]))
        else:
            out.append(expect(gxe.ExpectCompoundColumnsToBeUnique, f"{key} is unique", column_list=key))
    for column, values in contract.allowed.items():
        out.append(
            expect(gxe.ExpectColumnValuesToBeInSet, f"{column} in {list(values)}", column=column, value_set=list(values))
        )
    between = gxe.ExpectColumnValuesToBeBetween
    if "watch_time_s" in names:
        out.append(
            expect(between, f"watch_time_s between 0 and {MAX_WATCH_TIME_S}",
                   column="watch_time_s", min_value=0, max_value=MAX_WATCH_TIME_S)
        )
    if "duration_s" in names:
        out.append(
            expect(between, f"duration_s between 0 and {MAX_DURATION_S}",
                   column="duration_s", min_value=0, max_value=MAX_DURATION_S)
        )
    if "birth_year" in names:  # optional; where given, the ingest API's rule
        latest = dt.datetime.now(dt.timezone.utc).year - MIN_USER_AGE
        out.append(expect(between, f"birth_year between {OLDEST_BIRTH_YEAR} and {latest}", column="birth_year",
                          min_value=OLDEST_BIRTH_YEAR, max_value=latest))
    if "size_bytes" in names:
        out.append(expect(between, "size_bytes >= 0", column="size_bytes", min_value=0))
    if "sha256" in names:
        out.append(
            expect(gxe.ExpectColumnValuesToMatchRegex, "sha256 is 64 hex digits", column="sha256", regex=r"^[0-9a-f]{64}$")
        )
    if "hashtags" in names:
        out.append(
            expect(gxe.ExpectColumnValuesToBeInSet, f"every hashtag matches {HASHTAG_PATTERN}",
                   column=_HASHTAGS_OK, value_set=[True])
        )
        out.append(
            expect(between, f"at most {MAX_HASHTAGS} hashtags", column=_HASHTAG_COUNT, min_value=0, max_value=MAX_HASHTAGS)
        )
    if "event_date" in names and "created_at" in names:
        out.append(
            expect(gxe.ExpectColumnPairValuesToBeEqual, "event_date equals the UTC day of created_at",
                   column_A="event_date", column_B=_UTC_DAY, ignore_row_if="either_value_is_missing")
        )
    return out


def build_suite(table_name: str):
    """The expectation suite of one bronze table (``bronze_<table>``)."""
    import great_expectations as gx

    if table_name not in BRONZE:
        raise KeyError(f"unknown bronze table {table_name!r}")
    _context()  # GX binds suites to the active (ephemeral) context
    suite = gx.ExpectationSuite(name=f"bronze_{table_name}")
    for expectation in _expectations(table_name):
        suite.add_expectation(expectation)
    return suite


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@lru_cache(maxsize=None)
def _batch_definition(table_name: str):
    context = _context()
    try:
        source = context.data_sources.get("bronze")
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas("bronze")
    asset = source.add_dataframe_asset(name=table_name)
    return asset.add_batch_definition_whole_dataframe("sample")


def with_derived_columns(table_name: str, table: pa.Table) -> pa.Table:
    """Add the columns the suite checks that GX cannot compute itself (UTC day, hashtag shape)."""
    names = table.column_names
    if "created_at" in names:
        created = table["created_at"]
        if pa.types.is_timestamp(created.type) and created.type.tz is None:
            created = created.cast(pa.timestamp(created.type.unit, tz="UTC"))
        day = pc.cast(pc.floor_temporal(created, unit="day"), pa.date32()) if table.num_rows else pa.array([], pa.date32())
        table = table.append_column(_UTC_DAY, day)
    if "hashtags" in names:
        tags = table["hashtags"].combine_chunks()
        flat = pc.list_flatten(tags)
        parents = pc.list_parent_indices(tags)
        bad_tag = pc.invert(pc.fill_null(pc.match_substring_regex(flat, HASHTAG_PATTERN), False))
        bad_rows = pc.unique(pc.filter(parents, bad_tag))
        row_ids = pa.array(range(table.num_rows), pa.int64())
        ok = pc.and_(pc.invert(pc.is_in(row_ids, value_set=bad_rows.cast(pa.int64()))), pc.is_valid(tags))
        table = table.append_column(_HASHTAGS_OK, ok)
        table = table.append_column(_HASHTAG_COUNT, pc.fill_null(pc.list_value_length(tags), 0).cast(pa.int64()))
    return table


def _describe_failure(result) -> str:
    config = result.expectation_config
    label = (config.meta or {}).get("check") or config.type
    info = result.result or {}
    count = info.get("unexpected_count")
    sample = (info.get("partial_unexpected_list") or [])[:3]
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"{label}: error {result.exception_info.get('exception_message')}"
    if count is None:
        return f"{label}: failed ({info})"
    return f"{label}: {count} unexpected value(s), e.g. {sample}"


def validate_bronze(table_name: str, arrow_table: pa.Table) -> BronzeValidation:
    """Validate rows of a bronze table against its suite; ``failures`` says which check failed and how."""
    contract = BRONZE[table_name]
    missing = [n for n in contract.schema.names if n not in arrow_table.column_names]
    if missing:
        n = arrow_table.num_rows
        return BronzeValidation(False, [f"missing columns {missing}"], {"rows": n}, table_name, n)
    if arrow_table.num_rows == 0:
        return BronzeValidation(True, [], {"rows": 0, "evaluated_expectations": 0}, table_name, 0)
    frame = with_derived_columns(table_name, arrow_table.select(contract.schema.names)).to_pandas()
    batch = _batch_definition(table_name).get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(build_suite(table_name))
    failures = [_describe_failure(r) for r in result.results if not r.success]
    statistics = {**dict(result.statistics), "rows": arrow_table.num_rows}
    return BronzeValidation(bool(result.success), failures, statistics, table_name, arrow_table.num_rows)
