"""GDPR export and deletion on the real stack: a small world where the target user has a profile, posts (one
with an image), comments, likes, follows and records still waiting in the ingest streams; the pipeline spreads
them across the stores (stream drain -> bronze; warehouse exports and metrics; moderation decisions and gate;
content embeddings and the pgvector index; engagement features and the Feast online store; trends; virality
predictions; notifications; the feed's serving state; a dbt-shaped mart). Then: export through the API (a zip
with the user's rows from every store), deletion through the API and the privacy job, and a scan of every
lake file (data, checkpoints, log JSON), every Postgres table, every Redis key and the media folder that finds
nothing of the user, while another user's data stays. A second run is a no-op, a crash mid-way resumes, and
the audit log holds the entries (with pseudonyms only)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import redis as redis_lib

from assets.privacy import logic
from tests.conftest import bearer

pytestmark = pytest.mark.integration

U, OTHER, FAN, CRASH = "u-gdpr-7q", "u-keep-3m", "u-fan-5k", "u-gdpr-8r"
HANDLE = "gdpr_handle_zx7q"
POSTS = {"p-gdpr-7q-img": "quokka marmalade rhapsody under violet lanterns",
         "p-gdpr-7q-txt": "xylophone harbour sonnet for the midnight ferry"}
OTHER_POST, OTHER_CAPTION = "p-keep-3m-1", "keeper post about sourdough bread"
COMMENT_BY_U = "wombat saxophone comment zq9"
COMMENT_ON_U = "lovely lanterns from the fan zq8"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
D = NOW.date()
T0 = NOW - dt.timedelta(hours=3)


def _png(seed: int) -> bytes:
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def _aiter(data: bytes):
    yield data


def _store_media(settings, data: bytes):
    from socialpulse import media

    return asyncio.run(media.store_upload(_aiter(data), settings, "image"))


def _enqueue(settings, client) -> dict:
    """Users, posts (with media) and events through the ingest streams, as the API would enqueue them."""
    from socialpulse import ingest

    ttl = 3600
    users = [ingest.UserIn(user_id=U, handle=HANDLE, country="FR", language="en", is_creator=True, birth_year=1990,
                           created_at=T0),
             ingest.UserIn(user_id=OTHER, handle="keeper_3m", is_creator=True, created_at=T0),
             ingest.UserIn(user_id=FAN, handle="fan_5k", created_at=T0),
             ingest.UserIn(user_id=CRASH, handle="crash_8r", created_at=T0)]
    for u in users:
        ingest.enqueue_user(client, u, ttl)
    img = _store_media(settings, _png(7))
    other_img = _store_media(settings, _png(8))
    ingest.enqueue_post(client, ingest.PostIn(post_id="p-gdpr-7q-img", author_id=U, kind="image",
                                              caption=POSTS["p-gdpr-7q-img"], hashtags=["lanterns", "night"],
                                              language="en", created_at=T0), img, ttl)
    ingest.enqueue_post(client, ingest.PostIn(post_id="p-gdpr-7q-txt", author_id=U, kind="text",
                                              caption=POSTS["p-gdpr-7q-txt"], hashtags=["night"], language="en",
                                              created_at=T0), None, ttl)
    ingest.enqueue_post(client, ingest.PostIn(post_id=OTHER_POST, author_id=OTHER, kind="image",
                                              caption=OTHER_CAPTION, hashtags=["night", "bread"], language="en",
                                              created_at=T0), other_img, ttl)
    ingest.enqueue_post(client, ingest.PostIn(post_id="p-gdpr-8r-1", author_id=CRASH, kind="text",
                                              caption="crash test caption marigold", hashtags=["night"],
                                              created_at=T0), None, ttl)
    at = lambda m: T0 + dt.timedelta(minutes=m)  # noqa: E731
    events = [
        # the target user acts
        dict(event_id="ev-u-1", event_type="view", user_id=U, post_id=OTHER_POST, watch_time_s=9.0, created_at=at(5)),
        dict(event_id="ev-u-2", event_type="like", user_id=U, post_id=OTHER_POST, created_at=at(6)),
        dict(event_id="ev-u-3", event_type="comment", user_id=U, post_id=OTHER_POST, text=COMMENT_BY_U,
             created_at=at(7)),
        dict(event_id="ev-u-4", event_type="follow", user_id=U, target_user_id=OTHER, created_at=at(8)),
        # others act on the target user and their posts
        *[dict(event_id=f"ev-f-{i}", event_type="view", user_id=FAN, post_id=p, watch_time_s=5.0 + i,
               created_at=at(10 + i)) for i, p in enumerate(POSTS)],
        dict(event_id="ev-f-3", event_type="like", user_id=FAN, post_id="p-gdpr-7q-img", created_at=at(20)),
        dict(event_id="ev-f-4", event_type="comment", user_id=FAN, post_id="p-gdpr-7q-img", text=COMMENT_ON_U,
             created_at=at(21)),
        dict(event_id="ev-f-5", event_type="follow", user_id=FAN, target_user_id=U, created_at=at(22)),
        dict(event_id="ev-o-1", event_type="follow", user_id=OTHER, target_user_id=U, created_at=at(23)),
        # the rest of the world
        dict(event_id="ev-f-6", event_type="view", user_id=FAN, post_id=OTHER_POST, watch_time_s=4.0,
             created_at=at(24)),
        dict(event_id="ev-f-7", event_type="like", user_id=FAN, post_id=OTHER_POST, created_at=at(25)),
        dict(event_id="ev-f-8", event_type="follow", user_id=FAN, target_user_id=OTHER, created_at=at(26)),
        dict(event_id="ev-c-1", event_type="view", user_id=CRASH, post_id=OTHER_POST, watch_time_s=3.0,
             created_at=at(27)),
    ]
    ingest.enqueue_events(client, [ingest.EventIn(**e) for e in events], ttl)
    return {"media": img, "other_media": other_img}


def _seed_derived(settings, client) -> None:
    """The stores the pipeline here does not fill by itself: a moderation decision and gate, a virality
    prediction, a dbt-shaped mart row, a notification that names the user in another user's payload, a cached
    feed page, a rate-limit key."""
    from socialpulse import moderation, virality

    with psycopg.connect(settings.postgres) as conn:
        moderation.ensure_tables(conn)
        for pid, action in (("p-gdpr-7q-img", "limit"), ("p-gdpr-7q-txt", "allow"), (OTHER_POST, "allow"),
                            ("p-gdpr-8r-1", "allow")):
            author = U if pid.startswith("p-gdpr-7q") else (CRASH if "8r" in pid else OTHER)
            conn.execute(
                """INSERT INTO moderation.decisions (post_id, author_id, action, reasons, media_status, policy_version,
                       text_model_version, media_model_version, decided_at, created_at, event_date, source)
                   VALUES (%s, %s, %s, '{}', 'none', 'p', 't', 'm', now(), now(), %s, 'asset')
                   ON CONFLICT (post_id) DO UPDATE SET action = EXCLUDED.action""", (pid, author, action, D))
        virality.ensure_schema(conn)
        virality.upsert(conn, [{"post_id": pid, "author_id": U, "post_created_at": T0, "predicted_at": NOW,
                                "observed_hours": 3.0, "probability": 0.9, "views_so_far": 1, "reach_threshold": 5.0,
                                "model_version": "test"} for pid in POSTS]
                        + [{"post_id": OTHER_POST, "author_id": OTHER, "post_created_at": T0, "predicted_at": NOW,
                            "observed_hours": 3.0, "probability": 0.2, "views_so_far": 3, "reach_threshold": 5.0,
                            "model_version": "test"}])
        conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
        conn.execute("""CREATE TABLE IF NOT EXISTS marts.fct_creator_audience (creator_id text, activity_date date,
                        country text, age_band text, views bigint)""")
        conn.execute("INSERT INTO marts.fct_creator_audience VALUES (%s, %s, 'FR', '25-34', 2), "
                     "(%s, %s, 'FR', '25-34', 4)", (U, D, OTHER, D))
        conn.commit()
    moderation.set_gate(client, "p-gdpr-7q-img", "limit")
    client.set("feed:page:req-123", json.dumps(["p-gdpr-7q-img", OTHER_POST]), ex=600)
    client.set(f"ratelimit:reads:token:{U}", "1", ex=600)


@pytest.fixture(scope="module")
def world(own_stores, materialize):
    """The world, spread across the stores by the pipeline's own assets."""
    from assets.content import assets as content_assets
    from assets.engagement import assets as engagement_assets
    from assets.notifications import assets as notification_assets
    from assets.ranking import assets as ranking_assets
    from assets.trends import assets as trends_assets
    from assets.warehouse.assets import WAREHOUSE_ASSETS
    from socialpulse import ingest
    from socialpulse.drain import drain_all
    from socialpulse.stores.postgres import bootstrap_database

    with own_stores("privacy", redis_db=13) as settings:
        bootstrap_database(settings)
        client = redis_lib.Redis.from_url(settings.redis)
        media = _enqueue(settings, client)
        drained = drain_all(settings, client)
        assert drained.rows.get("posts") == 4, drained
        # records still waiting in the streams when the deletion starts
        ingest.enqueue_events(client, [ingest.EventIn(event_id="ev-u-late", event_type="like", user_id=U,
                                                      post_id=OTHER_POST, created_at=NOW - dt.timedelta(minutes=1)),
                                       ingest.EventIn(event_id="ev-f-late", event_type="view", user_id=FAN,
                                                      post_id="p-gdpr-7q-txt", watch_time_s=2.0,
                                                      created_at=NOW - dt.timedelta(minutes=1)),
                                       ingest.EventIn(event_id="ev-o-late", event_type="view", user_id=OTHER,
                                                      post_id=OTHER_POST, watch_time_s=2.0,
                                                      created_at=NOW - dt.timedelta(minutes=1))], 3600)
        _seed_derived(settings, client)
        materialize(WAREHOUSE_ASSETS, D, settings=settings)
        materialize([content_assets.post_embeddings, content_assets.post_vectors], D, settings=settings)
        materialize([engagement_assets.engagement_features, engagement_assets.online_engagement_features], D,
                    settings=settings)
        materialize(trends_assets.DAILY_ASSETS, D, settings=settings)
        materialize([notification_assets.notifications_from_assets], D, settings=settings)
        materialize([ranking_assets.feed_serving_state], None, settings=settings)
        yield {"settings": settings, "redis": client, **media}
        client.close()


