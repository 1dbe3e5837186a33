"""Content assets on the real stack: posts embedded with the packaged MiniLM into Delta, indexed in Postgres
(pgvector HNSW through timescale-vector), kept current (new, changed, re-moderated, re-encoded posts),
user interest vectors from engagement (Spark), and search / similar posts served by the API."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse import lake
from socialpulse.contracts import INTERACTIONS, POSTS, USERS

pytestmark = pytest.mark.integration

D = dt.date(2026, 3, 12)
T = dt.datetime(2026, 3, 12, 9, tzinfo=dt.timezone.utc)

CLUSTERS = {
    "cooking": ["homemade pasta with garlic and basil", "slow cooked beef stew recipe", "baking sourdough bread at home",
                "easy chocolate cake recipe", "grilled salmon with lemon butter", "vegan curry in twenty minutes"],
    "football": ["last minute winning goal in the derby", "striker scores a hat trick", "goalkeeper saves a penalty kick",
                 "training drills for young football players", "the league title race is on",
                 "fans celebrate the cup final win"],
    "travel": ["sunrise hike in the swiss alps", "backpacking through vietnam on a budget", "hidden beaches of portugal",
               "a weekend in tokyo street markets", "road trip along the california coast",
               "camping under the stars in the desert"],
}


def _posts() -> list[dict]:
    rows = []
    for c, captions in CLUSTERS.items():
        for i, caption in enumerate(captions):
            rows.append({"post_id": f"c-{c}-{i}", "author_id": f"u-{c}-chef" if c == "cooking" else f"u-{c}-maker",
                         "kind": "text", "caption": caption, "hashtags": [c], "media_uri": None, "duration_s": None,
                         "language": "en", "created_at": T + dt.timedelta(minutes=len(rows)), "event_date": D})
    rows.append({**rows[0], "post_id": "c-removed", "caption": "removed post about pasta", "hashtags": ["cooking"]})
    rows.append({**rows[0], "post_id": "c-pending", "caption": "pasta carbonara waiting for moderation"})
    rows.append({**rows[0], "post_id": "c-ocr", "caption": "look at this", "hashtags": [], "kind": "image",
                 "media_uri": "synthetic://media/c-ocr.jpg"})
    return rows


def _decide(conn, actions: dict[str, str]) -> None:
    from socialpulse import moderation

    moderation.ensure_tables(conn)
    for pid, action in actions.items():
        conn.execute(
            """INSERT INTO moderation.decisions (post_id, author_id, action, reasons, media_status, policy_version,
                   text_model_version, media_model_version, decided_at, created_at, event_date, source)
               VALUES (%s, 'u', %s, '{}', 'none', 'p', 't', 'm', now(), now(), %s, 'asset')
               ON CONFLICT (post_id) DO UPDATE SET action = EXCLUDED.action""", (pid, action, D))
    conn.commit()


def _ocr_scores(stack) -> None:
    """A moderation scores row holding text read on the image (what moderation stores for search)."""
    from assets.moderation.tables import MODERATION_SCORES

    row = {f.name: None for f in MODERATION_SCORES.schema}
    row.update(post_id="c-ocr", author_id="u-cooking-chef", kind="image", content_hash="x", media_status="ok",
               frame_nsfw=[], ocr_text="grandma's secret lasagne recipe", text_model_version="t",
               media_model_version="m", scored_at=T, created_at=T, event_date=D)
    lake.replace_partitions(MODERATION_SCORES, [row], [D], settings=stack)


@pytest.fixture(scope="module")
def content(stack, materialize):
    import psycopg

    from assets.content import assets as content_assets

    posts = _posts()
    lake.replace_partitions(POSTS, posts, [D], settings=stack)
    lake.append(USERS, [{"user_id": "u-cooking-chef", "handle": "chef_marco", "country": None, "language": "en",
                         "is_creator": True, "created_at": T}], settings=stack)
    _ocr_scores(stack)
    events = []
    for c in CLUSTERS:
        for i in range(4):
            for etype in ("view", "like"):
                events.append({"event_id": f"e-{c}-{i}-{etype}", "event_type": etype, "user_id": f"fan-{c}",
                               "post_id": f"c-{c}-{i}", "target_user_id": None,
                               "watch_time_s": 8.0 if etype == "view" else None,
                               "created_at": T + dt.timedelta(hours=2, minutes=i), "event_date": D})
    lake.replace_partitions(INTERACTIONS, events, [D], settings=stack)
    with psycopg.connect(stack.postgres) as conn:
        _decide(conn, {p["post_id"]: "allow" for p in posts if p["post_id"] not in ("c-removed", "c-pending")}
                | {"c-removed": "remove"})
    first = materialize([content_assets.post_embeddings, content_assets.post_vectors], D,
                         [content_assets.embeddings_valid, content_assets.index_matches_lake])
    return {"assets": content_assets, "first": first, "posts": posts}


def test_nearest_is_planned_with_its_vector_however_often_a_connection_runs_it(stack, content):
    """A pooled connection runs the nearest-neighbour query thousands of times: it must never become a prepared
    statement, whose generic plan (made without the vector) scans every servable row instead of the HNSW graph."""
    import numpy as np
    import psycopg

    from socialpulse import vectors

    with psycopg.connect(stack.postgres) as conn:
        vector = np.random.default_rng(3).normal(size=vectors.DIM)
        for _ in range(15):
            assert len(vectors.nearest(conn, vector, 5)) == 5
        prepared = conn.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                                ("%<=>%",)).fetchall()
        assert prepared == []


def _index(stack) -> dict[str, dict]:
    import psycopg

    from socialpulse import vectors

    with psycopg.connect(stack.postgres) as conn:
        return vectors.day_rows(conn, D.isoformat())


def test_posts_are_embedded_and_indexed_with_moderation_metadata(stack, content):
    from assets.content.embeddings import to_matrix
    from assets.content.tables import POST_EMBEDDINGS

    import numpy as np

    first = content["first"]
    n = len(content["posts"])
    assert first["post_embeddings"]["embedded_now"] == n and first["post_embeddings"]["posts_with_media_text"] == 1
    rows = lake.read(POST_EMBEDDINGS, settings=stack, filters=[("event_date", "=", D)])
    assert rows.num_rows == n
    vecs = to_matrix(rows["embedding"])
    assert vecs.shape == (n, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    docs = dict(zip(rows["post_id"].to_pylist(), rows["document"].to_pylist()))
    assert "on screen: grandma's secret lasagne recipe" in docs["c-ocr"]  # OCR text joins the document
    index = _index(stack)
    assert "c-removed" not in index and set(index) == {p["post_id"] for p in content["posts"]} - {"c-removed"}
    assert index["c-pending"]["action"] == "pending" and index["c-cooking-0"]["action"] == "allow"
    assert index["c-cooking-0"]["author_handle"] == "chef_marco" and index["c-cooking-0"]["hashtags"] == ["cooking"]
    assert first["post_vectors"]["removed_not_indexed"] == 1 and first["post_vectors"]["pending_moderation"] == 1


def test_rerun_changes_and_new_decisions_touch_only_what_changed(stack, content, materialize):
    import psycopg

    a = content["assets"]
    again = materialize([a.post_embeddings, a.post_vectors], D, [a.embeddings_valid, a.index_matches_lake])
    assert again["post_embeddings"]["embedded_now"] == 0
    assert again["post_vectors"]["unchanged"] == len(content["posts"]) - 1
    assert again["post_vectors"]["inserted"] == again["post_vectors"]["replaced"] == 0

    # one caption edited, one post removed after the fact, the pending post decided
    posts = [dict(p, caption="fresh gnocchi with sage butter") if p["post_id"] == "c-cooking-1" else p
             for p in content["posts"]]
    lake.replace_partitions(POSTS, posts, [D], settings=stack)
    with psycopg.connect(stack.postgres) as conn:
        _decide(conn, {"c-travel-5": "remove", "c-pending": "allow"})
    changed = materialize([a.post_embeddings, a.post_vectors], D, [a.embeddings_valid, a.index_matches_lake])
    assert changed["post_embeddings"]["embedded_now"] == 1
    v = changed["post_vectors"]
    assert (v["replaced"], v["deleted"], v["updated"], v["inserted"]) == (1, 1, 1, 0)
    index = _index(stack)
    assert "c-travel-5" not in index and index["c-pending"]["action"] == "allow"


def test_a_new_encoder_version_reembeds_every_post(stack, content, monkeypatch, materialize):
    import assets.content.embeddings as emb

    a = content["assets"]
    monkeypatch.setattr(emb, "DOCUMENT_VERSION", "doc-test")
    out = materialize([a.post_embeddings, a.post_vectors], D, [a.embeddings_valid, a.index_matches_lake])
    assert out["post_embeddings"]["embedded_now"] == len(content["posts"])
    assert out["post_embeddings"]["encoder_version"].endswith("+doc-test")
    assert out["post_vectors"]["replaced"] == out["post_vectors"]["indexed"]
    assert all(m["embedding_version"].endswith("+doc-test") for m in _index(stack).values())
    monkeypatch.undo()
    back = materialize([a.post_embeddings, a.post_vectors], D, [a.embeddings_valid, a.index_matches_lake])
    assert back["post_embeddings"]["embedded_now"] == len(content["posts"])


def test_user_interest_points_at_the_users_own_cluster(stack, content, materialize):
    import psycopg

    from socialpulse import vectors

    a = content["assets"]
    out = materialize([a.user_interest, a.user_vectors], D, [a.interest_valid])
    assert out["user_interest"]["users"] == 3 and out["user_vectors"]["rows"] == 4
    with psycopg.connect(stack.postgres) as conn:
        for c in CLUSTERS:
            user = vectors.user_vector(conn, f"fan-{c}")
            assert user["cold_start"] is False
            top = [r["post_id"] for r in vectors.nearest(conn, user["embedding"], 5)]
            assert sum(p.startswith(f"c-{c}-") for p in top) >= 4, (c, top)
        cold = vectors.user_vector(conn, "someone-new")
        assert cold["cold_start"] is True and cold["user_id"] == vectors.COLD_START_USER


def test_interest_leaves_out_vectors_of_another_encoder(stack, content, monkeypatch, materialize):
    """Mid-backfill after an encoder change, old vectors are never mixed with new ones."""
    import assets.content.embeddings as emb

    monkeypatch.setattr(emb, "DOCUMENT_VERSION", "doc-next")  # the encoder changed; no day re-embedded yet
    out = materialize([content["assets"].user_interest], D, [content["assets"].interest_valid])
    assert out["user_interest"]["users"] == 0
    assert out["user_interest"]["posts_of_other_versions_left_out"] == len(content["posts"])


@pytest.fixture(scope="module")
def api(stack, content):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(stack, warm=False)) as client:
        yield client


def test_search_ranks_semantic_and_keyword_matches_and_filters_moderation(api):
    r = api.get("/v1/search", params={"q": "pasta recipe", "limit": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [p["post_id"] for p in body["posts"]]
    assert ids and all(p.startswith(("c-cooking-", "c-ocr", "c-pending")) for p in ids), ids
    assert "c-removed" not in ids
    assert any(p["matched_by"].get("keyword") for p in body["posts"])
    assert body["hashtags"] == [] or all("tag" in t for t in body["hashtags"])
    assert api.get("/v1/search", params={"q": "cook"}).json()["hashtags"][0]["tag"] == "cooking"
    assert api.get("/v1/search", params={"q": "chef marco"}).json()["creators"][0]["handle"] == "chef_marco"
    # a word only in OCR text finds the image post by keyword
    lasagne = api.get("/v1/search", params={"q": "lasagne"}).json()["posts"]
    assert lasagne[0]["post_id"] == "c-ocr" and "keyword" in lasagne[0]["matched_by"]


@pytest.mark.parametrize("params, message", [
    ({}, "q is empty"), ({"q": "   "}, "q is empty"), ({"q": "x" * 201}, "limit is 200"),
    ({"q": "!!! ???"}, "no letters or digits"), ({"q": "bad\x00query"}, "control"),
])
def test_search_rejects_bad_queries_with_a_clear_400(api, params, message):
    r = api.get("/v1/search", params=params)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_search_limit_is_validated(api):
    assert api.get("/v1/search", params={"q": "goal", "limit": 0}).status_code == 422
    assert api.get("/v1/search", params={"q": "goal", "limit": 500}).status_code == 422


def test_similar_posts_come_from_the_same_topic(api, stack):
    r = api.get("/v1/posts/c-football-0/similar", params={"limit": 4})
    assert r.status_code == 200, r.text
    ids = [p["post_id"] for p in r.json()["posts"]]
    assert "c-football-0" not in ids and sum(p.startswith("c-football-") for p in ids) >= 3, ids
    assert api.get("/v1/posts/c-removed/similar").status_code == 404
    assert api.get("/v1/posts/no-such-post/similar").status_code == 404


def test_live_gate_hides_a_post_removed_after_indexing(api, stack):
    import redis

    from socialpulse.moderation import REDIS_ACTIONS_KEY

    client = redis.Redis.from_url(stack.redis)
    before = [p["post_id"] for p in api.get("/v1/search", params={"q": "striker hat trick"}).json()["posts"]]
    assert "c-football-1" in before
    client.hset(REDIS_ACTIONS_KEY, "c-football-1", "limit")
    try:
        after = [p["post_id"] for p in api.get("/v1/search", params={"q": "striker hat trick"}).json()["posts"]]
        assert "c-football-1" not in after
    finally:
        client.hdel(REDIS_ACTIONS_KEY, "c-football-1")


@pytest.fixture
def own_lake(stack, tmp_path, monkeypatch):
    """The stack's services with a lake of its own (the shared Sail reads any path)."""
    from socialpulse import settings as settings_mod

    monkeypatch.setenv("SOCIALPULSE_HOME", str(tmp_path / "home"))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    monkeypatch.undo()
    settings_mod.get_settings.cache_clear()


