"""Human review of moderation on the real embedded stack (a Postgres database and Redis database of its own):
the queue for moderators only, a reviewer's decision overriding the model's and the gate (and surviving the
asset and live publishers), the audit log, the author's one appeal, who sees a removed post's details, reviews
copied back as text-model labels and used by the next training run, and the review page in headless Chromium
against a real API process, signed in as a moderator. The tests build on each other in file order (one
module-scoped world), like test_moderation.py's."""

from __future__ import annotations

import datetime as dt
import hashlib

import psycopg
import pyarrow as pa
import pytest
import redis

from socialpulse import captions
from tests.browser import api_process as browser_api
from tests.browser import artifact, chromium
from tests.conftest import bearer

pytestmark = pytest.mark.integration

D = dt.date(2026, 4, 2)
T = dt.datetime(2026, 4, 2, 9, tzinfo=dt.timezone.utc)
HATE_TEXT = "possible hate words aimed at a group #review"


def _store_media(settings, data: bytes, ext: str = "jpg") -> str:
    """A file in the media store, where uploads land (``<root>/<sha[:2]>/<sha>.<ext>``)."""
    from socialpulse.media import media_root

    sha = hashlib.sha256(data).hexdigest()
    path = media_root(settings) / sha[:2] / f"{sha}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.as_uri()


def _post(pid, author, kind, caption, media_uri=None):
    return {"post_id": pid, "author_id": author, "kind": kind, "caption": caption, "hashtags": ["review"],
            "media_uri": media_uri, "duration_s": None, "language": "en", "created_at": T, "event_date": D}


def _decision(pid, author, action, reasons=(), hs=None, of=None, nsfw=None, media_status="none"):
    return {"post_id": pid, "author_id": author, "action": action, "reasons": list(reasons), "hatespeech": hs,
            "offensive": of, "nsfw": nsfw, "media_status": media_status, "policy_version": "policy-test",
            "text_model_version": "text-test", "media_model_version": "media-test", "decided_at": T,
            "created_at": T, "event_date": D}


PAGE_ALT = "Photo, with on-screen text: 'PAGE'"


@pytest.fixture(scope="module")
def world(own_stores):
    """Settings on stores of this module's own, with one day of model decisions published (asset source)."""
    from assets.moderation.publish import publish_day
    from assets.moderation.tables import MODERATION_DECISIONS
    from bench.moderation import photo
    from socialpulse.contracts import POSTS

    with own_stores("review", redis_db=13) as s:
        image = photo(7, (320, 240), "REVIEW ME")
        uri = _store_media(s, image)
        page_uri = _store_media(s, photo(8, (320, 240), "PAGE"))
        corrupt = "media could not be analysed: corrupt_image: truncated JPEG (" + uri + ")"
        posts = [
            _post("q-img", "u-b", "image", "look at this", uri),
            _post("q-text", "u-a", "text", HATE_TEXT.removesuffix(" #review")),
            _post("m-rem", "u-a", "text", "a post the model removed"),
            _post("m-lim", "u-c", "text", "a post the model limited"),
            _post("m-ok", "u-c", "text", "a fine post"),
            _post("p-page", "u-d", "image", "a photo for the page", page_uri),
        ]
        decisions = [
            _decision("q-img", "u-b", "review", [corrupt], 0.01, 0.02, None, "error"),
            _decision("q-text", "u-a", "review", ["possible hate speech in caption: 0.70 >= 0.60"], 0.70, 0.20),
            _decision("m-rem", "u-a", "remove", ["hate speech in caption: 0.95 >= 0.90"], 0.95, 0.03),
            _decision("m-lim", "u-c", "limit", ["offensive language in caption: 0.80 >= 0.70"], 0.10, 0.80),
            _decision("m-ok", "u-c", "allow"),
            _decision("p-page", "u-d", "review", ["possible nsfw image: 0.72 >= 0.60"], 0.02, 0.03, 0.72, "ok"),
        ]
        posts_t = pa.Table.from_pylist(posts, schema=POSTS.schema)
        decisions_t = pa.Table.from_pylist(decisions, schema=MODERATION_DECISIONS.schema)
        with psycopg.connect(s.postgres) as conn:
            publish_day(conn, redis.Redis.from_url(s.redis), decisions_t, D, posts_t)
            captions.ensure_tables(conn)  # the page's photo has alt-text; q-img was never captioned
            captions.upsert(conn, [{"post_id": "p-page", "author_id": "u-d", "kind": "image", "alt_text": PAGE_ALT,
                                    "captions": [], "hashtags": [], "generator": "grounded-1", "fallback": False,
                                    "labels_version": None, "event_date": D, "generated_at": dt.datetime.now(dt.timezone.utc)}])
        yield {"settings": s, "posts": posts_t, "decisions": decisions_t, "image": image}


