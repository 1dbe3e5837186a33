"""The creator dashboard without services: its window, section and audience logic, and the page and its files
as the app serves them (offline: nothing the page loads comes from another host)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from socialpulse import audience, dashboard
from socialpulse.metrics import MetricsNotBuilt
from socialpulse.settings import Settings
from tests.tokens import bearer

UTC = dt.timezone.utc


def test_the_window_is_whole_utc_days_ending_tonight():
    now = dt.datetime(2026, 6, 10, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # 04:30 UTC on the 11th
    start, end = dashboard.window(28, now)
    assert end == dt.datetime(2026, 6, 12, tzinfo=UTC)
    assert start == dt.datetime(2026, 5, 15, tzinfo=UTC) and (end - start).days == 28
    assert dashboard.window(1, now)[0] == dt.datetime(2026, 6, 11, tzinfo=UTC)


@pytest.mark.parametrize("days", [0, -3, dashboard.MAX_DAYS + 1])
def test_a_window_out_of_range_is_refused(days):
    with pytest.raises(ValueError, match=f"between 1 and {dashboard.MAX_DAYS}"):
        dashboard.window(days, dt.datetime.now(UTC))


def test_a_section_whose_table_is_missing_says_so_and_other_errors_propagate():
    assert dashboard.section(lambda: {"rows": [1]}) == {"status": "ok", "rows": [1]}

    def missing():
        raise MetricsNotBuilt("the post metrics are not built yet")

    assert dashboard.section(missing) == {"status": "not_built", "message": "the post metrics are not built yet"}
    with pytest.raises(KeyError):  # a bug is never "not built"
        dashboard.section(lambda: {}["rows"])


def _country(code, views):
    return {"country": code, "views": views, "unique_viewers": views // 2, "watch_time_s": views * 3.0}


def test_countries_most_viewed_first_with_the_tail_folded_into_other():
    rows = [_country("fr", 10), _country("us", 50), _country("de", 30), _country("br", 10)]
    folded = audience.fold_countries(rows, top=2)
    assert [r["country"] for r in folded] == ["us", "de", "other"]
    assert folded[-1] == {"country": "other", "views": 20, "unique_viewers": 10, "watch_time_s": 60.0, "share": 0.2}
    assert sum(r["share"] for r in folded) == pytest.approx(1.0)
    assert [r["country"] for r in audience.fold_countries(rows, top=10)] == ["us", "de", "br", "fr"]  # ties by name
    assert audience.fold_countries([], top=3) == []


def test_every_age_band_in_order_with_zeros_and_strays_as_unknown():
    rows = [{"age_band": "25-34", "views": 6, "unique_viewers": 3, "watch_time_s": 9.0},
            {"age_band": "13-17", "views": 2, "unique_viewers": 1, "watch_time_s": 1.0},
            {"age_band": "90+", "views": 2, "unique_viewers": 2, "watch_time_s": 0.5}]
    bands = audience.age_bands(rows)
    assert [b["age_band"] for b in bands] == list(audience.AGE_BANDS)
    by = {b["age_band"]: b for b in bands}
    assert by["25-34"]["views"] == 6 and by["25-34"]["share"] == pytest.approx(0.6)
    assert by["unknown"]["views"] == 2 and by["18-24"] == {"age_band": "18-24", "views": 0, "unique_viewers": 0,
                                                            "watch_time_s": 0, "share": 0.0}
    assert all(b["share"] == 0.0 for b in audience.age_bands([]))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("dash"), redis_port=1, postgres_port=1, mlflow_port=1)
    with TestClient(create_app(settings, warm=False), headers=bearer(settings, "c1")) as c:
        yield c


def test_the_page_and_its_files_are_served_and_reference_no_other_host(client):
    page = client.get("/creators/c-000042")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", page.text)
    refs = re.findall(r"""\b(?:src|href)="([^"]+)\"""", page.text)
    assert sorted(refs) == ["/static/dashboard.css", "/static/dashboard.js", "data:,"]
    for ref in (r for r in refs if r.startswith("/static/")):
        asset = client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 1000, ref
        assert not re.search(r"https?://", asset.text.replace("http://www.w3.org/2000/svg", "")), ref
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/creators/bad id!").status_code == 422


def test_the_page_is_not_in_the_openapi_schema_but_the_dashboard_read_is(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/creators/{creator_id}" not in paths
    op = paths["/v1/creators/{creator_id}/dashboard"]["get"]
    days = next(p for p in op["parameters"] if p["name"] == "days")
    assert days["schema"]["minimum"] == 1 and days["schema"]["maximum"] == dashboard.MAX_DAYS
    assert {"400", "401", "403", "503"} <= set(op["responses"])


def test_a_creator_reads_only_its_own_dashboard(client):
    settings = client.app.state.settings
    assert client.get("/v1/creators/c2/dashboard?days=0", headers=bearer(settings, "c1")).status_code == 403
    assert client.get("/v1/creators/c2/dashboard?days=0", headers=bearer(settings, "a1", "admin")).status_code == 400
    r = client.get("/v1/creators/c1/dashboard?days=0", headers={"Authorization": ""})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("days, status", [("0", 400), ("367", 400), ("-1", 400), ("ten", 422)])
def test_a_bad_days_is_refused_before_any_store_is_read(client, days, status):
    r = client.get(f"/v1/creators/c1/dashboard?days={days}")
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json() == {"error": f"days must be between 1 and {dashboard.MAX_DAYS}, not {days}", "field": "days"}