def test_synthetic_users_nearest_new_posts_come_from_their_cluster(own_lake):
    """A small synthetic world in its own lake: vectors as of day 1, candidates the posts of day 2;
    precision@10 must clear chance by far."""
    import dagster as dg

    from assets.content import assets as a
    from assets.content.evaluation import synthetic_interest_eval
    from orchestration.resources import build_resources
    from socialpulse.synthetic import load_synthetic

    s = own_lake
    start = dt.date(2026, 4, 1)
    load_synthetic(s, users=300, posts=900, days=2, seed=3, start=start)
    for day, assets_ in ((start, [a.post_embeddings, a.user_interest]), (start + dt.timedelta(days=1), [a.post_embeddings])):
        result = dg.materialize(assets_, resources=build_resources(s), partition_key=day.isoformat())
        assert result.success
    out = synthetic_interest_eval(s)
    assert out["day"] == "2026-04-02" and out["vectors_as_of"] == "2026-04-01"
    assert out["users"] > 100 and out["clusters"] >= 5
    assert out["precision_at_k"] > 3 * out["chance"], out
    assert out["cold_start_precision_at_k"] < out["precision_at_k"]
    with pytest.raises(LookupError, match="needs post embeddings"):
        synthetic_interest_eval(s, dt.date(2026, 4, 1))