@pytest.fixture(scope="module")
def api(world):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(world["settings"], warm=False)) as client:
        yield client


def _as(world, user, role="user"):
    return bearer(world["settings"], user, role)


def _row(world, sql, *params):
    with psycopg.connect(world["settings"].postgres) as conn:
        return conn.execute(sql, params).fetchone()


def _gate(world):
    from socialpulse.moderation import REDIS_ACTIONS_KEY

    return redis.Redis.from_url(world["settings"].redis, decode_responses=True).hgetall(REDIS_ACTIONS_KEY)


# --- the queue and the media ---------------------------------------------------------------------------------
def test_the_queue_is_for_moderators_only(api, world):
    assert api.get("/v1/moderation/queue").status_code == 401
    r = api.get("/v1/moderation/queue", headers=_as(world, "u-a"))
    assert r.status_code == 403 and "moderator" in r.json()["error"]
    r = api.get("/v1/moderation/queue", headers=_as(world, "mod-1", "moderator"))
    assert r.status_code == 200, r.text
    items = {i["post_id"]: i for i in r.json()["items"]}
    assert {"q-img", "q-text", "p-page"} <= set(items) and not {"m-rem", "m-ok"} & set(items)
    img = items["q-img"]
    assert img["text"] == "look at this #review" and img["kind"] == "image" and img["author_id"] == "u-b"
    assert img["reasons"][0].startswith("media could not be analysed: corrupt_image")
    assert img["scores"] == {"hatespeech": pytest.approx(0.01), "offensive": pytest.approx(0.02), "nsfw": None}
    assert img["media_url"] == "/v1/moderation/q-img/media" and img["appeal"] is False
    assert img["alt_text"] is None and items["p-page"]["alt_text"] == PAGE_ALT
    assert items["q-text"]["media_url"] is None and items["q-text"]["scores"]["hatespeech"] == pytest.approx(0.7)
    assert api.get("/v1/moderation/queue", headers=_as(world, "admin-1", "admin")).status_code == 200