@pytest.fixture(scope="module")
def api(world):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(world["settings"], warm=False)) as client:
        yield client


# --- the scan -----------------------------------------------------------------------------------------------

def _needles(user_id: str, handle: str, posts: dict[str, str], texts: list[str], shas: list[str]):
    return logic.id_matcher([user_id, *posts]), [t.encode() for t in [handle, *posts.values(), *texts]], set(shas)


def scan(settings, client, user_id=U, handle=HANDLE, posts=POSTS, texts=(COMMENT_BY_U,), shas=()) -> list[str]:
    """Every place the user is still found: ids as whole ids, texts as substrings, media by sha256."""
    ids, texts, shas = _needles(user_id, handle, posts, list(texts), list(shas))

    def found(blob: bytes) -> bool:
        return logic.mentions(blob, ids) or any(t in blob for t in texts)

    hits = []
    for path in Path(settings.lake).rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if found(raw):
            hits.append(f"lake file {path}")
        elif path.suffix == ".parquet":  # compressed pages: read the values
            rows = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
            if found(rows):
                hits.append(f"lake rows {path}")
    with psycopg.connect(settings.postgres) as conn:
        tables = conn.execute("""SELECT table_schema, table_name FROM information_schema.tables
                                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
                                   AND table_type IN ('BASE TABLE', 'VIEW')""").fetchall()
        for schema, table in tables:
            for (text,) in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                if text and found(text.encode()):
                    hits.append(f"postgres {schema}.{table}: {text[:120]}")
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        values: list[bytes] = [key]
        if kind == "string":
            values.append(client.get(key) or b"")
        elif kind == "hash":
            for f, v in client.hgetall(key).items():
                values += [f, v]
        elif kind == "list":
            values += client.lrange(key, 0, -1)
        elif kind == "set":
            values += list(client.smembers(key))
        elif kind == "zset":
            values += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in client.xrange(key):
                for f, v in fields.items():
                    values += [f, v]
        from socialpulse.features import PROJECT

        if any(found(v) for v in values) or (key.endswith(PROJECT.encode()) and found(key[:-len(PROJECT)])):
            hits.append(f"redis {key!r} ({kind})")
    for path in Path(settings.media).rglob("*"):
        if path.is_file() and (hashlib.sha256(path.read_bytes()).hexdigest() in shas
                               or any(s in path.name for s in shas)):
            hits.append(f"media {path}")
    return hits


