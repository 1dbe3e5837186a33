"""Captions on the real stack: real photos (scikit-image) stored as media, a video of one, a corrupt file and a
text post; moderation scores and decisions for the day written to the lake and published; then media labels
(EfficientNet-Lite0), post captions and their Postgres copy materialized with their checks, and served by the API:
``GET /v1/posts/{id}/captions``, alt-text in search results, a removed post 404."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse import lake
from socialpulse.contracts import POSTS

pytestmark = pytest.mark.integration

D = dt.date(2026, 4, 7)
T = dt.datetime(2026, 4, 7, 12, tzinfo=dt.timezone.utc)
NOW = dt.datetime.now(dt.timezone.utc)


def _post(pid, kind, caption, hashtags, media_uri=None, duration=None):
    return {"post_id": pid, "author_id": "u-cap", "kind": kind, "caption": caption, "hashtags": hashtags,
            "media_uri": media_uri, "duration_s": duration, "language": "en", "created_at": T, "event_date": D}


def _score(post, ocr=None, transcript=None, seconds=None, status="ok"):
    return {"post_id": post["post_id"], "author_id": post["author_id"], "kind": post["kind"], "content_hash": "h",
            "media_kind": post["kind"] if post["media_uri"] else None, "media_status": status, "media_error": None,
            "frame_nsfw": [], "nsfw_max": None, "video_seconds": seconds, "ocr_text": ocr, "transcript": transcript,
            "text_model_version": "t", "media_model_version": "m", "scored_at": NOW, "created_at": T, "event_date": D}


def _decision(post, action):
    return {"post_id": post["post_id"], "author_id": post["author_id"], "action": action,
            "reasons": [] if action == "allow" else ["test: removed"], "hatespeech": 0.0, "offensive": 0.0,
            "nsfw": 0.0, "media_status": "ok", "policy_version": "p", "text_model_version": "t",
            "media_model_version": "m", "decided_at": NOW, "created_at": T, "event_date": D}


@pytest.fixture(scope="module")
def world(own_stores, materialize):
    from assets.captions import ASSET_CHECKS, ASSETS
    from assets.content import ASSETS as CONTENT
    from assets.moderation.assets import serving_decisions
    from assets.moderation.tables import MODERATION_DECISIONS, MODERATION_SCORES
    from bench.captions import photo_jpeg, photo_video
    from socialpulse.media import media_root

    with own_stores("captions", redis_db=7) as settings:
        root = media_root(settings)
        root.mkdir(parents=True, exist_ok=True)

        def store(name, data):
            (root / name).write_bytes(data)
            return (root / name).as_uri()

        posts = [
            _post("cap-cat", "image", "Sunday nap #catlife", ["catlife"], store("chelsea.jpg", photo_jpeg("chelsea"))),
            _post("cap-coffee", "image", "Morning ritual", ["coffee", "morning"], store("coffee.jpg", photo_jpeg("coffee"))),
            _post("cap-video", "video", "Slow pan over my cup", ["latteart"], store("coffee.mp4", photo_video("coffee")), 3.0),
            _post("cap-broken", "image", "this upload broke", [], store("broken.jpg", b"\xff\xd8\xff\xe0garbage")),
            _post("cap-text", "text", "Just words today #thoughts", ["thoughts"]),
            _post("cap-removed", "image", "should never show", [], store("removed.jpg", photo_jpeg("astronaut"))),
            _post("cap-bread1", "text", "Homemade sourdough bread fresh from the oven", ["baking", "sourdough"]),
            _post("cap-bread2", "text", "My sourdough loaf came out of the oven today", ["breadmaking"]),
        ]
        lake.replace_partitions(POSTS, posts, [D], settings=settings)
        scores = [_score(p) for p in posts]
        scores[2] = _score(posts[2], ocr="LATTE TIME", transcript="watch the foam settle", seconds=3.0)
        lake.replace_partitions(MODERATION_SCORES, scores, [D], settings=settings)
        lake.replace_partitions(MODERATION_DECISIONS,
                                [_decision(p, "remove" if p["post_id"] == "cap-removed" else "allow") for p in posts],
                                [D], settings=settings)
        materialize([serving_decisions], D, settings=settings)
        content = [a for a in CONTENT if a.key.path[-1] in ("post_embeddings", "post_vectors")]
        materialize(content, D, settings=settings)
        meta = materialize(ASSETS, D, ASSET_CHECKS, settings=settings)
        from socialpulse.settings import get_settings

        get_settings.cache_clear()
        yield {"settings": settings, "meta": meta, "posts": {p["post_id"]: p for p in posts}}


def _table(settings, contract):
    return {r["post_id"]: r for r in lake.read(contract, settings=settings, filters=[("event_date", "=", D)]).to_pylist()}


def test_labels_name_what_the_photos_show(world):
    from assets.captions.tables import MEDIA_LABELS

    labels = _table(world["settings"], MEDIA_LABELS)
    assert set(labels) == set(world["posts"])
    names = {pid: [l["name"].lower() for l in r["labels"]] for pid, r in labels.items()}
    assert any("cat" in n for n in names["cap-cat"]), names["cap-cat"]
    assert any(w in n for n in names["cap-coffee"] for w in ("espresso", "coffee", "cup")), names["cap-coffee"]
    assert any(w in n for n in names["cap-video"] for w in ("espresso", "coffee", "cup")), names["cap-video"]
    assert labels["cap-video"]["frames"] >= 2 and labels["cap-video"]["media_kind"] == "video"
    assert all(len(r["labels"]) == 5 for pid, r in labels.items() if r["status"] == "ok")
    assert labels["cap-broken"]["status"] == "error" and labels["cap-broken"]["labels"] == []
    assert labels["cap-text"]["status"] == "none"
    assert world["meta"]["media_labels"]["status_error"] == 1


def test_labelling_is_incremental(world, materialize):
    from assets.captions.assets import media_labels

    meta = materialize([media_labels], D, settings=world["settings"])
    assert meta["media_labels"]["labelled_now"] == 0 and meta["media_labels"]["kept"] == len(world["posts"])


def test_every_media_post_has_alt_text_and_postgres_matches(world):
    import psycopg

    from assets.captions.tables import POST_CAPTIONS
    from socialpulse import captions

    rows = _table(world["settings"], POST_CAPTIONS)
    assert set(rows) == set(world["posts"])
    for pid, r in rows.items():
        assert (r["alt_text"] is not None) == (r["kind"] in ("image", "video")), (pid, r["alt_text"])
        assert r["generator"] == "grounded-1" and not r["fallback"]
    assert "cat" in rows["cap-cat"]["alt_text"].lower() or "tabby" in rows["cap-cat"]["alt_text"].lower()
    with psycopg.connect(world["settings"].postgres) as conn:
        assert captions.day_count(conn, D) == len(rows)
        assert captions.alt_texts(conn, ["cap-cat", "nope"]) == {"cap-cat": rows["cap-cat"]["alt_text"]}
    ev = world["meta"]["captions_evaluation"]
    assert ev["alt_text"]["coverage"] == 1.0 and ev["drafts"] == 6


def test_hashtags_add_tags_of_similar_posts_never_the_posts_own(world):
    """Related tags come from the served suggester over the search index, the post itself excluded and only from
    posts alike enough: the second sourdough post gets the first one's #baking (a word in neither caption), never
    its own #breadmaking; the cat photo, like no other post, gets none of the other posts' tags."""
    from assets.captions.tables import POST_CAPTIONS

    rows = _table(world["settings"], POST_CAPTIONS)
    assert "baking" in rows["cap-bread2"]["hashtags"], rows["cap-bread2"]["hashtags"]
    assert "breadmaking" not in rows["cap-bread2"]["hashtags"]
    assert "breadmaking" in rows["cap-bread1"]["hashtags"]  # the other way round
    others = {"coffee", "morning", "latteart", "thoughts", "baking", "sourdough", "breadmaking"}
    assert not set(rows["cap-cat"]["hashtags"]) & others, rows["cap-cat"]["hashtags"]


