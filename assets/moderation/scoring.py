"""Score posts and turn scores into decisions (pure over Arrow tables; the models are passed in).

``score_posts`` runs the text model over each post's caption (with its hashtags), the text read from its
frames (OCR) and its speech transcript, and the media analyser over its image or video. Media that cannot
be read or decoded is recorded with its reason (``media_status = error``), never raised: the policy sends
such posts to review. Synthetic media (``synthetic://`` URIs) has no bytes and is not analysed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Callable, Protocol, Sequence

import numpy as np
import pyarrow as pa

from assets.moderation.policy import Policy, Scores, TextScores, decide
from assets.moderation.tables import MODERATION_DECISIONS, MODERATION_SCORES

SYNTHETIC_SCHEME = "synthetic://"


class TextModel(Protocol):
    version: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


class Analyser(Protocol):
    def analyse(self, data: bytes): ...


def caption_text(caption: str | None, hashtags: Sequence[str] | None) -> str:
    """What the text model reads for a caption: the caption and its hashtags as written."""
    tags = " ".join(f"#{h}" for h in (hashtags or []))
    return " ".join(p for p in ((caption or "").strip(), tags) if p)


def content_hash(caption: str | None, hashtags: Sequence[str] | None, media_uri: str | None) -> str:
    h = hashlib.sha256()
    for part in (caption or "", "\x1f".join(hashtags or []), media_uri or ""):
        h.update(part.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def media_model_version(versions: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(versions.items()))


def _proba(model: TextModel, texts: list[str | None], batch: int) -> list[tuple[float, float] | None]:
    """(hatespeech, offensive) per text, None where there is no text; each distinct text scored once."""
    out: list[tuple[float, float] | None] = [None] * len(texts)
    todo = sorted({t for t in texts if t and t.strip()})
    if not todo:
        return out
    probs = np.concatenate([model.predict_proba(todo[i:i + batch]) for i in range(0, len(todo), batch)])
    index = {t: (float(p[0]), float(p[1])) for t, p in zip(todo, probs)}
    return [index.get(t) if t else None for t in texts]


def _analyse_media(uri: str | None, analyser_factory: Callable[[], Analyser], read_media: Callable[[str], bytes]):
    """(status, kind, error, analysis) for one post's media."""
    if not uri:
        return "none", None, None, None
    if uri.startswith(SYNTHETIC_SCHEME):
        return "synthetic", None, None, None
    from assets.moderation.media import MediaError, sniff_kind

    try:
        data = read_media(uri)
        kind = sniff_kind(data)
        return "ok", kind, None, analyser_factory().analyse(data)
    except MediaError as exc:
        return "error", None, f"{exc.reason}: {exc}", None
    except OSError as exc:  # a missing or unreadable media object
        return "error", None, f"unreadable: {exc.strerror or exc} ({uri})", None