def run_job(settings, request_id: str):
    from assets.privacy.assets import privacy_job
    from orchestration.resources import build_resources

    return privacy_job.execute_in_process(
        run_config={"ops": {"process_privacy_request": {"config": {"request_id": request_id}}}},
        resources=build_resources(settings), raise_on_error=False)


# --- tests (in order: the export, then the deletion of the same world) ----------------------------------------

def test_the_world_holds_the_user_everywhere_before(world):
    hits = scan(world["settings"], world["redis"], shas=[world["media"].sha256])
    places = " ".join(hits)
    for where in ("lake file", "_delta_log", "lake/silver/post_embeddings", "lake/gold/", "postgres bronze",
                  "postgres search", "postgres moderation",
                  "postgres virality", "postgres marts", "postgres metrics", "postgres notifications",
                  "redis b'ingest:", "redis b'feed:", "redis b'moderation:action'", "media "):
        assert where in places, (where, hits)
    # the Feast online rows of the user (a viewer) and of their posts
    from assets.privacy.stores import feast_keys

    keys = feast_keys(logic.Plan(U, post_ids=list(POSTS)))
    assert world["redis"].exists(*keys) == len(keys) and all(f"redis {k!r}" in places for k in keys)


def test_export_needs_a_token_and_is_only_for_oneself(api, world):
    s = world["settings"]
    assert api.get(f"/v1/users/{U}/export").status_code == 401
    assert api.get(f"/v1/users/{U}/export", headers=bearer(s, OTHER)).status_code == 403
    assert api.delete(f"/v1/users/{U}", headers=bearer(s, OTHER)).status_code == 403
    assert api.delete(f"/v1/users/{U}").status_code == 401