def test_speech_and_on_screen_text_reach_the_alt_text():
    """Real media through the real analysis: a photo with words drawn on it and a video whose audio speaks
    (eSpeak NG), read by RapidOCR and Whisper tiny.en, then written into alt-text and captions."""
    from assets.captions.facts import PostFacts
    from assets.captions.grounded import GroundedGenerator, alt_text
    from assets.moderation.media import MediaAnalyser
    from bench.captions import photo_video, photo_with_text, spoken

    speech = spoken("Welcome to my coffee corner.")
    video = photo_video("coffee", seconds=4, image=photo_with_text("coffee", "OAT MILK"), speech=speech)
    seen = MediaAnalyser().analyse(video)
    assert "coffee" in seen.transcript.lower() and "OAT" in seen.ocr_text.upper(), (seen.transcript, seen.ocr_text)
    facts = PostFacts("v", "video", labels=(("espresso", 0.9),), ocr_text=seen.ocr_text, transcript=seen.transcript,
                      duration_s=seen.duration_s)
    alt = alt_text(facts)
    assert alt.startswith("Espresso, 4-second video") and "OAT" in alt.upper() and "coffee" in alt.lower(), alt
    sugg = GroundedGenerator().generate([facts])[0]
    assert "coffee" in sugg.hashtags and any("coffee" in c.lower() for c in sugg.captions), sugg


