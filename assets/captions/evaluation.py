"""Captions logic without Dagster: post facts joined from bronze posts, media labels and moderation scores; the
rows of the gold table; and the evaluation (hashtag hit@5 against creators' own tags held back, beside the
existing suggester; alt-text coverage and length; the guard's rejections by reason).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import pyarrow as pa

from assets.captions.facts import PostFacts, Suggestions
from assets.captions.grounded import readable_text
from socialpulse.tags import normalise_tags, strip_tags

MEDIA_KINDS = ("image", "video")


def _rows_by_post(table: pa.Table | None, columns: Sequence[str]) -> dict[str, dict]:
    if table is None or table.num_rows == 0:
        return {}
    cols = [c for c in columns if c in table.column_names]
    return {r["post_id"]: r for r in table.select(["post_id", *cols]).to_pylist()}


def build_facts(posts: pa.Table, labels: pa.Table | None = None, scores: pa.Table | None = None, *,
                hold_out_hashtags: bool = False) -> list[PostFacts]:
    """One PostFacts per bronze post row (in order): the creator's caption and hashtags, the media labels (best
    first), on-screen text, transcript and the video's seconds from moderation scores (``video_seconds``, else the
    post's declared ``duration_s``). ``hold_out_hashtags``: no hashtags and the caption stripped of ``#tags``
    (what an evaluation against the creator's own tags may show the generator)."""
    by_labels = _rows_by_post(labels, ["labels", "status"])
    by_scores = _rows_by_post(scores, ["ocr_text", "transcript", "video_seconds"])
    out = []
    for r in posts.to_pylist():
        pid = r["post_id"]
        lab = by_labels.get(pid) or {}
        sc = by_scores.get(pid) or {}
        caption = r.get("caption")
        tags = tuple(normalise_tags(r.get("hashtags")))
        if hold_out_hashtags:
            caption, tags = (strip_tags(caption) or None) if caption else None, ()
        duration = sc.get("video_seconds") if sc.get("video_seconds") is not None else r.get("duration_s")
        out.append(PostFacts(
            post_id=pid,
            kind=r.get("kind") or "text",
            caption=caption,
            hashtags=tags,
            labels=tuple((l["name"], float(l["prob"])) for l in (lab.get("labels") or [])),
            ocr_text=readable_text(sc.get("ocr_text")),
            transcript=readable_text(sc.get("transcript")),
            duration_s=float(duration) if duration is not None and r.get("kind") == "video" else None,
            language=r.get("language"),
        ))
    return out


def draft_text(facts: PostFacts) -> str:
    """What a post's related tags are looked up by: its words the way the search index embeds posts
    (:func:`assets.content.embeddings.post_document`), without any hashtag: the creator's words, on-screen text,
    speech."""
    from assets.captions.grounded import clean_text
    from assets.content.embeddings import post_document

    return post_document(clean_text(facts.caption) or None, [], facts.ocr_text, facts.transcript)


#: related tags count only for a post whose nearest indexed post is at least this alike (MiniLM cosine): below
#: it, "similar posts" are not similar and their tags say nothing about the post (the bench's coffee photo got
#: #gaming from posts about games without it). On the validation world (seed 11, bench/results/captions.json
#: "validation", nearest cosine p10 0.66) the floor costs hit@5 0.809 -> 0.806: its posts all have close
#: neighbours, so the floor is set by the off-topic case, not by that figure
RELATED_MIN_SIMILARITY = 0.45
#: ... and their weight rises linearly from nothing at that floor to full this much above it: a post whose nearest
#: neighbour only just clears the floor (a coffee photo in a world without coffee posts, nearest a travel post at
#: 0.455) is led by its own words, not by its neighbours' topic
RELATED_RAMP = 0.15


def related_confidence(similarity: float | None, min_similarity: float = RELATED_MIN_SIMILARITY,
                       ramp: float = RELATED_RAMP) -> float:
    """How far to trust a post's related tags, from its nearest neighbour's cosine: 0 below ``min_similarity``
    (or unknown), rising linearly to 1 at ``min_similarity + ramp`` (a step at the floor when ``ramp`` is 0)."""
    if similarity is None or similarity < min_similarity:
        return 0.0
    return 1.0 if ramp <= 0 else min(1.0, (similarity - min_similarity) / ramp)


def with_related_tags(facts: Sequence[PostFacts], rankings: Sequence[Sequence[tuple[str, float]]],
                      similarities: Sequence[float | None] | None = None, *,
                      min_similarity: float = RELATED_MIN_SIMILARITY, ramp: float = RELATED_RAMP,
                      limit: int = 10) -> list[PostFacts]:
    """``facts`` with each post's related tags (the existing suggester's ``(tag, score)`` ranking for it): the
    scores are scaled so the post's best related tag is 1, the tags canonical, each once, at most ``limit``. With
    ``similarities`` (each post's nearest neighbour's cosine), the scores are further scaled by
    :func:`related_confidence`: a post below ``min_similarity`` gets none."""
    if len(rankings) != len(facts) or (similarities is not None and len(similarities) != len(facts)):
        raise ValueError(f"{len(rankings)} rankings for {len(facts)} posts")
    out = []
    for i, (f, ranking) in enumerate(zip(facts, rankings)):
        trust = related_confidence(similarities[i], min_similarity, ramp) if similarities is not None else 1.0
        top = max((float(s) for _, s in ranking), default=0.0)
        seen: dict[str, float] = {}
        for tag, score in ranking if trust > 0 else ():
            t = normalise_tags([tag])
            if t and t[0] not in seen and top > 0:
                seen[t[0]] = round(trust * float(score) / top, 4)
        out.append(replace(f, related_tags=tuple(list(seen.items())[:limit])))
    return out


def caption_rows(posts: pa.Table, facts: Sequence[PostFacts], suggestions: Sequence[Suggestions],
                 alt_text: Callable[[PostFacts], str | None], labels_version: str | None, day: dt.date,
                 now: dt.datetime | None = None) -> list[dict]:
    """The gold post_captions rows (one per post, in order)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    by_id = {s.post_id: s for s in suggestions}
    authors = dict(zip(posts.column("post_id").to_pylist(), posts.column("author_id").to_pylist()))
    rows = []
    for f in facts:
        s = by_id.get(f.post_id) or Suggestions(post_id=f.post_id)
        rows.append({
            "post_id": f.post_id, "author_id": authors[f.post_id], "kind": f.kind, "alt_text": alt_text(f),
            "captions": list(s.captions), "hashtags": list(s.hashtags), "generator": s.generator or "",
            "fallback": bool(s.fallback), "rejected": [r.reason for r in s.rejected],
            "labels_version": labels_version, "generated_at": now, "event_date": day,
        })
    return rows


def hit_at(suggested: Sequence[str], hidden: Iterable[str], k: int = 5) -> bool:
    from assets.trends.suggest_eval import hit_at as _hit

    return _hit(suggested, set(hidden), k)


def hashtag_hits(facts_held_out: Sequence[PostFacts], hidden: Sequence[Sequence[str]],
                 suggestions: Sequence[Suggestions], k: int = 5) -> dict:
    """hit@k of one generator's hashtags against each post's own hashtags (held back); posts without hashtags
    are not drafts and are left out. The facts must not show the hidden tags (a ValueError says so)."""
    hits = n = 0
    for f, tags, s in zip(facts_held_out, hidden, suggestions):
        tags = normalise_tags(tags)
        if not tags:
            continue
        if f.hashtags or any(f"#{t}" in (f.caption or "").lower() for t in tags):
            raise ValueError(f"post {f.post_id}: the facts show the hashtags the evaluation hides")
        n += 1
        hits += hit_at(s.hashtags, tags, k)
    return {f"hit_at_{k}": round(hits / n, 4) if n else None, "drafts": n}


def existing_suggester_hits(records: list[dict], encoder, k: int = 5, **kwargs) -> dict:
    """The existing suggester's hit@k (semantic neighbours, trending, popularity: what the API serves) on the
    same records, from :func:`assets.trends.suggest_eval.suggestion_eval`."""
    from assets.trends.suggest_eval import suggestion_eval

    return suggestion_eval(records, encoder, k=k, **kwargs)


def _pct(values: Sequence[int], q: float) -> int | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def alt_text_stats(rows: Sequence[dict]) -> dict:
    """Coverage (share of image/video posts with alt-text) and alt-text length p50/p90/max in characters."""
    media = [r for r in rows if r["kind"] in MEDIA_KINDS]
    lengths = [len(r["alt_text"]) for r in media if r.get("alt_text")]
    return {"media_posts": len(media), "with_alt_text": len(lengths),
            "coverage": round(len(lengths) / len(media), 4) if media else None,
            "length_p50": _pct(lengths, 0.5), "length_p90": _pct(lengths, 0.9),
            "length_max": max(lengths) if lengths else None}


def rejection_stats(suggestions: Sequence[Suggestions]) -> dict:
    """The guard's rejections by reason: counts, and the rate per generated suggestion (accepted + rejected)."""
    reasons = Counter(r.reason for s in suggestions for r in s.rejected)
    rejected = sum(reasons.values())
    produced = rejected + sum(len(s.captions) for s in suggestions)
    return {"rejected": rejected, "produced": produced,
            "rejection_rate": round(rejected / produced, 4) if produced else 0.0,
            "by_reason": {k: {"count": v, "rate": round(v / produced, 4)} for k, v in sorted(reasons.items())},
            "fallback_posts": sum(1 for s in suggestions if s.fallback)}


def evaluate(posts: pa.Table, labels: pa.Table | None, scores: pa.Table | None, generator, alt_text,
             k: int = 5, related: Callable[[list[PostFacts]], list] | None = None) -> dict:
    """Everything the evaluation asset and the bench report for one generator on one set of posts
    (``related``: the related-tags lookup, given the held-out facts: never a post's own tags)."""
    held = build_facts(posts, labels, scores, hold_out_hashtags=True)
    if related is not None and held:
        held = with_related_tags(held, *related(held))
    hidden = [r or [] for r in posts.column("hashtags").to_pylist()]
    suggestions = generator.generate(held)
    full = build_facts(posts, labels, scores)
    alt = alt_text_stats([{"kind": f.kind, "alt_text": alt_text(f)} for f in full])
    return {"generator": getattr(generator, "version", type(generator).__name__),
            "hashtags": hashtag_hits(held, hidden, suggestions, k), "alt_text": alt,
            "guard": rejection_stats(generator.generate(full))}