def test_export_is_built_by_the_job_and_served_as_a_zip(api, world):
    s = world["settings"]
    first = api.get(f"/v1/users/{U}/export", headers=bearer(s, U))
    assert first.status_code == 202 and int(first.headers["retry-after"]) >= 1
    rid = first.json()["request_id"]
    again = api.get(f"/v1/users/{U}/export", headers=bearer(s, U))
    assert again.status_code == 202 and again.json()["request_id"] == rid  # not duplicated
    assert run_job(s, rid).success
    res = api.get(f"/v1/users/{U}/export", headers=bearer(s, U))
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    assert "attachment" in res.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(res.content))
    names = set(zf.namelist())
    assert {"lake/bronze/posts.jsonl", "lake/bronze/users.jsonl", "lake/bronze/comments.jsonl",
            "lake/bronze/interactions.jsonl", "lake/bronze/follows.jsonl", "redis/online.json",
            "manifest.json"} <= names, names
    assert any(n.startswith("postgres/bronze.") for n in names) and any(n.startswith("postgres/search.") for n in names)
    assert any(n.startswith("media/") for n in names)
    posts = [json.loads(ln) for ln in zf.read("lake/bronze/posts.jsonl").decode().splitlines()]
    assert {p["post_id"] for p in posts} == set(POSTS) and {p["caption"] for p in posts} == set(POSTS.values())
    assert COMMENT_BY_U in zf.read("lake/bronze/comments.jsonl").decode()
    online = json.loads(zf.read("redis/online.json"))
    assert online["features"]["user"] is not None and any(k.startswith("feed:") for k in online["keys"])
    media_name = next(n for n in names if n.startswith("media/"))
    assert hashlib.sha256(zf.read(media_name)).hexdigest() == world["media"].sha256
    # an admin may export anyone
    assert api.get(f"/v1/users/{U}/export", headers=bearer(s, "root-admin", "admin")).status_code == 200


