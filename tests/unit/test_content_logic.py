"""Content and search, pure parts: documents, incremental planning, interest vectors, cold start, checks,
query validation and rank fusion; and the content sensor's run requests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from assets.content import embeddings as emb
from socialpulse.search import QueryError, fuse, parse_query


def test_document_puts_caption_and_hashtags_first_and_labels_media_text():
    doc = emb.post_document("  Morning   run ", ["fitness", "", "river"], "KEEP GOING", "well done everyone")
    assert doc == "Morning run #fitness #river on screen: KEEP GOING said: well done everyone"
    assert emb.post_document(None, [], None, "  ") == ""
    # tags already written in the caption are not repeated
    assert emb.post_document("day 56 of #Pasta", ["pasta", "recipe", "recipe"]) == "day 56 of #Pasta #recipe"
    long = emb.post_document("c", [], "word " * 500)
    assert len(long) < 700 and long.startswith("c on screen: word")


def _docs(captions: dict[str, str]) -> pa.Table:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    posts = pa.table({
        "post_id": list(captions), "author_id": ["a"] * len(captions), "created_at": [t] * len(captions),
        "event_date": [t.date()] * len(captions), "language": ["en"] * len(captions),
        "hashtags": [["x"]] * len(captions), "caption": list(captions.values()),
    })
    return emb.documents(posts, pa.table({"post_id": ["p2"], "ocr_text": ["SALE"], "transcript": [None]}))


def test_reuse_index_reembeds_only_new_changed_or_other_version_posts():
    before = _docs({"p1": "a", "p2": "b", "p3": "c"})
    existing = before.append_column("encoder_version", pa.array(["v1", "v1", "v0"]))
    now = _docs({"p1": "a", "p2": "b changed", "p3": "c", "p4": "d"})
    assert emb.reuse_index(now, existing, "v1").tolist() == [0, -1, -1, -1]  # p3 was made by v0
    assert emb.reuse_index(now, existing, "v2").tolist() == [-1, -1, -1, -1]  # a new encoder re-embeds all
    assert emb.reuse_index(now, existing.slice(0, 0), "v1").tolist() == [-1] * 4
    assert "on screen: SALE" in now["document"][1].as_py()


def test_vectors_round_trip_through_arrow():
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(emb.to_matrix(emb.vectors_column(v), 4), v)
    with pytest.raises(ValueError, match="not all 5-dimensional"):
        emb.to_matrix(emb.vectors_column(v), 5)
    assert emb.to_matrix(pa.chunked_array([], pa.list_(pa.float32())), 4).shape == (0, 4)


def test_decay_halves_per_half_life():
    assert emb.decay(0.0) == 1.0
    assert emb.decay(emb.HALF_LIFE_DAYS) == pytest.approx(0.5)
    assert emb.decay([14.0], 7.0)[0] == pytest.approx(0.25)
    assert emb.decay(-3.0) == 1.0  # an event stamped after the cut-off counts as now


def test_interest_vectors_weight_posts_and_skip_unknown_ones():
    posts = np.eye(3, dtype=np.float32)  # three orthogonal "topics"
    index = {"a": 0, "b": 1, "c": 2}
    users, vecs, total = emb.interest_vectors(
        ["u1", "u1", "u2", "u3"], ["a", "b", "c", "zzz"], np.array([3.0, 1.0, 2.0, 5.0]), index, posts)
    assert users == ["u1", "u2"]  # u3 engaged only with a post that has no embedding: cold start
    assert np.allclose(vecs[0], np.array([3, 1, 0]) / np.sqrt(10)) and np.allclose(vecs[1], [0, 0, 1])
    assert total.tolist() == [4.0, 2.0]
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0)
    assert emb.interest_vectors([], [], np.zeros(0), index, posts)[0] == []


def test_cold_start_is_the_platform_wide_taste():
    posts = np.eye(3, dtype=np.float32)
    index = {"a": 0, "b": 1, "c": 2}
    v = emb.cold_start_vector(["a", "a", "b"], np.array([1.0, 1.0, 2.0]), index, posts)
    assert np.allclose(v, np.array([1, 1, 0]) / np.sqrt(2))
    # no engagement yet: the mean of all posts; no posts: zeros
    assert np.allclose(emb.cold_start_vector([], np.zeros(0), index, posts), np.ones(3) / np.sqrt(3))
    assert not emb.cold_start_vector([], np.zeros(0), {}, np.zeros((0, 3), np.float32)).any()


def test_embedding_and_interest_checks_count_each_violation():
    good = emb.normalise(np.random.default_rng(0).normal(size=(3, emb.DIM)).astype(np.float32))
    rows = pa.table({"post_id": ["p1", "p2", "p2"], "encoder_version": ["v", "v", "w"],
                     "embedding": emb.vectors_column(np.vstack([good[:2], good[2:] * 2]))})
    v = emb.embedding_violations(rows, ["p1", "p2", "p9"])
    assert v == {"posts_not_embedded": 1, "unknown_posts": 0, "duplicate_posts": 1, "wrong_dimension": 0,
                 "not_unit_norm": 1, "encoder_versions_beyond_one": 1}
    short = pa.table({"post_id": ["p1"], "encoder_version": ["v"], "embedding": emb.vectors_column(np.ones((1, 3)))})
    assert emb.embedding_violations(short, ["p1"])["wrong_dimension"] == 1
    users = pa.table({"user_id": ["u1", emb.COLD_START_USER], "embedding": emb.vectors_column(good[:2]),
                      "cold_start": [False, True], "weight": [1.0, 0.0]})
    assert not any(emb.interest_violations(users).values())
    assert not any(emb.interest_violations(users.slice(0, 0)).values())  # a day with nothing to build from
    no_cold = users.slice(0, 1)
    assert emb.interest_violations(no_cold)["cold_start_rows_not_one"] == 1


def test_parse_query_normalises_and_explains_errors():
    q = parse_query("  Street FOOD  #Tacos in CDMX's markets ")
    assert q.text == "Street FOOD #Tacos in CDMX's markets"
    assert q.terms == ("street", "food", "tacos", "in", "cdmxs", "markets") and q.hashtags == ("tacos",)
    assert q.tsquery() == "street | food | tacos | in | cdmxs | markets" and q.prefix == "streetfoodtacosincdmxsmarkets"
    assert parse_query("café über").terms == ("café", "über")
    for bad, message in [(None, "empty"), ("  ", "empty"), ("a" * 201, "limit is 200"), ("?!", "no letters"),
                         ("x\x07y", "control"), ("x\u200by", "invisible")]:
        with pytest.raises(QueryError, match=message):
            parse_query(bad)
    # SQL and tsquery syntax never reach Postgres as syntax: only word characters become terms
    assert parse_query("a' | b & !c:* ) ; drop table x").tsquery() == "a | b | c | drop | table | x"


def test_fuse_rewards_agreement_and_is_deterministic():
    out = fuse({"semantic": ["a", "b", "c"], "keyword": ["c", "d", "c"]})
    assert [f.id for f in out] == ["c", "a", "b", "d"]
    assert out[0].ranks == {"semantic": 3, "keyword": 1}
    assert out[0].score == pytest.approx(1 / 63 + 1 / 61, abs=1e-6)
    assert [f.id for f in fuse({"s": ["x", "y"]}, weights={"s": 2.0})] == ["x", "y"]
    assert fuse({}) == []


def test_content_sensor_requests_each_decided_day_once(tmp_path):
    import dagster as dg

    from assets.content.assets import content_sensor
    from assets.moderation.assets import SERVING_KEY

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        ctx = dg.build_sensor_context(instance=instance)
        assert isinstance(content_sensor(ctx), dg.SkipReason)
        for day in ("2026-03-01", "2026-03-02", "2026-03-01"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=SERVING_KEY, partition=day))
        requests = content_sensor(ctx)
        assert sorted(r.partition_key for r in requests) == ["2026-03-01", "2026-03-02"]
        assert len({r.run_key for r in requests}) == 2
        ctx2 = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        assert isinstance(content_sensor(ctx2), dg.SkipReason)  # nothing new since the cursor


def test_search_without_postgres_is_a_clear_503(tmp_path):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from socialpulse.settings import Settings

    app = create_app(Settings(home=tmp_path, redis_port=1, postgres_port=1, mlflow_port=1), warm=False)
    with TestClient(app) as client:
        r = client.get("/v1/search", params={"q": "street food"})
        assert r.status_code == 503 and "search index is unreachable" in r.json()["error"], r.text
        assert client.get("/v1/search", params={"q": ""}).status_code == 400  # validated before any store
