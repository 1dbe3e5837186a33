"""Grounded alt-text, captions and hashtags: written only from a post's facts, never from a model's imagination.

Everything here is a pure, deterministic function of :class:`~assets.captions.facts.PostFacts`:

* :func:`alt_text` describes an image or video for screen readers (WCAG / platform guidance: concise, about
  125 characters, the content first, no "image of" lead-in). It names an object only when the image
  classifier was confident (:data:`LABEL_MIN_PROB`); when nothing is confident it says less ("Photo").
* :class:`GroundedGenerator` (``grounded-1``) suggests captions (the creator's words cleaned, or a short line
  from labels / on-screen text / speech) and hashtags ranked from the words of those facts. It is the
  default generator and the stand-in whenever a language model fails or is refused by the quality guard.

The creator's own hashtags are deliberately not a source of hashtag suggestions: suggestions are evaluated
against them held back, so they must come from the other facts.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import Sequence

from assets.captions.facts import PostFacts, Suggestions
from socialpulse.tags import normalise_tag, strip_tags

#: a label is named only at or above this classifier probability (ImageNet top-1 on real photos is often
#: 0.3-0.9; below 0.3 the top class is as likely wrong as right)
LABEL_MIN_PROB = 0.30
#: at most this many labels are named in alt-text
MAX_LABELS = 2
#: alt-text aims at this length (screen-reader guidance) and never exceeds the hard cap
ALT_TARGET_CHARS = 125
ALT_MAX_CHARS = 250
#: longest quote of on-screen text / speech in alt-text (shortened further when the whole is too long)
QUOTE_CHARS = 60
MAX_HASHTAGS = 10
MAX_CAPTIONS = 3
CAPTION_MAX_CHARS = 150

#: function words that never become hashtags (English; other languages keep all their words)
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just let me more most my myself no nor not now
of off on once only or other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very was we were what
when where which while who whom why will with would you your yours yourself yourselves im its dont cant
wont thats ive youre were gonna wanna got get gets like really one two also just here this today
make makes making made take takes took know see want need going look much many every still
""".split())

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def label_words(name: str) -> str:
    """An ImageNet class name in plain words: the first synonym, underscores as spaces
    (``"tabby, tabby cat"`` -> ``"tabby"``, ``"golden_retriever"`` -> ``"golden retriever"``)."""
    first = str(name).split(",")[0]
    return " ".join(first.replace("_", " ").split())


def confident_labels(facts: PostFacts, min_prob: float = LABEL_MIN_PROB, limit: int = MAX_LABELS) -> list[str]:
    """The plain words of the labels at or above ``min_prob``, best first, each once, at most ``limit``."""
    out: list[str] = []
    for name, prob in sorted(facts.labels, key=lambda lp: -float(lp[1])):
        if float(prob) < min_prob:
            break
        words = label_words(name)
        if words and words.lower() not in (o.lower() for o in out):
            out.append(words)
        if len(out) >= limit:
            break
    return out


def readable_text(text: str | None) -> str | None:
    """Detected text (OCR, speech) worth repeating: whitespace collapsed, ``None`` when no word in it has two
    letters or digits (a stray ``O`` read off a cat's fur says nothing and would be quoted as on-screen text)."""
    text = " ".join((text or "").split())
    return text if any(sum(c.isalnum() for c in w) >= 2 for w in text.split()) else None


def clean_text(text: str | None) -> str:
    """NFKC, whitespace collapsed, ``#tags`` removed (the creator's words without their hashtags)."""
    return strip_tags(unicodedata.normalize("NFKC", text or ""))