def test_moderators_get_the_posts_media(api, world):
    r = api.get("/v1/moderation/q-img/media", headers=_as(world, "mod-1", "moderator"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == world["image"] and "no-store" in r.headers["cache-control"]
    assert api.get("/v1/moderation/q-img/media", headers=_as(world, "u-b")).status_code == 403
    assert api.get("/v1/moderation/q-img/media").status_code == 401
    none = api.get("/v1/moderation/q-text/media", headers=_as(world, "mod-1", "moderator"))
    assert none.status_code == 404 and "no stored media" in none.json()["error"]


# --- a review overrides the model ----------------------------------------------------------------------------
def test_a_review_overrides_the_model_and_the_gate_and_is_audited(api, world):
    from socialpulse import audit

    assert _gate(world)["q-text"] == "review"
    assert api.post("/v1/moderation/q-text/review", json={"decision": "remove"},
                    headers=_as(world, "u-a")).status_code == 403
    bad = api.post("/v1/moderation/q-text/review", json={"decision": "review"}, headers=_as(world, "mod-1", "moderator"))
    assert bad.status_code == 422
    r = api.post("/v1/moderation/q-text/review", json={"decision": "remove", "note": "slur against a group"},
                 headers=_as(world, "mod-1", "moderator"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["decision"], body["previous_action"], body["model_action"], body["appeal"]) == ("remove", "review", "review", False)
    assert _row(world, "SELECT action, source FROM moderation.decisions WHERE post_id = 'q-text'") == ("remove", "review")
    assert _row(world, "SELECT status, resolution FROM moderation.review_queue WHERE post_id = 'q-text'") == ("resolved", "remove")
    assert _row(world, "SELECT reviewer_id, note, model_action FROM moderation.reviews WHERE post_id = 'q-text'") == (
        "mod-1", "slur against a group", "review")
    assert _gate(world)["q-text"] == "remove"
    queue = api.get("/v1/moderation/queue", headers=_as(world, "mod-1", "moderator")).json()["items"]
    assert "q-text" not in {i["post_id"] for i in queue}

    # the model's removal overturned: the gate is cleared and the post is public again
    assert api.get("/v1/posts/m-rem/moderation").status_code == 404
    r = api.post("/v1/moderation/m-rem/review", json={"decision": "allow"}, headers=_as(world, "admin-1", "admin"))
    assert r.status_code == 200 and r.json()["model_action"] == "remove"
    assert "m-rem" not in _gate(world)
    public = api.get("/v1/posts/m-rem/moderation").json()
    assert public["action"] == "allow" and public["source"] == "review" and "review" not in public

    s = world["settings"]
    with psycopg.connect(s.postgres) as conn:
        entries = audit.entries(conn, s, subject="q-text")
        by_admin = audit.entries(conn, s, actor="admin-1")
    assert [(e["action"], e["actor_role"]) for e in entries] == [("moderation.review", "moderator")]
    assert entries[0]["actor_ref"] == audit.ref(s, "mod-1")
    assert entries[0]["details"]["decision"] == "remove" and entries[0]["details"]["previous"] == "review"
    assert "slur" not in str(entries[0]["details"])  # notes are personal data: never in the audit log
    assert by_admin[0]["details"]["previous"] == "remove" and by_admin[0]["subject_ref"] == audit.ref(s, "m-rem")
    assert api.post("/v1/moderation/never-decided/review", json={"decision": "allow"},
                    headers=_as(world, "mod-1", "moderator")).status_code == 404


def test_the_publishers_never_undo_a_review(api, world):
    from assets.moderation.publish import publish_day, publish_posts

    s = world["settings"]
    decisions, posts = world["decisions"], world["posts"]
    r = redis.Redis.from_url(s.redis)
    with psycopg.connect(s.postgres) as conn:
        publish_day(conn, r, decisions, D, posts)  # the asset re-derives the model's decisions
        live = decisions.filter(pa.array([p in ("q-text", "m-rem") for p in decisions.column("post_id").to_pylist()]))
        publish_posts(conn, r, live, posts)  # and a late live pass
    assert _row(world, "SELECT action, source FROM moderation.decisions WHERE post_id = 'q-text'") == ("remove", "review")
    assert _row(world, "SELECT action, source FROM moderation.decisions WHERE post_id = 'm-rem'") == ("allow", "review")
    assert _row(world, "SELECT status FROM moderation.review_queue WHERE post_id = 'q-text'") == ("resolved",)
    gate = _gate(world)
    assert gate["q-text"] == "remove" and "m-rem" not in gate and gate["q-img"] == "review"
    queue = api.get("/v1/moderation/queue", headers=_as(world, "mod-1", "moderator")).json()["items"]
    assert "q-text" not in {i["post_id"] for i in queue} and "q-img" in {i["post_id"] for i in queue}


# --- appeals -----------------------------------------------------------------------------------------------
def test_an_author_appeals_once_and_its_review_is_final(api, world):
    from socialpulse import audit

    msg = {"message": "this is satire, please look again"}
    assert api.post("/v1/moderation/m-lim/appeal", json=msg).status_code == 401
    other = api.post("/v1/moderation/m-lim/appeal", json=msg, headers=_as(world, "u-a"))
    assert other.status_code == 403 and "author" in other.json()["error"]
    allowed = api.post("/v1/moderation/m-ok/appeal", json=msg, headers=_as(world, "u-c"))
    assert allowed.status_code == 409 and "nothing to appeal" in allowed.json()["error"]
    r = api.post("/v1/moderation/m-lim/appeal", json=msg, headers=_as(world, "u-c"))
    assert r.status_code == 201, r.text
    again = api.post("/v1/moderation/m-lim/appeal", json={"message": "please"}, headers=_as(world, "u-c"))
    assert again.status_code == 409 and "once" in again.json()["error"]

    queue = {i["post_id"]: i for i in api.get("/v1/moderation/queue", headers=_as(world, "mod-1", "moderator")).json()["items"]}
    assert queue["m-lim"]["appeal"] is True and queue["m-lim"]["appeal_message"] == msg["message"]
    assert _gate(world)["m-lim"] == "limit"  # restricted until a moderator decides

    r = api.post("/v1/moderation/m-lim/review", json={"decision": "allow", "note": "satire"},
                 headers=_as(world, "mod-2", "moderator"))
    assert r.status_code == 200 and r.json()["appeal"] is True and r.json()["final"] is True
    assert "m-lim" not in _gate(world)
    final = api.post("/v1/moderation/m-lim/review", json={"decision": "remove"}, headers=_as(world, "mod-1", "moderator"))
    assert final.status_code == 409 and "final" in final.json()["error"]
    assert _row(world, "SELECT status FROM moderation.appeals WHERE post_id = 'm-lim'") == ("decided",)
    mine = api.get("/v1/posts/m-lim/moderation", headers=_as(world, "u-c")).json()
    assert mine["appeal"]["status"] == "decided" and mine["review"]["decision"] == "allow"
    s = world["settings"]
    with psycopg.connect(s.postgres) as conn:
        actions = [e["action"] for e in audit.entries(conn, s, subject="m-lim")]
    assert actions == ["moderation.review", "moderation.appeal"]  # newest first
    # admins read the log through the API, by id; it answers pseudonyms only
    assert api.get("/v1/admin/audit", params={"subject": "m-lim"}, headers=_as(world, "mod-1", "moderator")).status_code == 403
    log = api.get("/v1/admin/audit", params={"subject": "m-lim"}, headers=_as(world, "root", "admin")).json()
    assert [e["action"] for e in log["entries"]] == actions and log["subject_ref"] == audit.ref(s, "m-lim")
    assert {e["actor_role"] for e in log["entries"]} == {"moderator", "user"} and "u-c" not in str(log)


# --- a removed post's details --------------------------------------------------------------------------------
def test_a_removed_posts_details_are_for_its_author_and_moderators(api, world):
    assert _row(world, "SELECT action FROM moderation.decisions WHERE post_id = 'q-text'") == ("remove",)
    anonymous = api.get("/v1/posts/q-text/moderation")
    assert anonymous.status_code == 404 and anonymous.json()["error"] == api.get("/v1/posts/nope/moderation").json()["error"].replace("nope", "q-text")
    assert api.get("/v1/posts/q-text/moderation", headers=_as(world, "u-b")).status_code == 404
    author = api.get("/v1/posts/q-text/moderation", headers=_as(world, "u-a"))
    assert author.status_code == 200 and author.json()["action"] == "remove"
    assert author.json()["review"]["decision"] == "remove" and author.json()["reasons"]
    moderator = api.get("/v1/posts/q-text/moderation", headers=_as(world, "mod-9", "moderator"))
    assert moderator.status_code == 200 and moderator.json()["source"] == "review"
    # a removed post's other reads stay hidden, whoever asks
    assert api.get("/v1/posts/q-text/stats", headers=_as(world, "u-a")).status_code == 404
    bad = api.get("/v1/posts/q-text/moderation", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401


# --- labels flow back into training ---------------------------------------------------------------------------
def test_reviews_become_labels_in_the_next_training_set(world, materialize, monkeypatch):
    import assets.moderation.text as text_mod
    from assets.moderation import ASSETS
    from assets.moderation.tables import MODERATION_REVIEW_LABELS
    from socialpulse import lake
    from socialpulse.loaders import HATEXPLAIN_SAMPLE, load_hatexplain

    s = world["settings"]
    labels_asset = [a for a in ASSETS if a.key.path == ["lake", "silver", "moderation_review_labels"]]
    meta = materialize(labels_asset, None, settings=s)["moderation_review_labels"]
    labels = {r["post_id"]: r for r in lake.read(MODERATION_REVIEW_LABELS, settings=s).to_pylist()}
    # q-text removed for hate speech in its caption; m-rem and m-lim allowed: normal text
    assert labels["q-text"]["label"] == "hatespeech" and labels["q-text"]["text"] == HATE_TEXT
    assert labels["m-rem"]["label"] == "normal" and labels["m-lim"]["label"] == "normal"
    assert labels["m-lim"]["appeal"] is True and meta["rows"] == len(labels) >= 3

    seen = {}
    real = text_mod.train_text_moderator

    def spy(train_x, train_y, val_x, val_y, **kw):
        seen.update(train=list(zip(train_x, train_y)), val=list(val_x))
        return real(train_x, train_y, val_x, val_y, **kw)

    monkeypatch.setattr(text_mod, "train_text_moderator", spy)
    load_hatexplain(s, HATEXPLAIN_SAMPLE)
    text_model = [a for a in ASSETS if a.key.path == ["mlflow", "moderation", "text_model"]]
    trained = materialize(text_model, None, settings=s)["text_model"]
    assert (HATE_TEXT, "hatespeech") in seen["train"]
    assert HATE_TEXT not in seen["val"]
    assert trained["review_labels"] == len(labels) and trained["train_rows"] == 400 + len(labels)


# --- the review page ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api_process(world, tmp_path_factory):
    """A real API process on this module's stores."""
    with browser_api(world["settings"], tmp_path_factory.mktemp("review_api")) as base:
        yield base


def _open(context, url: str):
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda req: requests.append(req.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
    return page, requests, errors


def test_the_review_page_shows_the_queue_and_records_a_removal(api_process, world, tmp_path):
    token = bearer(world["settings"], "mod-page", "moderator")["Authorization"].removeprefix("Bearer ")
    with chromium(tmp_path / "profile") as context:
        page, requests, errors = _open(context, f"{api_process}/moderation/review#token={token}")
        assert page.get_attribute("body", "data-ready") == "1", page.inner_text("#page-error")
        assert errors == []
        assert "token" not in page.url  # the token left the address bar
        # nothing but the API: the page, its files, the queue and the media
        assert all(u.startswith(api_process + "/") or u.startswith(("data:", "blob:")) for u in requests), requests
        paths = {u.removeprefix(api_process).split("#")[0] for u in requests}
        assert {"/moderation/review", "/static/review.css", "/static/review.js", "/v1/moderation/queue?limit=100",
                "/v1/moderation/p-page/media"} <= paths, paths

        item = page.locator('li.item[data-post-id="p-page"]')
        assert item.locator(".text").inner_text() == "a photo for the page #review"
        assert "possible nsfw image" in item.locator(".reasons").inner_text()
        assert item.locator('dd[data-score="nsfw"]').inner_text() == "0.72"
        assert item.locator('dd[data-score="hatespeech"]').inner_text() == "0.02"
        img = item.locator(".media img")
        assert img.get_attribute("src").startswith("blob:")
        assert img.evaluate("i => i.complete && i.naturalWidth") == 320
        assert img.get_attribute("alt") == PAGE_ALT  # screen readers hear what the platform detected
        assert "Signed in as mod-page" in page.inner_text("#who")
        assert not page.is_visible("#login") and not item.locator(".badge.appeal").is_visible()
        assert item.locator(".badge.action").inner_text().lower() == "review"

        shot = artifact("review.png")
        page.screenshot(path=str(shot), full_page=True)
        print(f"review page screenshot: {shot}")
        assert shot.stat().st_size > 10_000

        item.locator("input[name=note]").fill("nudity")
        item.locator("button.remove").click()
        page.wait_for_selector('li.item[data-post-id="p-page"]', state="detached", timeout=10_000)
        assert "Decided p-page: remove" in page.inner_text("#page-status")
    assert _row(world, "SELECT action, source FROM moderation.decisions WHERE post_id = 'p-page'") == ("remove", "review")
    assert _row(world, "SELECT reviewer_id, note FROM moderation.reviews WHERE post_id = 'p-page'") == ("mod-page", "nudity")
    assert _gate(world)["p-page"] == "remove"


def test_the_review_page_refuses_a_non_moderator(api_process, world, tmp_path):
    token = bearer(world["settings"], "u-a")["Authorization"].removeprefix("Bearer ")
    with chromium(tmp_path / "profile") as context:
        page, _, _ = _open(context, f"{api_process}/moderation/review#token={token}")
        assert page.get_attribute("body", "data-ready") == "forbidden"
        assert "for moderators" in page.inner_text("#page-error")
        assert page.locator("li.item").count() == 0
        # signed out: the paste-your-token form
        page.click("#sign-out")
        assert page.get_attribute("body", "data-ready") == "login" and page.is_visible("#login")
        mod = bearer(world["settings"], "mod-2", "moderator")["Authorization"].removeprefix("Bearer ")
        page.fill("#token-input", mod)
        page.click("#login button[type=submit]")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=15_000)
        assert page.locator('li.item[data-post-id="q-img"]').count() == 1


def test_tables_of_an_earlier_version_are_migrated_in_place(stack):
    """A demo's moderation tables made before reviews (no 'review' source, no content columns, no appeal flag)
    gain them, rows kept, and accept a review."""
    from psycopg.conninfo import make_conninfo

    from socialpulse import moderation

    with psycopg.connect(stack.postgres, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS review_migrate_test")
        admin.execute("CREATE DATABASE review_migrate_test")
    old_ddl = """
        CREATE SCHEMA moderation;
        CREATE TABLE moderation.decisions (post_id text PRIMARY KEY, author_id text NOT NULL, action text NOT NULL
            CHECK (action IN ('allow', 'limit', 'review', 'remove')), reasons text[] NOT NULL, hatespeech real,
            offensive real, nsfw real, media_status text NOT NULL, policy_version text NOT NULL,
            text_model_version text NOT NULL, media_model_version text NOT NULL, decided_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL, event_date date NOT NULL,
            source text NOT NULL DEFAULT 'asset' CHECK (source IN ('asset', 'live')));
        CREATE TABLE moderation.review_queue (post_id text PRIMARY KEY, reasons text[] NOT NULL,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
            enqueued_at timestamptz NOT NULL DEFAULT now(), resolved_at timestamptz, resolution text,
            event_date date NOT NULL);
        INSERT INTO moderation.decisions VALUES ('old-1', 'u-o', 'review', '{"why"}', 0.5, 0.1, NULL, 'none', 'p', 't',
            'm', now(), now(), '2026-01-01', 'live');
        INSERT INTO moderation.review_queue (post_id, reasons, event_date) VALUES ('old-1', '{"why"}', '2026-01-01');
    """
    with psycopg.connect(make_conninfo(stack.postgres, dbname="review_migrate_test")) as conn:
        conn.execute(old_ddl)
        conn.commit()
        moderation.ensure_tables(conn)
        assert moderation.review_queue(conn)["items"][0]["post_id"] == "old-1"
        moderation.review(conn, stack, post_id="old-1", reviewer_id="mod-m", reviewer_role="moderator",
                          decision="limit", note=None, now=T)
        assert conn.execute("SELECT action, source, caption FROM moderation.decisions").fetchone() == ("limit", "review", None)
        # idempotent: a second process migrates nothing and fails nothing
    with psycopg.connect(make_conninfo(stack.postgres, dbname="review_migrate_test")) as conn:
        moderation.ensure_tables(conn)
        checks = conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'moderation.decisions'::regclass "
                              "AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%%source%%'").fetchone()[0]
        assert checks == 1