def test_crisislex_eval_cli_compares_modes_in_one_run(stack):
    import json

    from click.testing import CliRunner

    from cli.main import main
    from socialpulse.loaders import CRISISLEX_SAMPLE

    r = CliRunner().invoke(main, ["search", "eval", "crisislex", "--input", str(CRISISLEX_SAMPLE), "--per-event", "30"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["tweets"] == 180 and set(out["mean"]) == {"semantic", "keyword", "hybrid"}
    assert len(out["events"]) == 6
    # naming the event retrieves its on-topic tweets far above their base rate, in every mode
    assert all(out["mean"][m] > 2 * out["base_rate"] for m in out["mean"]), out


def test_embeddings_check_compares_with_the_posts_the_asset_read(stack, materialize, monkeypatch):
    """An upload that lands between the embedding step and its check (the live path never stops) is the next
    run's work, not a failed check: the check reads the bronze snapshot the asset embedded."""
    from assets.content import assets as content_assets
    from assets.content.tables import POST_EMBEDDINGS

    day = dt.date(2026, 3, 14)
    first = {**_posts()[0], "post_id": "c-race-0", "created_at": T + dt.timedelta(days=2), "event_date": day}
    lake.replace_partitions(POSTS, [first], [day], settings=stack)
    read_posts = content_assets.bronze_posts_day

    def read_then_a_drain_lands(settings, day_, version=None):
        out = read_posts(settings, day_, version)
        lake.append(POSTS, [{**first, "post_id": "c-race-late"}], settings=stack)  # right after the asset's read
        monkeypatch.setattr(content_assets, "bronze_posts_day", read_posts)
        return out

    monkeypatch.setattr(content_assets, "bronze_posts_day", read_then_a_drain_lands)
    assets_and_check = ([content_assets.post_embeddings], day, [content_assets.embeddings_valid])
    assert materialize(*assets_and_check)["post_embeddings"]["rows"] == 1  # the check passed (else it raises)
    # the next run embeds the late post, and its check sees it
    assert materialize(*assets_and_check)["post_embeddings"]["rows"] == 2
    ids = lake.read(POST_EMBEDDINGS, settings=stack, filters=[("event_date", "=", day)]).column("post_id").to_pylist()
    assert sorted(ids) == ["c-race-0", "c-race-late"]
