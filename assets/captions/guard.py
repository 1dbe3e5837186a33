"""The quality guard: what a generated caption or hashtag must pass before a user sees it.

A language model can loop ("the the the"), invent (a name, a brand, a place, a number, a link that no fact
holds), run long, or say something hateful. :class:`QualityGuard` refuses such text with a reason kept in
:class:`~assets.captions.facts.Rejection`:

* ``length``: shorter than ``min_chars`` or longer than ``max_chars`` (hashtags: not a canonical tag);
* ``repetition``: a word said twice in a row, a phrase (2-4 words) said twice, fewer than half the words
  distinct, or a run of characters repeated 5 times ("hahahahaha!!!!!");
* ``unknown_entity``: an @mention, #tag, URL, number, capitalised word (not starting a sentence) or
  brand-like token (``iPhone``, ``NASA``, ``GPT4``) that no input field holds. The check is a simple,
  explainable heuristic: lowercase comparison against the words of every field of the facts and of the
  label names (a #tag may also join up to three consecutive input words: ``#goldenretriever``). Its known
  blind spot: a proper noun as a sentence's first word passes (grammar capitalises it anyway);
* ``toxic``: the toxicity scorer's hatespeech + offensive probability at or above ``toxic_threshold``;
* ``new_words`` (opt-in, ``max_new_words``): more than that many content words (3+ letters, no stop word)
  whose stem no input word shares. It catches lowercase inventions ("a photo of the sea" for a post whose
  facts never mention a sea) at the price of also refusing harmless ones ("excited", "happy").

:func:`moderation_toxicity` gives the scorer of the registered text moderation champion (the model the
live moderation worker uses); tests may pass any callable with the same shape.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from assets.captions.facts import PostFacts, Rejection, Suggestions
from assets.captions.grounded import STOPWORDS, label_words, words_of
from socialpulse.tags import normalise_tag

#: a batch scorer: texts -> per text ``{"hatespeech": p, "offensive": p}`` (a mapping, or a
#: ``(hatespeech, offensive)`` pair / array row)
Toxicity = Callable[[Sequence[str]], Sequence[Any]]

_URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+"
                  r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|co|app|ly|gg|tv|me|de|uk|fr)\b\S*")
_MENTION = re.compile(r"(?<![\w@])@([\w.]+)")
_HASHTAG = re.compile(r"(?<![\w&])#([^\W]+)")
_TOKEN = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*", re.UNICODE)
_CHAR_RUN = re.compile(r"(.{1,6}?)\1{4,}", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?:;…\"“”(\[\n]\s*$")


def fact_texts(facts: PostFacts) -> list[str]:
    """Every input field of ``facts`` as text (label names included, all their synonyms)."""
    out = [facts.caption or "", " ".join(facts.hashtags), facts.ocr_text or "", facts.transcript or ""]
    for name, _ in facts.labels:
        out.append(str(name).replace("_", " "))
    secs = facts.duration_s
    if secs is not None and secs == secs and secs > 0:
        out.append(f"{int(round(secs))} {int(secs)} {secs:g}")
    return out


def vocabulary(facts: PostFacts) -> tuple[set[str], set[str]]:
    """(the case-folded words of every input field, the tags those words make: each word and every join of
    2-3 consecutive words within a field, plus the creator's hashtags and the related tags of similar posts)."""
    words: set[str] = set()
    tags: set[str] = set(normalise_tag(t) for t in (*facts.hashtags, *(t for t, _ in facts.related_tags))) - {""}
    fields = fact_texts(facts) + [label_words(n) for n, _ in facts.labels]
    for text in fields:
        ws = words_of(text)
        words.update(ws)
        for n in (1, 2, 3):
            for i in range(len(ws) - n + 1):
                tag = normalise_tag("".join(ws[i:i + n]))
                if tag:
                    tags.add(tag)
    # a word's parts count too ("twenty-one", "e.g."), so the token rule and the word rule agree
    for w in list(words):
        words.update(p for p in re.split(r"[-.'’]", w) if p)
    return words, tags


#: words any caption may use about the post itself
_POST_WORDS = frozenset("photo photos picture image video clip post text caption".split())
_SUFFIXES = ("ing", "ed", "es", "s", "ly", "er", "est")


def stem(word: str) -> str:
    """A crude English stem (suffix stripped, a doubled final consonant undone): ``running`` -> ``run``."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    return word


def new_words(text: str, words: set[str]) -> list[str]:
    """The content words of ``text`` whose stem no word of ``words`` shares (in order, each once)."""
    stems = {stem(w) for w in words} | {stem(w) for w in _POST_WORDS}
    out: list[str] = []
    for w in words_of(text):
        if len(w) >= 3 and w.isalpha() and w not in STOPWORDS and w not in words and stem(w) not in stems \
                and w not in out:
            out.append(w)
    return out


def _toxic_pair(score: Any) -> tuple[float, float]:
    if isinstance(score, Mapping):
        return float(score.get("hatespeech", 0.0)), float(score.get("offensive", 0.0))
    seq = list(score)
    return float(seq[0]), float(seq[1])


class QualityGuard:
    """Refuses generated captions and hashtags that repeat, invent, run out of bounds or are toxic.

    ``toxicity`` is a batch scorer (see :data:`Toxicity`) or None (no toxicity check); ``toxic_threshold``
    applies to hatespeech + offensive. ``filter_many`` scores every surviving text of a batch in one call.
    """

    def __init__(self, toxicity: Toxicity | None = None, *, max_chars: int = 200, min_chars: int = 3,
                 toxic_threshold: float = 0.5, max_hashtag_chars: int = 50, max_new_words: int | None = None):
        if min_chars > max_chars:
            raise ValueError(f"min_chars {min_chars} > max_chars {max_chars}")
        self.toxicity = toxicity
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.toxic_threshold = toxic_threshold
        self.max_hashtag_chars = max_hashtag_chars
        self.max_new_words = max_new_words

    # --- the rules, each returning a rejection or None ------------------------------------------------
    def _length(self, text: str) -> Rejection | None:
        n = len(text.strip())
        if n < self.min_chars:
            return Rejection(text, "length", f"{n} characters; at least {self.min_chars}")
        if n > self.max_chars:
            return Rejection(text, "length", f"{n} characters; at most {self.max_chars}")
        return None

    @staticmethod
    def _repetition(text: str) -> Rejection | None:
        m = _CHAR_RUN.search(text)
        if m and m.group(1).strip():
            return Rejection(text, "repetition", f"{m.group(1)!r} repeated {len(m.group(0)) // len(m.group(1))} times")
        ws = words_of(text)
        for a, b in zip(ws, ws[1:]):
            if a == b:
                return Rejection(text, "repetition", f"word {a!r} twice in a row")
        for n in (4, 3, 2):
            seen: set[tuple[str, ...]] = set()
            for i in range(len(ws) - n + 1):
                gram = tuple(ws[i:i + n])
                if gram in seen:
                    return Rejection(text, "repetition", f"phrase {' '.join(gram)!r} twice")
                seen.add(gram)
        if len(ws) >= 6 and len(set(ws)) < len(ws) / 2:
            return Rejection(text, "repetition", f"{len(set(ws))} distinct words of {len(ws)}")
        return None

    @staticmethod
    def _unknown_entity(text: str, facts: PostFacts, vocab: tuple[set[str], set[str]]) -> Rejection | None:
        words, tags = vocab
        lowered_inputs = " ".join(fact_texts(facts)).casefold()
        for m in _URL.finditer(text):
            if m.group(0).casefold().rstrip(".,!?)") not in lowered_inputs:
                return Rejection(text, "unknown_entity", f"link {m.group(0)!r} is in no input")
        rest = _URL.sub(" ", text)
        for m in _MENTION.finditer(rest):
            if "@" + m.group(1).casefold().rstrip(".") not in lowered_inputs:
                return Rejection(text, "unknown_entity", f"mention @{m.group(1)} is in no input")
        rest = _MENTION.sub(" ", rest)
        for m in _HASHTAG.finditer(rest):
            tag = normalise_tag(m.group(1))
            if tag and tag not in tags:
                return Rejection(text, "unknown_entity", f"hashtag #{tag} is not made of input words")
        rest = _HASHTAG.sub(" ", rest)
        for m in _TOKEN.finditer(rest):
            tok = unicodedata.normalize("NFKC", m.group(0))
            parts = [p for p in words_of(tok)] or [tok.casefold()]
            known = all(p in words for p in parts) or tok.casefold() in words
            if known:
                continue
            if any(c.isdigit() for c in tok):
                return Rejection(text, "unknown_entity", f"number {tok!r} is in no input")
            letters = [c for c in tok if c.isalpha()]
            if not letters or not any(c.isupper() for c in letters):
                continue
            inner_caps = any(c.isupper() for c in letters[1:])
            sentence_start = m.start() == 0 or bool(_SENTENCE_END.search(rest[: m.start()]))
            if inner_caps or not sentence_start:
                what = "brand-like token" if inner_caps else "name"
                return Rejection(text, "unknown_entity", f"{what} {tok!r} is in no input")
        return None

    def _new_words(self, text: str, vocab) -> Rejection | None:
        if self.max_new_words is None:
            return None
        novel = new_words(text, vocab[0])
        if len(novel) > self.max_new_words:
            return Rejection(text, "new_words", f"{', '.join(novel)}: in no input (at most {self.max_new_words})")
        return None

    def _rules(self, text: str, facts: PostFacts, vocab) -> Rejection | None:
        return (self._length(text) or self._repetition(text) or self._unknown_entity(text, facts, vocab)
                or self._new_words(text, vocab))

    def _tag_rule(self, tag: str, vocab) -> Rejection | None:
        canon = normalise_tag(tag)
        if not canon or len(canon) > self.max_hashtag_chars:
            return Rejection(tag, "length", f"not a hashtag of 1-{self.max_hashtag_chars} tag characters")
        if canon not in vocab[1]:
            return Rejection(tag, "unknown_entity", f"hashtag #{canon} is not made of input words")
        return None

    def _toxic(self, texts: Sequence[str]) -> list[Rejection | None]:
        if self.toxicity is None or not texts:
            return [None] * len(texts)
        unique = list(dict.fromkeys(texts))  # a day's hashtags and label captions repeat across posts: score each once
        scores = list(self.toxicity(unique))
        if len(scores) != len(unique):
            raise ValueError(f"toxicity scorer returned {len(scores)} scores for {len(unique)} texts")
        by_text = dict(zip(unique, scores))
        out: list[Rejection | None] = []
        for text in texts:
            hate, off = _toxic_pair(by_text[text])
            if hate + off >= self.toxic_threshold:
                out.append(Rejection(text, "toxic", f"hatespeech {hate:.2f} + offensive {off:.2f} >= "
                                                    f"{self.toxic_threshold:g}"))
            else:
                out.append(None)
        return out

    # --- public API -----------------------------------------------------------------------------------
    def check(self, text: str, facts: PostFacts) -> Rejection | None:
        """Why ``text`` (a caption) must not be shown for ``facts``, or None when it passes."""
        rej = self._rules(text, facts, vocabulary(facts))
        return rej or self._toxic([text])[0]

    def check_hashtag(self, tag: str, facts: PostFacts) -> Rejection | None:
        """Why ``tag`` must not be suggested for ``facts`` (not a tag, or not made of input words), or None."""
        rej = self._tag_rule(tag, vocabulary(facts))
        return rej or self._toxic([tag])[0]

    def filter(self, suggestions: Suggestions, facts: PostFacts) -> Suggestions:
        """``suggestions`` with only what passes; what fails is appended to ``rejected`` with its reason."""
        return self.filter_many([suggestions], [facts])[0]

    def filter_many(self, batch: Sequence[Suggestions], posts: Sequence[PostFacts]) -> list[Suggestions]:
        """:meth:`filter` for a batch, with one toxicity call for every text that passed the other rules."""
        if len(batch) != len(posts):
            raise ValueError(f"{len(batch)} suggestions for {len(posts)} posts")
        staged: list[tuple[list[str], list[str], list[Rejection]]] = []  # per post: kept captions, tags, refusals
        pending: list[tuple[int, str, str]] = []  # (post index, "caption" | "hashtag", text)
        for i, (sugg, facts) in enumerate(zip(batch, posts)):
            vocab = vocabulary(facts)
            rejected: list[Rejection] = list(sugg.rejected)
            for text in sugg.captions:
                rej = self._rules(text, facts, vocab)
                if rej:
                    rejected.append(rej)
                else:
                    pending.append((i, "caption", text))
            seen: set[str] = set()
            for tag in sugg.hashtags:
                rej = self._tag_rule(tag, vocab)
                canon = normalise_tag(tag)
                if rej:
                    rejected.append(rej)
                elif canon not in seen:
                    seen.add(canon)
                    pending.append((i, "hashtag", canon))
            staged.append(([], [], rejected))
        verdicts = self._toxic([t for _, _, t in pending])
        for (i, what, text), rej in zip(pending, verdicts):
            if rej:
                staged[i][2].append(rej)
            elif what == "caption":
                staged[i][0].append(text)
            else:
                staged[i][1].append(text)
        return [replace(s, captions=c, hashtags=h, rejected=r) for s, (c, h, r) in zip(batch, staged)]


def toxicity_of(model) -> Toxicity:
    """A batch scorer from a text moderation model (anything with ``predict_proba(texts)`` over
    ``hatespeech, offensive, normal``, e.g. :class:`assets.moderation.text.TextModerator`)."""
    from assets.moderation.text import CLASSES

    hate, off = CLASSES.index("hatespeech"), CLASSES.index("offensive")

    def score(texts: Sequence[str]) -> list[dict[str, float]]:
        proba = model.predict_proba(list(texts))
        return [{"hatespeech": float(row[hate]), "offensive": float(row[off])} for row in proba]

    score.version = getattr(model, "version", "")  # type: ignore[attr-defined]
    return score


def moderation_toxicity(settings) -> Toxicity:
    """The scorer of the registered text moderation champion, loaded the way the live moderation worker
    loads it (``models:/socialpulse-text-moderation@champion`` from ``settings.mlflow``, cached under
    ``settings.home_abs / "models"``). Raises :class:`LookupError` when no champion is registered."""
    from assets.moderation.registry import load_champion

    model = load_champion(settings.mlflow, cache_dir=Path(settings.home_abs) / "models")
    return toxicity_of(model.warm())