@pytest.fixture(scope="module")
def api(world):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(world["settings"], warm=False)) as client:
        yield client


def test_captions_endpoint_serves_alt_text_and_suggestions(api, world):
    r = api.get("/v1/posts/cap-video/captions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["alt_text"] and body["generator"] == "grounded-1" and body["fallback"] is False
    assert isinstance(body["captions"], list) and isinstance(body["hashtags"], list)
    assert api.get("/v1/posts/cap-text/captions").json()["alt_text"] is None
    assert api.get("/v1/posts/cap-unknown/captions").status_code == 404


def test_a_removed_post_is_404(api):
    r = api.get("/v1/posts/cap-removed/captions")
    assert r.status_code == 404 and "removed" in r.json()["error"]


def test_search_results_carry_alt_text(api):
    r = api.get("/v1/search", params={"q": "morning ritual", "limit": 10})
    assert r.status_code == 200, r.text
    posts = {p["post_id"]: p for p in r.json()["posts"]}
    assert "cap-coffee" in posts and posts["cap-coffee"]["alt_text"], posts
    assert "cap-removed" not in posts
    assert all("alt_text" in p for p in posts.values())


def _cli(settings, *args: str):
    """`socialpulse ARGS` in its own process, on the module's stores (a CLI builds its Dagster definitions from the
    environment once, so it cannot share this process)."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.browser import settings_env

    return subprocess.run([str(Path(sys.executable).with_name("socialpulse")), *args], env=settings_env(settings),
                          capture_output=True, text=True, timeout=600)


def test_cli_runs_a_day_with_its_evaluation_and_shows_a_post(world):
    import json

    r = _cli(world["settings"], "captions", "run", "--start", D.isoformat(), "--end", D.isoformat(), "--evaluate")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["failed"] == [] and summary["partitions"][D.isoformat()]["success"]
    ev = summary["evaluation"][D.isoformat()]
    assert ev["drafts"] == 6 and 0.0 <= ev["hit_at_5"] <= 1.0 and ev["alt_text"]["coverage"] == 1.0
    assert "captions_job 2026-04-07: ok" in r.stderr  # progress on stderr, the summary alone on stdout
    r = _cli(world["settings"], "captions", "show", "cap-video")
    assert r.returncode == 0 and json.loads(r.stdout)["alt_text"].startswith("Espresso"), r.stdout + r.stderr
    r = _cli(world["settings"], "captions", "show", "cap-nope")
    assert r.returncode == 1 and "no captions for post 'cap-nope' yet" in r.stderr
