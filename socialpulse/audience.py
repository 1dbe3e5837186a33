"""A creator's audience: who watched, by country and by age band, read from the dbt mart
``marts.fct_creator_audience_daily`` (one row per creator, day, country and age band: views, unique viewers,
watch time). The mart is built by dbt; until it is, :func:`breakdown` raises :class:`AudienceNotBuilt`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

from socialpulse.stores.postgres import relation_exists

MART = "marts.fct_creator_audience_daily"
#: the mart's age bands, youngest first ("unknown": a viewer who gave no birth year)
AGE_BANDS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+", "unknown")
FIGURES = ("views", "unique_viewers", "watch_time_s")
#: countries shown by name; the rest are summed into one ``other`` row
TOP_COUNTRIES = 10
OTHER = "other"


class AudienceNotBuilt(LookupError):
    """The audience mart does not exist yet (dbt has not built it)."""


def breakdown(conn: psycopg.Connection, creator_id: str, start: dt.date, end: dt.date,
              top_countries: int = TOP_COUNTRIES) -> dict[str, list[dict]]:
    """A creator's views, unique viewers (summed over days: an upper bound) and watch time over the days
    ``[start, end)``: ``by_country`` (most viewed first, the tail past ``top_countries`` as one ``other`` row)
    and ``by_age_band`` (every band of :data:`AGE_BANDS`, in order, zeros where none), each row with its
    ``share`` of the window's views."""
    if not relation_exists(conn, MART):
        raise AudienceNotBuilt("the audience breakdown is not built yet (dbt has not built "
                               f"{MART.split('.')[1]})")
    sums = ", ".join(f"coalesce(sum({f}), 0)::{'float8' if f == 'watch_time_s' else 'bigint'} AS {f}"
                     for f in FIGURES)
    out = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for key, column in (("by_country", "country"), ("by_age_band", "age_band")):
            out[key] = cur.execute(
                f"SELECT coalesce({column}, 'unknown') AS {column}, {sums} FROM {MART} "
                "WHERE creator_id = %s AND activity_date >= %s AND activity_date < %s GROUP BY 1",
                (creator_id, start, end)).fetchall()
    return {"by_country": fold_countries(out["by_country"], top_countries),
            "by_age_band": age_bands(out["by_age_band"])}


def fold_countries(rows: Sequence[dict], top: int) -> list[dict]:
    """Countries most viewed first (ties by name); those past the first ``top`` summed into one ``other``
    row at the end; each row with its share of the views."""
    ranked = sorted(rows, key=lambda r: (-r["views"], r["country"]))
    head, tail = ranked[:top], ranked[top:]
    if tail:
        head.append({"country": OTHER, **{f: sum(r[f] for r in tail) for f in FIGURES}})
    return _with_shares(head)


def age_bands(rows: Sequence[dict]) -> list[dict]:
    """Every age band of :data:`AGE_BANDS` in order (zeros where the creator had no viewer in it); a band the
    mart names that is not among them counts as ``unknown``."""
    totals = {band: dict.fromkeys(FIGURES, 0) for band in AGE_BANDS}
    for row in rows:
        band = totals[row["age_band"] if row["age_band"] in totals else "unknown"]
        for f in FIGURES:
            band[f] += row[f]
    return _with_shares([{"age_band": band, **figures} for band, figures in totals.items()])


def _with_shares(rows: list[dict]) -> list[dict]:
    views = sum(r["views"] for r in rows)
    return [{**r, "share": r["views"] / views if views else 0.0} for r in rows]
