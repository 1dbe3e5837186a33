"""Reviewer decisions as training labels for the text model (pure mapping, and the Postgres read).

A moderator decides on a post (allow / limit / remove), not on a class; :func:`review_label` maps that
decision onto the text model's classes (``hatespeech``, ``offensive``, ``normal``) for the text the model read
(the caption with its hashtags), and gives no label when the decision was about something else (a post
restricted for its media alone says nothing about its text). :func:`training_rows` adds the labels to a
training split and keeps every text of the held-out splits out of it.
"""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa

from assets.moderation.tables import MODERATION_REVIEW_LABELS

#: the policy's reasons that name a text source ("hate speech in caption: ...", see assets/moderation/policy.py)
_HATE = "hate speech in "
_TEXT_REASONS = (_HATE, "offensive language in ", "toxic language in ")


def review_label(decision: str, text: str | None, reasons: Sequence[str] | None = (), hatespeech: float | None = None,
                 offensive: float | None = None) -> str | None:
    """The text-model class a reviewer's ``decision`` implies for ``text``; None when it implies none.

    allow: the text is ``normal``. limit: ``offensive``. remove: ``hatespeech`` when the model's reasons name
    hate speech (or, without text reasons, when its hate score is at least its offensive score), else
    ``offensive``. A restriction whose reasons are all about media gives no label, and neither does no text."""
    if not text or not text.strip():
        return None
    if decision == "allow":
        return "normal"
    if decision not in ("limit", "remove"):
        raise ValueError(f"not a review decision: {decision!r}")
    reasons = list(reasons or ())
    textual = [r for r in reasons if any(k in r for k in _TEXT_REASONS)]
    if reasons and not textual:
        return None
    if decision == "limit":
        return "offensive"
    if textual:
        return "hatespeech" if any(_HATE in r for r in textual) else "offensive"
    return "hatespeech" if (hatespeech or 0.0) >= (offensive or 0.0) else "offensive"


def label_rows(reviews: Sequence[dict]) -> pa.Table:
    """MODERATION_REVIEW_LABELS rows of the latest review per post (dicts with post_id, review_id, decision,
    model_action, appeal, reviewed_at, caption, reasons, hatespeech, offensive); reviews that imply no label
    are left out."""
    latest: dict[str, dict] = {}
    for r in reviews:
        if r["post_id"] not in latest or r["review_id"] > latest[r["post_id"]]["review_id"]:
            latest[r["post_id"]] = r
    out = []
    for r in sorted(latest.values(), key=lambda r: r["review_id"]):
        label = review_label(r["decision"], r.get("caption"), r.get("reasons"), r.get("hatespeech"), r.get("offensive"))
        if label is None:
            continue
        out.append({"post_id": r["post_id"], "review_id": r["review_id"], "text": r["caption"], "label": label,
                    "decision": r["decision"], "model_action": r["model_action"], "appeal": bool(r["appeal"]),
                    "reviewed_at": r["reviewed_at"]})
    return pa.Table.from_pylist(out, schema=MODERATION_REVIEW_LABELS.schema)


def read_reviews(conn) -> list[dict]:
    """The latest review of every reviewed post that still has its decision (a deleted post's review is not
    read, so its text leaves the labels at the next copy), with the text the model read."""
    from psycopg.rows import dict_row

    from socialpulse.stores.postgres import relation_exists

    if not relation_exists(conn, "moderation.reviews"):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT DISTINCT ON (r.post_id) r.post_id, r.review_id, r.decision, r.model_action, r.appeal,
                      r.reviewed_at, d.caption, d.reasons, d.hatespeech, d.offensive
               FROM moderation.reviews r JOIN moderation.decisions d USING (post_id)
               ORDER BY r.post_id, r.review_id DESC""")
        return cur.fetchall()


def training_rows(train_texts: Sequence[str], train_labels: Sequence[str], labels: pa.Table,
                  held_out_texts: Sequence[str]) -> tuple[list[str], list[str], int]:
    """(texts, labels, reviewed rows added): the training split plus the reviewers' labels, less any labelled
    text that is also in a held-out split (val or test stay untouched, and never leak into training)."""
    held_out = {t.strip() for t in held_out_texts}
    texts, out_labels = list(train_texts), list(train_labels)
    added = 0
    for text, label in zip(labels.column("text").to_pylist(), labels.column("label").to_pylist()):
        if text and text.strip() not in held_out:
            texts.append(text)
            out_labels.append(label)
            added += 1
    return texts, out_labels, added