def test_delete_through_the_api_and_the_job_leaves_nothing_of_the_user(api, world):
    from socialpulse import features

    s, client = world["settings"], world["redis"]
    res = api.delete(f"/v1/users/{U}", headers=bearer(s, U))
    assert res.status_code == 202 and res.json()["status"] == "pending" and res.json()["created"] is True
    rid = res.json()["request_id"]
    # the account is closed at once: the user's tokens are refused from now on (nothing new of theirs lands)
    closed = api.delete(f"/v1/users/{U}", headers=bearer(s, U))
    assert closed.status_code == 403 and "closed" in closed.json()["error"]
    assert api.get(f"/v1/users/{U}/export", headers=bearer(s, U)).status_code == 403
    dup = api.delete(f"/v1/users/{U}", headers=bearer(s, "root-admin", "admin"))
    assert dup.status_code == 202 and dup.json()["request_id"] == rid and dup.json()["created"] is False

    # the sensor launches one run for it, keyed by the request id
    import dagster as dg

    from assets.privacy.assets import privacy_request_sensor
    from orchestration.resources import build_resources

    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=build_resources(s))
        requests = list(privacy_request_sensor(ctx))
    assert [r.run_key for r in requests] == [rid]

    result = run_job(s, rid)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    hits = scan(s, client, texts=(COMMENT_BY_U, COMMENT_ON_U), shas=[world["media"].sha256])
    assert hits == []
    status = api.get(f"/v1/users/{U}/deletion", headers=bearer(s, "root-admin", "admin")).json()
    assert status["status"] == "done" and status["steps_done"] == list(logic.DELETE_STEPS)
    # the closed account's own token still follows its deletion (and nothing else: see above)
    assert api.get(f"/v1/users/{U}/deletion", headers=bearer(s, U)).json()["status"] == "done"
    assert api.get(f"/v1/privacy/requests/{rid}", headers=bearer(s, U)).json()["status"] == "done"
    counts = status["counts"]
    assert counts["lake"]["rows"] > 0 and counts["postgres"]["rows"] > 0 and counts["redis"]["feast_keys"] > 0
    assert counts["streams"]["entries"] >= 2 and counts["media"]["files"] == 1 and counts["exports"]["archives"] == 1
    assert all("seconds" in c for c in counts.values())

    # the other users' data stays: posts, interactions, vectors, features, the shared stream, their media
    from socialpulse import lake
    from socialpulse.contracts import INTERACTIONS, POSTS as POSTS_T

    assert set(lake.read(POSTS_T, settings=s).column("post_id").to_pylist()) == {OTHER_POST, "p-gdpr-8r-1"}
    assert "ev-f-6" in lake.read(INTERACTIONS, settings=s).column("event_id").to_pylist()
    with psycopg.connect(s.postgres) as conn:
        one = lambda q, v: conn.execute(q, (v,)).fetchone()[0]  # noqa: E731
        assert one("SELECT count(*) FROM moderation.decisions WHERE post_id = %s", OTHER_POST) == 1
        assert one("SELECT count(*) FROM marts.fct_creator_audience WHERE creator_id = %s", OTHER) == 1
        assert conn.execute("SELECT count(*) FROM privacy.requests WHERE user_id IS NOT NULL AND kind = 'delete' "
                            "AND request_id = %s", (rid,)).fetchone()[0] == 0
    assert features.get_post_stats(s, OTHER_POST) is not None
    waiting = [f[b"id"] for _, f in client.xrange("ingest:events")]
    assert b"ev-o-late" in waiting and b"ev-u-late" not in waiting and b"ev-f-late" not in waiting
    assert Path(s.media, world["other_media"].key).exists()
    # the lake still takes writes and drains after its history was cut
    from socialpulse.drain import drain_all

    assert drain_all(s, client).rows.get("interactions", 0) >= 1