def trim(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.-") + "…"


def _quote(text: str, limit: int) -> str:
    return "'" + trim(text.replace("'", "’"), limit) + "'"


def _seconds(duration_s: float | None) -> int | None:
    if duration_s is None or duration_s != duration_s or duration_s <= 0:
        return None
    return max(1, int(round(duration_s)))


def _join_labels(labels: Sequence[str]) -> str:
    return " and ".join(labels)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _alt_parts(facts: PostFacts, quote_chars: int, min_prob: float) -> tuple[str, list[str]]:
    """(the head naming the content, the clauses in priority order)."""
    labels = confident_labels(facts, min_prob)
    secs = _seconds(facts.duration_s) if facts.kind == "video" else None
    if labels:
        head = _capitalise(_join_labels(labels))
        if facts.kind == "video":
            head += f", {secs}-second video" if secs else ", video"
    else:
        head = "Video" if facts.kind == "video" else "Photo"
        if secs:
            head += f", {secs} seconds"
    clauses: list[str] = []
    ocr = " ".join((facts.ocr_text or "").split())
    speech = " ".join((facts.transcript or "").split())
    if ocr:
        clauses.append(f"with on-screen text: {_quote(ocr, quote_chars)}")
    if speech and facts.kind == "video":
        clauses.append(f"speech: {_quote(speech, quote_chars)}")
    if not labels and not clauses:
        words = clean_text(facts.caption)
        if words:
            clauses.append(f"captioned {_quote(words, quote_chars)}")
    return head, clauses


def _compose(head: str, clauses: Sequence[str]) -> str:
    if not clauses:
        return head
    return head + ", " + "; ".join(clauses)


def alt_text(facts: PostFacts, *, min_prob: float = LABEL_MIN_PROB, target_chars: int = ALT_TARGET_CHARS,
             max_chars: int = ALT_MAX_CHARS) -> str | None:
    """Alt-text for an image or video post from its facts only; ``None`` for text posts.

    Content first: the confident labels (``"Golden retriever and tennis ball"``), then for videos the length
    (``"12-second video"``), then on-screen text and speech quoted. With no confident label it says only what
    is known (``"Video, 12 seconds, with on-screen text: 'SALE'"``, or just ``"Photo"``); the creator's caption
    is quoted only when nothing else is known. Quotes shrink, then the speech and on-screen clauses are
    dropped, until the text fits ``target_chars``; it never exceeds ``max_chars``.
    """
    if facts.kind not in ("image", "video"):
        return None
    for quote_chars in (QUOTE_CHARS, 40):
        text = _compose(*_alt_parts(facts, quote_chars, min_prob))
        if len(text) <= target_chars:
            return text
    head, clauses = _alt_parts(facts, 24, min_prob)
    best = _compose(head, clauses)
    while len(best) > target_chars and clauses:
        clauses = clauses[:-1]  # speech goes first, then on-screen text
        best = _compose(head, clauses)
    return trim(best, max_chars)


# --- hashtags ----------------------------------------------------------------------------------------
def words_of(text: str | None) -> list[str]:
    """The words of ``text``, case-folded, possessive ``'s`` dropped (the unit of hashtag and entity checks)."""
    out = []
    for w in _WORD.findall(unicodedata.normalize("NFKC", text or "")):
        w = w.casefold()
        for suffix in ("'s", "’s"):
            if w.endswith(suffix):
                w = w[: -len(suffix)]
        out.append(w.replace("’", "'"))
    return out


def _keyword(word: str) -> bool:
    return len(word) >= 3 and word not in STOPWORDS and not word.isdigit() and "'" not in word


#: weight of one word by where it was found (a confident label says most about the content); a related tag
#: (what similar posts are tagged, :attr:`PostFacts.related_tags`) weighs this times its suggester score, so the
#: platform's own tags lead and the post's words follow and fill in where similar posts say little. 12 was
#: chosen on a validation world (seed 11, bench/results/captions.json "validation"): hit@5 0.748 at 5, 0.803
#: at 8, 0.809 at 12, 0.811 at 20; 12 still lets a confident label or a repeated word into the top five
SOURCE_WEIGHTS = {"related": 12.0, "label": 3.0, "caption": 2.0, "ocr": 1.5, "transcript": 1.0}


def hashtag_candidates(facts: PostFacts, *, min_prob: float = LABEL_MIN_PROB, limit: int = MAX_HASHTAGS) -> list[str]:
    """Hashtags ranked from the facts' words (the creator's own hashtags excluded as a source).

    Each related tag (the tags similar posts carry, ranked by the platform's suggester) weighs 12 x its score;
    each confident label gives its words joined (``goldenretriever``, weight 3 x probability + 1) and its
    last word (``retriever``); caption, on-screen text and speech give their keywords (no stop words, at
    least 3 letters), weighted 2 / 1.5 / 1 per occurrence. Ties keep first-seen order. Canonical tags
    (:func:`socialpulse.tags.normalise_tag`), each once, at most ``limit`` (never more than 10).
    """
    score: dict[str, float] = defaultdict(float)
    order: dict[str, int] = {}

    def add(raw: str, weight: float) -> None:
        tag = normalise_tag(raw)
        if not tag or tag.isdigit():
            return
        order.setdefault(tag, len(order))
        score[tag] += weight

    for tag, related in facts.related_tags:
        add(tag, SOURCE_WEIGHTS["related"] * float(related))
    for name, prob in sorted(facts.labels, key=lambda lp: -float(lp[1])):
        if float(prob) < min_prob:
            break
        words = [w for w in words_of(label_words(name)) if w]
        if not words:
            continue
        add("".join(words), SOURCE_WEIGHTS["label"] * float(prob) + 1.0)
        if len(words) > 1 and _keyword(words[-1]):
            add(words[-1], SOURCE_WEIGHTS["label"] * float(prob))
    for source, text in (("caption", clean_text(facts.caption)), ("ocr", facts.ocr_text),
                         ("transcript", facts.transcript)):
        for w in words_of(text):
            if _keyword(w):
                add(w, SOURCE_WEIGHTS[source])
    ranked = sorted(score, key=lambda t: (-score[t], order[t]))
    return ranked[: max(0, min(limit, MAX_HASHTAGS))]


# --- captions ----------------------------------------------------------------------------------------
def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.search(r"(?<=[.!?])\s", text)
    return text[: m.start()] if m else text


def caption_candidates(facts: PostFacts, *, min_prob: float = LABEL_MIN_PROB, limit: int = MAX_CAPTIONS,
                       max_chars: int = CAPTION_MAX_CHARS) -> list[str]:
    """Up to ``limit`` caption suggestions, each from one fact: the creator's caption without hashtags, the
    confident labels as a phrase, the on-screen text, the first sentence of the speech. Each once."""
    out: list[str] = []

    def add(text: str) -> None:
        text = trim(text, max_chars)
        if text and any(c.isalnum() for c in text) and text.lower() not in (o.lower() for o in out):
            out.append(text)

    add(clean_text(facts.caption))
    labels = confident_labels(facts, min_prob)
    if labels and facts.kind != "text":
        add(_capitalise(_join_labels(labels)))
    if facts.ocr_text:
        add(" ".join(facts.ocr_text.split()))
    if facts.transcript:
        add(_first_sentence(facts.transcript))
    return out[:limit]


class GroundedGenerator:
    """Captions and hashtags composed from the facts alone (deterministic, no model): the default generator
    and the fallback of every model generator. A ``guard`` (:class:`~assets.captions.guard.QualityGuard`),
    when given, filters its output too (e.g. the creator's caption echoed back when it is toxic)."""

    version = "grounded-1"

    def __init__(self, *, min_prob: float = LABEL_MIN_PROB, max_captions: int = MAX_CAPTIONS,
                 max_hashtags: int = MAX_HASHTAGS, guard=None):
        self.min_prob = min_prob
        self.max_captions = max_captions
        self.max_hashtags = min(max_hashtags, MAX_HASHTAGS)
        self.guard = guard

    def suggest(self, facts: PostFacts) -> Suggestions:
        return Suggestions(
            post_id=facts.post_id,
            captions=caption_candidates(facts, min_prob=self.min_prob, limit=self.max_captions),
            hashtags=hashtag_candidates(facts, min_prob=self.min_prob, limit=self.max_hashtags),
            generator=self.version,
        )

    def generate(self, posts: Sequence[PostFacts]) -> list[Suggestions]:
        out = [self.suggest(p) for p in posts]
        if self.guard is not None:
            out = self.guard.filter_many(out, posts)
        return out