def score_posts(
    posts: pa.Table,
    *,
    text_model: TextModel,
    analyser_factory: Callable[[], Analyser],
    read_media: Callable[[str], bytes],
    media_version: str,
    text_batch: int = 256,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> pa.Table:
    """One MODERATION_SCORES row per post of ``posts`` (bronze posts columns)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = posts.to_pylist()
    media = []
    for i, r in enumerate(rows):
        media.append(_analyse_media(r.get("media_uri"), analyser_factory, read_media))
        if progress and media[-1][0] == "ok" and (i + 1) % 50 == 0:
            progress(f"media analysed for {i + 1}/{len(rows)} posts")
    captions = [caption_text(r.get("caption"), r.get("hashtags")) for r in rows]
    ocr = [getattr(m[3], "ocr_text", None) or None for m in media]
    transcripts = [getattr(m[3], "transcript", None) or None for m in media]
    p_caption = _proba(text_model, captions, text_batch)
    p_ocr = _proba(text_model, ocr, text_batch)
    p_transcript = _proba(text_model, transcripts, text_batch)

    out = []
    for i, r in enumerate(rows):
        status, kind, error, analysis = media[i]
        frames = []
        seconds = None
        if analysis is not None:
            if hasattr(analysis, "frame_nsfw"):
                frames = [float(v) for v in analysis.frame_nsfw]
                seconds = float(analysis.seconds_processed)
            else:
                frames = [float(analysis.nsfw)]
        pick = lambda p, j: None if p[i] is None else p[i][j]  # noqa: E731
        out.append(
            {
                "post_id": r["post_id"],
                "author_id": r["author_id"],
                "kind": r["kind"],
                "content_hash": content_hash(r.get("caption"), r.get("hashtags"), r.get("media_uri")),
                "caption_hatespeech": pick(p_caption, 0),
                "caption_offensive": pick(p_caption, 1),
                "ocr_hatespeech": pick(p_ocr, 0),
                "ocr_offensive": pick(p_ocr, 1),
                "transcript_hatespeech": pick(p_transcript, 0),
                "transcript_offensive": pick(p_transcript, 1),
                "media_kind": kind,
                "media_status": status,
                "media_error": error,
                "frame_nsfw": frames,
                "nsfw_max": max(frames) if frames else None,
                "video_seconds": seconds,
                "ocr_text": ocr[i],
                "transcript": transcripts[i],
                "text_model_version": text_model.version,
                "media_model_version": media_version,
                "scored_at": now,
                "created_at": r["created_at"],
                "event_date": r["event_date"],
            }
        )
    return pa.Table.from_pylist(out, schema=MODERATION_SCORES.schema)


def still_valid(existing: pa.Table, posts: pa.Table, text_version: str, media_version: str) -> tuple[pa.Table, pa.Table]:
    """Split a partition into (scores to keep, posts to score): a score is kept while the post's content
    and both model versions are unchanged, so re-running a day only scores what is new."""
    keep_ids = set()
    if existing.num_rows:
        current = {
            r["post_id"]: content_hash(r.get("caption"), r.get("hashtags"), r.get("media_uri"))
            for r in posts.select(["post_id", "caption", "hashtags", "media_uri"]).to_pylist()
        }
        for r in existing.select(["post_id", "content_hash", "text_model_version", "media_model_version"]).to_pylist():
            if (
                current.get(r["post_id"]) == r["content_hash"]
                and r["text_model_version"] == text_version
                and r["media_model_version"] == media_version
            ):
                keep_ids.add(r["post_id"])
    keep_mask = pa.array([pid in keep_ids for pid in existing.column("post_id").to_pylist()], pa.bool_())
    todo_mask = pa.array([pid not in keep_ids for pid in posts.column("post_id").to_pylist()], pa.bool_())
    # a post that vanished from bronze (a loader replaced its day) loses its score with it
    kept = existing.filter(keep_mask)
    live = set(posts.column("post_id").to_pylist())
    kept = kept.filter(pa.array([pid in live for pid in kept.column("post_id").to_pylist()], pa.bool_()))
    return kept, posts.filter(todo_mask)


def value_counts(table: pa.Table, column: str, values: Sequence[str]) -> dict[str, int]:
    """How many rows hold each of ``values`` in ``column`` (zeros included, for stable metadata)."""
    counts = {v: 0 for v in values}
    for v in table.column(column).to_pylist():
        counts[v] = counts.get(v, 0) + 1
    return counts


def scores_of(row: dict) -> Scores:
    text = {}
    for source in ("caption", "ocr", "transcript"):
        h, o = row.get(f"{source}_hatespeech"), row.get(f"{source}_offensive")
        if h is not None and o is not None:
            text[source] = TextScores(hatespeech=h, offensive=o, normal=max(0.0, 1.0 - h - o))
    return Scores(
        text=text,
        media_kind=row.get("media_kind"),
        frame_nsfw=row.get("frame_nsfw") or (),
        media_error=row.get("media_error") if row.get("media_status") == "error" else None,
    )


def decide_rows(scores: pa.Table, policy: Policy, now: dt.datetime | None = None) -> pa.Table:
    """One MODERATION_DECISIONS row per scored post."""
    now = now or dt.datetime.now(dt.timezone.utc)
    out = []
    for r in scores.to_pylist():
        d = decide(policy, scores_of(r))
        hs = [r[f"{s}_hatespeech"] for s in ("caption", "ocr", "transcript") if r[f"{s}_hatespeech"] is not None]
        of = [r[f"{s}_offensive"] for s in ("caption", "ocr", "transcript") if r[f"{s}_offensive"] is not None]
        out.append(
            {
                "post_id": r["post_id"],
                "author_id": r["author_id"],
                "action": d.action,
                "reasons": list(d.reasons),
                "hatespeech": max(hs) if hs else None,
                "offensive": max(of) if of else None,
                "nsfw": r["nsfw_max"],
                "media_status": r["media_status"],
                "policy_version": policy.version,
                "text_model_version": r["text_model_version"],
                "media_model_version": r["media_model_version"],
                "decided_at": now,
                "created_at": r["created_at"],
                "event_date": r["event_date"],
            }
        )
    return pa.Table.from_pylist(out, schema=MODERATION_DECISIONS.schema)


# --- what the blocking asset checks count ------------------------------------------------------------
def score_violations(scores: pa.Table, post_ids: Sequence[str]) -> dict[str, int]:
    """Counts of broken score rows in one day: probabilities out of range, NSFW out of range, posts of the
    day left unscored, and posts scored twice."""
    probs = out_of_range = 0
    for r in scores.select([c for c in scores.column_names if c.endswith(("_hatespeech", "_offensive"))] +
                           ["nsfw_max", "frame_nsfw"]).to_pylist():
        for src in ("caption", "ocr", "transcript"):
            h, o = r[f"{src}_hatespeech"], r[f"{src}_offensive"]
            if h is None and o is None:
                continue
            if h is None or o is None or not (0 <= h <= 1 and 0 <= o <= 1 and h + o <= 1 + 1e-4):
                probs += 1
        values = [v for v in (r["frame_nsfw"] or [])] + ([r["nsfw_max"]] if r["nsfw_max"] is not None else [])
        out_of_range += sum(1 for v in values if not 0 <= v <= 1)
    ids = scores.column("post_id").to_pylist()
    return {
        "bad_probabilities": probs,
        "nsfw_out_of_range": out_of_range,
        "unscored_posts": len(set(post_ids) - set(ids)),
        "duplicate_posts": len(ids) - len(set(ids)),
    }


def decision_violations(decisions: pa.Table, scored_ids: Sequence[str]) -> dict[str, int]:
    """Counts of broken decisions in one day: unknown actions, non-allow without a reason, scored posts
    without a decision, duplicates."""
    from assets.moderation.policy import ACTIONS

    rows = decisions.select(["post_id", "action", "reasons"]).to_pylist()
    ids = [r["post_id"] for r in rows]
    return {
        "unknown_action": sum(1 for r in rows if r["action"] not in ACTIONS),
        "unexplained": sum(1 for r in rows if r["action"] != "allow" and not r["reasons"]),
        "undecided_posts": len(set(scored_ids) - set(ids)),
        "duplicate_posts": len(ids) - len(set(ids)),
    }


def action_table(decisions: Sequence[dict], labels: dict[str, str]) -> dict:
    """How the policy's actions fall across reference labels (e.g. HateXplain's): per label, the count and
    share of each action, plus the headline rates a trust & safety team reads (hate removed or held,
    normal posts left alone)."""
    from assets.moderation.policy import ACTIONS

    table: dict[str, dict[str, int]] = {}
    for d in decisions:
        label = labels.get(d["post_id"])
        if label is None:
            continue
        table.setdefault(label, {a: 0 for a in ACTIONS})[d["action"]] += 1
    out = {label: {"n": sum(c.values()), **c, **{f"{a}_share": round(c[a] / max(1, sum(c.values())), 4) for a in ACTIONS}}
           for label, c in sorted(table.items())}

    def share(label: str, actions: tuple[str, ...]) -> float | None:
        c = table.get(label)
        return round(sum(c[a] for a in actions) / sum(c.values()), 4) if c and sum(c.values()) else None

    return {
        "by_label": out,
        "hatespeech_removed_or_held": share("hatespeech", ("remove", "review")),
        "toxic_actioned": share("offensive", ("remove", "review", "limit")),
        "normal_allowed": share("normal", ("allow",)),
    }


def hatexplain_action_report(settings, split: str = "test") -> dict:
    """:func:`action_table` of the published decisions on the HateXplain posts of ``split`` (``all``: every
    split) against their reference labels, with what was decided and labelled and the policy versions.
    Reads the lake; :class:`LookupError` says what to load or run first."""
    from socialpulse import lake
    from socialpulse.loaders import HATEXPLAIN_DAYS

    uri = settings.table_uri("reference", "hatexplain")
    if lake.open_table(uri) is None:
        raise LookupError("no HateXplain reference table: run `socialpulse load hatexplain` first")
    ref = lake.read(uri, columns=["post_id", "split", "label"]).to_pylist()
    labels = {r["post_id"]: r["label"] for r in ref if split == "all" or r["split"] == split}
    days = list(HATEXPLAIN_DAYS.values()) if split == "all" else [HATEXPLAIN_DAYS[split]]
    decisions = lake.read(MODERATION_DECISIONS, settings=settings, columns=["post_id", "action", "policy_version"],
                          filters=[("event_date", "in", days)]).to_pylist()
    if not decisions:
        raise LookupError("no decisions on the HateXplain days yet: run `socialpulse moderation run --hatexplain-days`")
    return {**action_table(decisions, labels), "split": split,
            "decided": sum(1 for d in decisions if d["post_id"] in labels), "labelled": len(labels),
            "policy_versions": sorted({d["policy_version"] for d in decisions})}
