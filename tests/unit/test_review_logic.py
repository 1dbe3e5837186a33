"""Human review, the pure parts: reviewer decisions as text-model labels, the training set they join, the gate
after a decision, who may appeal, the queue item the API answers, who sees a removed post, and the review page's
files (nothing from another host)."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pytest

from assets.moderation.labels import label_rows, review_label, training_rows
from assets.moderation.tables import MODERATION_REVIEW_LABELS
from socialpulse.moderation import ReviewError, appeal_refusal, gate_after

T = dt.datetime(2026, 3, 5, 12, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("decision, reasons, scores, label", [
    ("allow", ["possible hate speech in caption: 0.70 >= 0.60"], (0.7, 0.1), "normal"),
    ("allow", [], (None, None), "normal"),
    ("limit", ["offensive language in caption: 0.80 >= 0.70"], (0.1, 0.8), "offensive"),
    ("remove", ["possible hate speech in caption: 0.70 >= 0.60"], (0.7, 0.2), "hatespeech"),
    ("remove", ["toxic language in ocr: 0.90 >= 0.85"], (0.5, 0.4), "offensive"),
    ("remove", [], (0.2, 0.6), "offensive"),  # the model allowed it: the scores pick the class
    ("remove", [], (0.6, 0.2), "hatespeech"),
    # restricted for its media alone: says nothing about the text
    ("remove", ["nsfw image: 0.97 >= 0.90"], (0.9, 0.0), None),
    ("limit", ["media could not be analysed: corrupt_image: broken"], (0.1, 0.1), None),
])
def test_review_label_maps_decisions_to_classes(decision, reasons, scores, label):
    assert review_label(decision, "some words", reasons, *scores) == label


def test_review_label_needs_text_and_a_human_decision():
    assert review_label("remove", None, []) is None
    assert review_label("allow", "   ", []) is None
    with pytest.raises(ValueError):
        review_label("review", "text", [])


def _review(pid, rid, decision, caption="bad words here", reasons=("hate speech in caption: 0.95 >= 0.90",)):
    return {"post_id": pid, "review_id": rid, "decision": decision, "model_action": "remove", "appeal": False,
            "reviewed_at": T, "caption": caption, "reasons": list(reasons), "hatespeech": 0.95, "offensive": 0.02}


def test_label_rows_keep_the_latest_review_per_post_and_drop_the_unlabelled():
    rows = label_rows([_review("p1", 1, "remove"), _review("p1", 3, "allow"), _review("p2", 2, "remove"),
                       _review("p3", 4, "remove", caption=None)])
    assert rows.schema == MODERATION_REVIEW_LABELS.schema
    assert rows.select(["post_id", "label", "review_id"]).to_pylist() == [
        {"post_id": "p2", "label": "hatespeech", "review_id": 2},
        {"post_id": "p1", "label": "normal", "review_id": 3},
    ]
    assert label_rows([]).num_rows == 0


def test_training_rows_add_review_labels_but_never_a_held_out_text():
    labels = pa.Table.from_pylist([
        {"post_id": "p1", "review_id": 1, "text": "reviewed hate #test", "label": "hatespeech", "decision": "remove",
         "model_action": "review", "appeal": False, "reviewed_at": T},
        {"post_id": "p2", "review_id": 2, "text": "a val sentence", "label": "normal", "decision": "allow",
         "model_action": "limit", "appeal": True, "reviewed_at": T},
    ], schema=MODERATION_REVIEW_LABELS.schema)
    texts, ys, added = training_rows(["t1", "t2"], ["normal", "offensive"], labels, ["a val sentence ", "test x"])
    assert (texts, ys, added) == (["t1", "t2", "reviewed hate #test"], ["normal", "offensive", "hatespeech"], 1)
    empty = training_rows(["t1"], ["normal"], MODERATION_REVIEW_LABELS.schema.empty_table(), [])
    assert empty == (["t1"], ["normal"], 0)


def test_gate_after_a_review():
    assert gate_after("allow") is None
    assert gate_after("limit") == "limit" and gate_after("remove") == "remove"
    with pytest.raises(ValueError):
        gate_after("review")


def test_only_the_author_appeals_once_and_only_a_restriction():
    removed = {"author_id": "u1", "action": "remove"}
    assert appeal_refusal(removed, "u1", False) is None
    assert appeal_refusal({"author_id": "u1", "action": "review"}, "u1", False) is None
    cases = [(None, "u1", False, 404), (removed, "u2", False, 403), (removed, "u1", True, 409),
             ({"author_id": "u1", "action": "allow"}, "u1", False, 409)]
    for decision, who, appealed, status in cases:
        refusal = appeal_refusal(decision, who, appealed)
        assert isinstance(refusal, ReviewError) and refusal.status == status, (decision, who, appealed)


def test_queue_item_groups_scores_and_names_the_media_by_this_api():
    from serving.api.routes.moderation import queue_item

    row = {"post_id": "p1", "reasons": ["media could not be analysed: corrupt_image: bad (file:///x)"],
           "enqueued_at": T, "appeal": True, "action": "remove", "source": "asset", "author_id": "u1", "kind": "image",
           "caption": "hello #test", "hatespeech": 0.25, "offensive": 0.5, "nsfw": None, "media_status": "error",
           "created_at": T, "has_media": True, "appeal_message": "it is my cat"}
    item = queue_item(row)
    assert item["media_url"] == "/v1/moderation/p1/media" and "file://" not in item["media_url"]
    assert item["scores"] == {"hatespeech": 0.25, "offensive": 0.5, "nsfw": None}
    assert item["text"] == "hello #test" and item["decided_by"] == "model"
    assert item["reasons"] == row["reasons"]  # reviewers see the full reason
    assert item["appeal"] is True and item["appeal_message"] == "it is my cat"
    assert item["enqueued_at"] == T.isoformat()
    assert queue_item({**row, "has_media": False, "source": "review"})["media_url"] is None


def test_who_may_see_a_removed_posts_details():
    from serving.api.routes.posts import may_see_removed
    from socialpulse.auth import Principal as user
    assert may_see_removed(user("author"), "author")
    assert may_see_removed(user("m", "moderator"), "author") and may_see_removed(user("a", "admin"), "author")
    assert not may_see_removed(user("someone"), "author")
    assert not may_see_removed(None, "author")


def test_the_review_page_loads_nothing_from_another_host():
    from serving.api.routes.dashboard import STATIC_DIR

    for name in ("review.html", "review.js", "review.css"):
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text), name
        assert "@import" not in text and "@font-face" not in text and "url(http" not in text, name
    js = (STATIC_DIR / "review.js").read_text()
    assert '"Authorization": "Bearer "' in js and "sessionStorage" in js and "createObjectURL" in js
    assert "history.replaceState" in js  # the token leaves the address bar
