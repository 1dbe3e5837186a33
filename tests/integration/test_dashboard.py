"""The creator dashboard on real parts: its readers and its JSON on the stack's Postgres (a database of its
own, seeded with 28 days of a creator's metrics, virality predictions and audience mart rows), and the page
in headless Chromium against a real API process: the charts hold the seeded numbers, the page asks nothing of
any host but the API, and a screenshot is kept as a test artefact (``SOCIALPULSE_TEST_ARTIFACTS``, default
``tests/artifacts/``)."""

from __future__ import annotations

import contextlib
import datetime as dt

import psycopg
import pyarrow as pa
import pytest

from socialpulse import audience, captions, dashboard, metrics, virality
from socialpulse.services.manager import free_port
from socialpulse.stores.postgres import bootstrap_database
from tests.browser import api_process as browser_api
from tests.browser import artifact, chromium, load_dashboard
from tests.tokens import bearer, token

pytestmark = pytest.mark.integration

CREATOR, OTHER = "dash-c1", "dash-c2"
DAYS = 28
TODAY = dt.datetime.now(dt.timezone.utc).date()
WORLD = [TODAY - dt.timedelta(days=i) for i in range(DAYS + 5)]  # five days more than the window holds
COUNTRIES = {"US": 120, "DE": 60, "BR": 30, **{c: 2 for c in ("FR", "ES", "IT", "NL", "SE", "PL", "PT", "IE", "AT")}}
PREDICTIONS = {"dash-p1": 0.82, "dash-p2": 0.35, "dash-p3": 0.04}


def _day_events(day: dt.date) -> list[tuple]:
    """(event_type, user, post) of one seeded day: a varying number of views on p1, two on p2, p3 weekly;
    likes, shares and comments on some days; the other creator's post q1 gets views every day."""
    i = (TODAY - day).days
    events = [("view", f"u{k}", "dash-p1") for k in range(i % 5 + 1)]
    events += [("view", "u1", "dash-p2"), ("view", "u9", "dash-p2")]
    events += [("view", "u3", "dash-p3")] if i % 7 == 0 else []
    events += [("like", "u0", "dash-p1")] if i % 2 == 0 else []
    events += [("share", "u1", "dash-p2")] if i % 3 == 0 else []
    events += [("comment", "u0", "dash-p1")] if i % 4 == 0 else []
    return events + [("view", f"v{k}", "dash-q1") for k in range(9)]


def _expected_per_day() -> dict[str, dict[str, int]]:
    out = {}
    for day in WORLD:
        events = [e for e in _day_events(day) if e[2] != "dash-q1"]
        views = [e for e in events if e[0] == "view"]
        out[day.isoformat()] = {"views": len(views), "unique_viewers": len({e[1] for e in views}),
                                **{f"{k}s": sum(e[0] == k for e in events) for k in ("like", "share", "comment")}}
    return out


ALT_P1 = "Espresso, with on-screen text: 'FLAT WHITE'"


