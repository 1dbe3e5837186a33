"""Captions pipeline logic: post facts joined from bronze posts, media labels and moderation scores; gold rows;
the evaluation's metrics (hit@5 with the creator's tags held back, alt-text coverage and length, rejections);
the EfficientNet-Lite0 network's shape against the packaged weights' names."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from assets.captions.evaluation import (
    alt_text_stats,
    build_facts,
    caption_rows,
    evaluate,
    hashtag_hits,
    rejection_stats,
)
from assets.captions.facts import PostFacts, Rejection, Suggestions

D = dt.date(2026, 3, 5)
T = dt.datetime(2026, 3, 5, 12, tzinfo=dt.timezone.utc)


def _posts() -> pa.Table:
    return pa.Table.from_pylist([
        {"post_id": "p1", "author_id": "a", "kind": "image", "caption": "My cat naps #CatLife #sunday",
         "hashtags": ["catlife", "sunday"], "duration_s": None, "language": "en", "created_at": T},
        {"post_id": "p2", "author_id": "b", "kind": "video", "caption": "Morning brew", "hashtags": ["coffee"],
         "duration_s": 11.0, "language": "en", "created_at": T},
        {"post_id": "p3", "author_id": "a", "kind": "text", "caption": "hello world", "hashtags": [],
         "duration_s": None, "language": "en", "created_at": T},
    ])


LABELS = pa.Table.from_pylist([
    {"post_id": "p1", "labels": [{"name": "tabby", "prob": 0.7}, {"name": "tiger cat", "prob": 0.2}],
     "status": "ok", "model_version": "m1"},
    {"post_id": "p2", "labels": [{"name": "espresso", "prob": 0.6}], "status": "ok", "model_version": "m1"},
])
SCORES = pa.Table.from_pylist([
    {"post_id": "p2", "ocr_text": "GOOD MORNING", "transcript": "time for coffee", "video_seconds": 12.5},
])


def test_facts_join_posts_labels_and_scores():
    facts = {f.post_id: f for f in build_facts(_posts(), LABELS, SCORES)}
    assert facts["p1"].labels == (("tabby", pytest.approx(0.7)), ("tiger cat", pytest.approx(0.2)))
    assert facts["p1"].hashtags == ("catlife", "sunday") and facts["p1"].caption.startswith("My cat")
    assert facts["p1"].duration_s is None and facts["p1"].ocr_text is None
    v = facts["p2"]
    assert v.ocr_text == "GOOD MORNING" and v.transcript == "time for coffee"
    assert v.duration_s == pytest.approx(12.5)  # measured seconds win over the declared ones
    assert facts["p3"].labels == () and facts["p3"].kind == "text"


def test_facts_without_labels_or_scores_still_build():
    facts = build_facts(_posts(), None, None)
    assert [f.post_id for f in facts] == ["p1", "p2", "p3"]
    assert facts[1].duration_s == pytest.approx(11.0) and facts[1].labels == ()


def test_held_out_facts_hide_the_hashtags():
    facts = build_facts(_posts(), LABELS, SCORES, hold_out_hashtags=True)
    assert all(f.hashtags == () for f in facts)
    assert "#" not in facts[0].caption and "cat naps" in facts[0].caption


def test_hit_at_5_counts_only_tagged_posts_and_refuses_leaks():
    facts = build_facts(_posts(), LABELS, SCORES, hold_out_hashtags=True)
    hidden = [["catlife", "sunday"], ["coffee"], []]
    sugg = [Suggestions("p1", hashtags=["a", "b", "c", "d", "sunday"]), Suggestions("p2", hashtags=["x"] * 5 + ["coffee"]),
            Suggestions("p3", hashtags=["hello"])]
    assert hashtag_hits(facts, hidden, sugg) == {"hit_at_5": 0.5, "drafts": 2}
    leaky = build_facts(_posts(), LABELS, SCORES)
    with pytest.raises(ValueError):
        hashtag_hits(leaky, hidden, sugg)


def test_alt_text_coverage_and_lengths():
    rows = [{"kind": "image", "alt_text": "a" * 10}, {"kind": "video", "alt_text": "b" * 30},
            {"kind": "image", "alt_text": None}, {"kind": "text", "alt_text": None}]
    stats = alt_text_stats(rows)
    assert stats["media_posts"] == 3 and stats["with_alt_text"] == 2
    assert stats["coverage"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["length_max"] == 30 and stats["length_p50"] == 30 and stats["length_p90"] == 30
    assert alt_text_stats([])["coverage"] is None


def test_rejection_rate_by_reason():
    s = [Suggestions("p1", captions=["ok"], rejected=[Rejection("x", "repetition"), Rejection("y", "toxic")]),
         Suggestions("p2", captions=["fine", "good"], rejected=[Rejection("z", "repetition")], fallback=True)]
    stats = rejection_stats(s)
    assert stats["rejected"] == 3 and stats["produced"] == 6 and stats["rejection_rate"] == 0.5
    assert stats["by_reason"]["repetition"] == {"count": 2, "rate": pytest.approx(0.3333, abs=1e-4)}
    assert stats["fallback_posts"] == 1


def test_caption_rows_and_the_grounded_evaluation():
    from assets.captions.grounded import GroundedGenerator, alt_text

    posts = _posts()
    facts = build_facts(posts, LABELS, SCORES)
    rows = caption_rows(posts, facts, GroundedGenerator().generate(facts), alt_text, "m1", D)
    by_id = {r["post_id"]: r for r in rows}
    assert by_id["p1"]["alt_text"] and "tabby" in by_id["p1"]["alt_text"].lower()
    assert by_id["p3"]["alt_text"] is None and by_id["p1"]["author_id"] == "a"
    assert all(r["generator"] == "grounded-1" and r["event_date"] == D for r in rows)
    report = evaluate(posts, LABELS, SCORES, GroundedGenerator(), alt_text)
    assert report["alt_text"]["coverage"] == 1.0 and report["hashtags"]["drafts"] == 2
    assert 0.0 <= report["hashtags"]["hit_at_5"] <= 1.0


def test_efficientnet_lite0_matches_the_packaged_weights_names():
    torch = pytest.importorskip("torch")
    from assets.captions.labels import build_model, preprocess

    model = build_model().eval()
    names = set(model.state_dict())
    assert len(names) == 296 and "_blocks.15._project_conv.weight" in names and "_fc.weight" in names
    assert "_blocks.0._expand_conv.weight" not in names  # the first block does not expand
    from PIL import Image

    x = torch.from_numpy(preprocess([Image.new("RGB", (320, 200), (120, 80, 40))]))
    assert tuple(x.shape) == (1, 3, 224, 224) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    with torch.inference_mode():
        assert tuple(model.features(x).shape) == (1, 1280) and tuple(model(x).shape) == (1, 1000)


def test_bad_media_gives_a_status_not_an_exception():
    from assets.captions.labels import label_media

    class NoModel:
        version = "none"

        def label_images(self, imgs, k=5):
            raise AssertionError("never reached")

    assert label_media(None, lambda u: b"", NoModel()).status == "none"
    assert label_media("synthetic://x", lambda u: b"", NoModel()).status == "synthetic"
    bad = label_media("file:///x.jpg", lambda u: b"\xff\xd8\xff\xe0 not really a jpeg", NoModel())
    assert bad.status == "error" and bad.error.startswith("corrupt_image") and bad.labels == []

    def missing(uri):
        raise FileNotFoundError(2, "No such file or directory")

    gone = label_media("file:///gone.png", missing, NoModel())
    assert gone.status == "error" and gone.error.startswith("unreadable")