def test_a_second_deletion_run_is_a_no_op(api, world):
    s = world["settings"]
    res = api.delete(f"/v1/users/{U}", headers=bearer(s, "root-admin", "admin"))
    assert res.status_code == 202 and res.json()["created"] is True  # the done one holds no id: a new request
    assert run_job(s, res.json()["request_id"]).success
    counts = api.get(f"/v1/privacy/requests/{res.json()['request_id']}",
                     headers=bearer(s, "root-admin", "admin")).json()["counts"]
    assert counts["plan"]["posts"] == 0 and counts["lake"]["rows"] == 0 and counts["postgres"]["rows"] == 0
    assert counts["redis"]["keys"] == 0 and counts["redis"]["members"] == 0 and counts["media"]["files"] == 0
    assert scan(s, world["redis"], texts=(COMMENT_BY_U, COMMENT_ON_U), shas=[world["media"].sha256]) == []


def test_a_crash_mid_way_resumes_after_the_finished_steps(world):
    from assets.privacy.run import StepFailed, run_deletion
    from socialpulse import privacy

    s = world["settings"]
    with psycopg.connect(s.postgres, autocommit=True) as conn:
        row, _ = privacy.request(conn, s, kind="delete", user_id=CRASH, actor="root-admin", actor_role="admin")
    rid = row["request_id"]
    with pytest.raises(StepFailed):
        run_deletion(s, rid, fail_at="postgres")
    with psycopg.connect(s.postgres, autocommit=True) as conn:
        failed = privacy.get(conn, rid)
        assert failed["status"] == "failed" and failed["steps_done"] == ["plan", "streams", "lake", "lake_vacuum"]
        assert failed["plan"]["post_ids"] == ["p-gdpr-8r-1"]  # kept: the lake no longer knows the posts
        lake_counts = failed["counts"]["lake"]
        # the sensor hands a failed (or stalled) request to a new run once it has not advanced for a while
        later = dt.datetime.now(dt.timezone.utc) + privacy.STALE_AFTER + dt.timedelta(minutes=1)
        assert rid not in [r["request_id"] for r in privacy.to_run(conn)]
        assert rid in [r["request_id"] for r in privacy.to_run(conn, now=later)]
        from assets.privacy.assets import run_request_for

        assert run_request_for({**failed, "status": "failed"}).run_key == f"{rid}:1"
        # and a new DELETE of the same user reopens it (pending), never a second request
        again, created = privacy.request(conn, s, kind="delete", user_id=CRASH, actor="root-admin", actor_role="admin")
        assert again["request_id"] == rid and not created and again["status"] == "pending"
    done = run_deletion(s, rid)
    assert done["status"] == "done" and done["steps_done"] == list(logic.DELETE_STEPS)
    assert done["counts"]["lake"] == lake_counts  # not redone
    assert done["counts"]["postgres"]["rows"] > 0  # the posts found in the saved plan
    assert scan(s, world["redis"], user_id=CRASH, handle="crash_8r",
                posts={"p-gdpr-8r-1": "crash test caption marigold"}, texts=()) == []


def test_the_audit_log_records_requests_and_completions_by_pseudonym(world):
    from socialpulse import audit

    s = world["settings"]
    with psycopg.connect(s.postgres) as conn:
        entries = audit.entries(conn, s, subject=U)
        actions = [e["action"] for e in entries]
        assert actions.count("privacy.delete.requested") == 2 and actions.count("privacy.delete.completed") == 2
        assert "privacy.export" in actions
        completed = next(e for e in entries if e["action"] == "privacy.delete.completed")
        assert completed["details"]["counts"]["lake"]["rows"] >= 0
        text = json.dumps([dict(e, at=str(e["at"])) for e in entries])
        assert U not in text and HANDLE not in text
        assert any(e["action"] == "privacy.delete.completed" for e in audit.entries(conn, s, subject=CRASH))