def _seed(settings) -> None:
    posts = pa.table({"post_id": ["dash-p1", "dash-p2", "dash-p3", "dash-q1"],
                      "author_id": [CREATOR, CREATOR, CREATOR, OTHER],
                      "duration_s": pa.array([10.0, 20.0, 30.0, 15.0], pa.float32())})
    no_follows = pa.table({"follower_id": pa.array([], pa.string()), "followee_id": pa.array([], pa.string()),
                           "action": pa.array([], pa.string()), "created_at": pa.array([], pa.timestamp("us", "UTC"))})
    now = dt.datetime.now(dt.timezone.utc)
    with psycopg.connect(settings.postgres) as conn:
        for day in WORLD:
            events = _day_events(day)
            at = dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
            interactions = pa.table({
                "event_type": [e[0] for e in events], "user_id": [e[1] for e in events],
                "post_id": [e[2] for e in events],
                "watch_time_s": pa.array([5.0 if e[0] == "view" else None for e in events], pa.float32()),
                "created_at": pa.array([at] * len(events), pa.timestamp("us", "UTC"))})
            metrics.replace_day(conn, day, metrics.compute_day(interactions, no_follows, posts))
        virality.ensure_schema(conn)
        virality.upsert(conn, [
            {"post_id": pid, "author_id": CREATOR, "post_created_at": now - dt.timedelta(hours=6 + 10 * k),
             "predicted_at": now, "observed_hours": 6.0, "probability": p, "views_so_far": 40 - 10 * k,
             "reach_threshold": 55.0, "model_version": "test-1"} for k, (pid, p) in enumerate(PREDICTIONS.items())]
            + [{"post_id": "dash-q1", "author_id": OTHER, "post_created_at": now, "predicted_at": now,
                "observed_hours": 1.0, "probability": 0.99, "views_so_far": 9, "reach_threshold": 55.0,
                "model_version": "test-1"}])
        # the dbt mart, with exactly the columns dbt builds (this database never ran dbt)
        conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
        conn.execute(f"""CREATE TABLE IF NOT EXISTS {audience.MART} (creator_id text, activity_date date, country text,
                         age_band text, views bigint, unique_viewers bigint, watch_time_s double precision)""")
        # each country's views split over two days of the window: half 18-24 (today), half 25-34 (3 days ago)
        rows = [(CREATOR, d, c, band, v // 2, max(1, v // 2 - 1), 3.0 * v)
                for c, v in COUNTRIES.items()
                for d, band in ((TODAY, "18-24"), (TODAY - dt.timedelta(days=3), "25-34"))]
        rows += [(CREATOR, TODAY - dt.timedelta(days=DAYS + 2), "US", "55+", 500, 400, 9.0),  # before the window
                 (OTHER, TODAY, "JP", "35-44", 900, 800, 9.0)]
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {audience.MART} VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
        captions.ensure_tables(conn)
        captions.upsert(conn, [{"post_id": "dash-p1", "author_id": CREATOR, "kind": "image", "alt_text": ALT_P1,
                                "captions": [], "hashtags": [], "generator": "grounded-1", "fallback": False,
                                "labels_version": None, "event_date": TODAY, "generated_at": now}])


@pytest.fixture(scope="module")
def dash(stack, tmp_path_factory):
    """Settings on a database of the stack's Postgres that only this module uses, seeded."""
    settings = stack.model_copy(update={"home": tmp_path_factory.mktemp("dash_home"), "postgres_db": "dashboard"})
    bootstrap_database(settings)
    _seed(settings)
    return settings


@contextlib.contextmanager
def hidden(settings, *schemas: str):
    """The schemas renamed away for the block (their tables look not built yet), then put back."""
    with psycopg.connect(settings.postgres, autocommit=True) as conn:
        for name in schemas:
            conn.execute(f"ALTER SCHEMA {name} RENAME TO {name}_hidden")
        try:
            yield
        finally:
            for name in schemas:
                conn.execute(f"ALTER SCHEMA {name}_hidden RENAME TO {name}")


def _window(days=DAYS):
    return dashboard.window(days, dt.datetime.now(dt.timezone.utc))


# --- readers ------------------------------------------------------------------------------------------------
def test_top_posts_ranks_a_creators_posts_by_views_in_the_window(dash):
    start, end = _window()
    in_window = [d for d in WORLD if d >= start.date()]
    with psycopg.connect(dash.postgres) as conn:
        top = metrics.top_posts(conn, CREATOR, start, end, limit=10)
        assert [p["post_id"] for p in top] == ["dash-p1", "dash-p2", "dash-p3"]  # never the other creator's q1
        p1 = top[0]
        assert p1["views"] == sum((TODAY - d).days % 5 + 1 for d in in_window)
        assert p1["likes"] == sum((TODAY - d).days % 2 == 0 for d in in_window)
        assert p1["comments"] == sum((TODAY - d).days % 4 == 0 for d in in_window)
        assert top[1]["views"] == 2 * DAYS and top[1]["unique_viewers"] == 2 * DAYS
        assert top[2]["views"] == sum((TODAY - d).days % 7 == 0 for d in in_window)
        assert p1["engagement_rate"] == pytest.approx((p1["likes"] + p1["shares"] + p1["comments"]) / p1["views"])
        assert [p["post_id"] for p in metrics.top_posts(conn, CREATOR, start, end, limit=1)] == ["dash-p1"]
        # a one-day window holds only today's views (ties by post id)
        one = metrics.top_posts(conn, CREATOR, *dashboard.window(1, dt.datetime.now(dt.timezone.utc)))
        assert [(p["post_id"], p["views"]) for p in one] == [("dash-p2", 2), ("dash-p1", 1), ("dash-p3", 1)]
        assert metrics.top_posts(conn, "nobody", start, end) == []


def test_the_audience_sums_the_mart_over_the_window(dash):
    start, end = _window()
    with psycopg.connect(dash.postgres) as conn:
        out = audience.breakdown(conn, CREATOR, start.date(), end.date())
    by_country = {r["country"]: r for r in out["by_country"]}
    assert [r["country"] for r in out["by_country"]][:3] == ["US", "DE", "BR"]
    assert by_country["US"]["views"] == 120  # the 500 views before the window are left out
    assert len(out["by_country"]) == audience.TOP_COUNTRIES + 1 and out["by_country"][-1]["country"] == "other"
    total = sum(COUNTRIES.values())
    assert sum(r["views"] for r in out["by_country"]) == total
    assert by_country["US"]["share"] == pytest.approx(120 / total)
    ages = {r["age_band"]: r["views"] for r in out["by_age_band"]}
    assert list(ages) == list(audience.AGE_BANDS)
    assert ages == {**dict.fromkeys(audience.AGE_BANDS, 0), "18-24": total // 2, "25-34": total // 2}
    assert "JP" not in by_country  # the other creator's audience


# --- the JSON -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(dash):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(dash, warm=False), headers=bearer(dash, CREATOR)) as client:
        yield client


def test_the_dashboard_json_holds_every_section(api):
    r = api.get(f"/v1/creators/{CREATOR}/dashboard")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["days"] == DAYS and {s: body[s]["status"] for s in dashboard.SECTIONS} == dict.fromkeys(
        dashboard.SECTIONS, "ok")
    expected = _expected_per_day()
    rows = body["series"]["rows"]
    assert len(rows) == DAYS and rows[-1]["bucket"] == TODAY.isoformat()
    for row in rows:
        assert {k: row[k] for k in expected[row["bucket"]]} == expected[row["bucket"]], row["bucket"]
    assert body["totals"]["views"] == sum(r["views"] for r in rows)
    assert [p["post_id"] for p in body["top_posts"]["rows"]] == ["dash-p1", "dash-p2", "dash-p3"]
    assert [p["alt_text"] for p in body["top_posts"]["rows"]] == [ALT_P1, None, None]  # p2, p3 not captioned yet
    assert [(p["post_id"], p["probability"]) for p in body["virality"]["rows"]] == list(PREDICTIONS.items())
    assert (body["virality"]["top_share"], body["virality"]["likely"]) == (virality.TOP_SHARE, virality.LIKELY)
    assert body["audience"]["by_country"][0]["country"] == "US"
    assert len(api.get(f"/v1/creators/{CREATOR}/dashboard?days=7").json()["series"]["rows"]) == 7


def test_a_creator_without_activity_gets_zeros_and_empty_lists(api):
    assert api.get("/v1/creators/nobody/dashboard?days=3").status_code == 403  # another creator's
    body = api.get("/v1/creators/nobody/dashboard?days=3", headers=bearer(api.app.state.settings, "ops", "admin")).json()
    assert [r["views"] for r in body["series"]["rows"]] == [0, 0, 0] and body["totals"]["views"] == 0
    assert body["top_posts"]["rows"] == [] and body["virality"]["rows"] == []
    assert body["audience"]["by_country"] == [] and all(r["views"] == 0 for r in body["audience"]["by_age_band"])


@pytest.mark.parametrize("schema, missing", [
    ("metrics", {"series", "totals", "top_posts"}),
    ("virality", {"virality"}),
    ("marts", {"audience"}),
])
def test_each_section_is_not_built_on_its_own(api, dash, schema, missing):
    with hidden(dash, schema):
        r = api.get(f"/v1/creators/{CREATOR}/dashboard")
    assert r.status_code == 200, r.text
    body = r.json()
    status = {s: body[s]["status"] for s in dashboard.SECTIONS}
    assert status == {s: "not_built" if s in missing else "ok" for s in dashboard.SECTIONS}
    for s in missing:
        assert "not built yet" in body[s]["message"] and set(body[s]) == {"status", "message"}


def test_postgres_down_is_a_503(dash):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    down = dash.model_copy(update={"postgres_dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/dashboard"})
    with TestClient(create_app(down, warm=False)) as client:
        r = client.get(f"/v1/creators/{CREATOR}/dashboard", headers=bearer(down, CREATOR))
    assert r.status_code == 503 and r.json()["error"].startswith("the analytics store is unreachable"), r.text
    assert r.headers["Retry-After"] == "5"


# --- the page in headless Chromium ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_process(dash, tmp_path_factory):
    """A real API process on the seeded database."""
    with browser_api(dash, tmp_path_factory.mktemp("dash_api")) as base:
        yield base


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "profile") as context:
        yield context


def _values(page, selector: str) -> list[int]:
    return page.eval_on_selector_all(selector, "els => els.map(e => Number(e.dataset.value))")


def test_the_page_draws_the_seeded_numbers_offline(api_process, browser, dash):
    page, requests = load_dashboard(browser, f"{api_process}/creators/{CREATOR}#token={token(dash, CREATOR)}")
    # nothing but the API: the page, its script and styles, the dashboard read
    assert all(u.startswith(api_process + "/") or u.startswith("data:") for u in requests), requests
    paths = {u.removeprefix(api_process) for u in requests}
    assert {f"/creators/{CREATOR}", "/static/dashboard.css", "/static/dashboard.js",
            f"/v1/creators/{CREATOR}/dashboard?days={DAYS}"} <= paths, paths

    expected = _expected_per_day()
    days = sorted(expected)[-DAYS:]
    for chart, key in (("reach", "views"), ("reach", "unique_viewers"), ("engagement", "likes"),
                       ("engagement", "shares"), ("engagement", "comments")):
        assert _values(page, f"#chart-{chart} g[data-series={key}] circle") == [expected[d][key] for d in days], key
    assert page.get_attribute("#chart-reach svg", "role") == "img"
    assert page.eval_on_selector("#chart-reach svg title", "e => e.textContent") == "Daily views and reach"

    total_views = sum(expected[d]["views"] for d in days)
    assert page.inner_text("[data-total=views] .sub") == f"{total_views:,} views"
    rows = page.eval_on_selector_all("#top-posts-table tbody tr", "rs => rs.map(r => r.dataset.postId)")
    assert rows == ["dash-p1", "dash-p2", "dash-p3"]
    assert page.inner_text("#top-posts-table tbody tr:first-child td:nth-child(2) code") == "dash-p1"
    assert page.inner_text("#top-posts-table tbody tr:first-child .alt-text") == ALT_P1

    assert _values(page, "#chart-virality g.bar") == list(PREDICTIONS.values())
    labels = page.eval_on_selector_all("#chart-virality .value-label", "ts => ts.map(t => t.textContent)")
    assert labels == ["82%", "35%", "4%"]
    countries = page.eval_on_selector_all("#chart-country g.bar", "gs => gs.map(g => g.dataset.label)")
    assert countries[:3] == ["US", "DE", "BR"] and countries[-1] == "other"
    assert _values(page, '#chart-country g.bar[data-label="US"]') == [120]
    assert page.eval_on_selector_all("#chart-age g.bar", "gs => gs.map(g => g.dataset.label)") == list(audience.AGE_BANDS)

    shot = artifact("dashboard.png")
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_sections_not_built_yet_say_so_and_the_rest_still_draws(api_process, browser, dash):
    with hidden(dash, "virality", "marts"):
        page, _ = load_dashboard(browser, f"{api_process}/creators/{CREATOR}?days=7#token={token(dash, CREATOR)}")
    assert len(_values(page, "#chart-reach g[data-series=views] circle")) == 7
    for box in ("#chart-virality", "#chart-country", "#chart-age"):
        assert "not built yet" in page.inner_text(f"{box} .notice.not-built"), box
    assert page.get_attribute('a[aria-current="page"]', "href") == "?days=7"
    shot = artifact("dashboard-not-built.png")
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot (sections not built): {shot}")
