"""The moderation policy: model scores in, one action with its reasons out (pure, no I/O besides loading).

Actions, strongest first: ``remove`` (hidden everywhere), ``review`` (held from recommendation and queued
for a human), ``limit`` (age-restricted: reachable by direct link, never recommended), ``allow``. Every
threshold comes from one TOML file (``policy.toml`` beside this module, or the file named by
``SOCIALPULSE_MODERATION_POLICY``); its content hash is the policy version recorded with each decision.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

ACTIONS = ("remove", "review", "limit", "allow")  # strongest first
SEVERITY = {a: i for i, a in enumerate(reversed(ACTIONS))}  # allow 0 .. remove 3
TEXT_SOURCES = ("caption", "ocr", "transcript")
DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.toml")
POLICY_ENV = "SOCIALPULSE_MODERATION_POLICY"


class PolicyError(ValueError):
    """The policy file is missing, unreadable or inconsistent; the message names the key."""


@dataclass(frozen=True)
class TextThresholds:
    remove_hatespeech: float
    review_hatespeech: float
    limit_offensive: float
    limit_toxic: float


@dataclass(frozen=True)
class NsfwThresholds:
    remove_nsfw: float
    limit_nsfw: float
    review_nsfw: float
    remove_min_frames: int = 1


@dataclass(frozen=True)
class Policy:
    text: TextThresholds
    image: NsfwThresholds
    video: NsfwThresholds
    on_media_error: str
    version: str


@dataclass(frozen=True)
class TextScores:
    """Class probabilities of one text source (hatespeech, offensive, normal)."""

    hatespeech: float
    offensive: float
    normal: float


@dataclass
class Scores:
    """Everything the policy looks at for one post."""

    text: Mapping[str, TextScores] = field(default_factory=dict)  # by source: caption / ocr / transcript
    media_kind: str | None = None  # "image" | "video" | None (text post, or media not analysed)
    frame_nsfw: Sequence[float] = ()  # one value for an image, one per sampled frame for a video
    media_error: str | None = None  # "reason: message" when the media could not be analysed


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: tuple[str, ...]

    @property
    def recommendable(self) -> bool:
        return self.action == "allow"


def _unit(section: dict, key: str, where: str) -> float:
    if key not in section:
        raise PolicyError(f"policy: [{where}] {key} is missing")
    value = section[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise PolicyError(f"policy: [{where}] {key} must be a number in [0, 1], got {value!r}")
    return float(value)


def _nsfw(section: dict, where: str) -> NsfwThresholds:
    t = NsfwThresholds(
        remove_nsfw=_unit(section, "remove_nsfw", where),
        limit_nsfw=_unit(section, "limit_nsfw", where),
        review_nsfw=_unit(section, "review_nsfw", where),
        remove_min_frames=int(section.get("remove_min_frames", 1)),
    )
    if not t.review_nsfw <= t.limit_nsfw <= t.remove_nsfw:
        raise PolicyError(f"policy: [{where}] needs review_nsfw <= limit_nsfw <= remove_nsfw, got {t}")
    if t.remove_min_frames < 1:
        raise PolicyError(f"policy: [{where}] remove_min_frames must be >= 1")
    return t


def parse_policy(content: str, source: str = "<string>") -> Policy:
    try:
        raw = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy {source}: not valid TOML: {exc}") from None
    for section in ("text", "image", "video", "media"):
        if not isinstance(raw.get(section), dict):
            raise PolicyError(f"policy {source}: section [{section}] is missing")
    t = raw["text"]
    text = TextThresholds(
        remove_hatespeech=_unit(t, "remove_hatespeech", "text"),
        review_hatespeech=_unit(t, "review_hatespeech", "text"),
        limit_offensive=_unit(t, "limit_offensive", "text"),
        limit_toxic=_unit(t, "limit_toxic", "text"),
    )
    if text.review_hatespeech > text.remove_hatespeech:
        raise PolicyError("policy: [text] review_hatespeech must not exceed remove_hatespeech")
    on_error = raw["media"].get("on_error", "review")
    if on_error not in ACTIONS:
        raise PolicyError(f"policy: [media] on_error must be one of {ACTIONS}, got {on_error!r}")
    return Policy(
        text=text,
        image=_nsfw(raw["image"], "image"),
        video=_nsfw(raw["video"], "video"),
        on_media_error=on_error,
        version="policy-" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:12],
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy from ``path``, else ``$SOCIALPULSE_MODERATION_POLICY``, else the bundled policy.toml."""
    p = Path(path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH)
    try:
        return parse_policy(p.read_text(encoding="utf-8"), str(p))
    except OSError as exc:
        raise PolicyError(f"policy file {p} cannot be read: {exc.strerror or exc}") from None


def _text_decision(policy: Policy, text: Mapping[str, TextScores]) -> list[tuple[str, str]]:
    t = policy.text
    out: list[tuple[str, str]] = []
    for source in TEXT_SOURCES:
        s = text.get(source)
        if s is None:
            continue
        if s.hatespeech >= t.remove_hatespeech:
            out.append(("remove", f"hate speech in {source}: {s.hatespeech:.2f} >= {t.remove_hatespeech:.2f}"))
        elif s.hatespeech >= t.review_hatespeech:
            out.append(("review", f"possible hate speech in {source}: {s.hatespeech:.2f} >= {t.review_hatespeech:.2f}"))
        if s.offensive >= t.limit_offensive:
            out.append(("limit", f"offensive language in {source}: {s.offensive:.2f} >= {t.limit_offensive:.2f}"))
        elif s.hatespeech + s.offensive >= t.limit_toxic and s.hatespeech < t.review_hatespeech:
            out.append(("limit", f"toxic language in {source}: {s.hatespeech + s.offensive:.2f} >= {t.limit_toxic:.2f}"))
    return out


def _media_decision(policy: Policy, scores: Scores) -> list[tuple[str, str]]:
    if scores.media_error:
        return [(policy.on_media_error, f"media could not be analysed: {scores.media_error}")]
    if scores.media_kind not in ("image", "video") or not scores.frame_nsfw:
        return []
    th = policy.image if scores.media_kind == "image" else policy.video
    what = "image" if scores.media_kind == "image" else "video frames"
    top = max(scores.frame_nsfw)
    hot = sum(1 for v in scores.frame_nsfw if v >= th.remove_nsfw)
    if hot >= th.remove_min_frames:
        return [("remove", f"nudity in {what}: {hot} at or above {th.remove_nsfw:.2f} (max {top:.2f})")]
    if hot:  # a single hot frame in a video: a human decides
        return [("review", f"nudity in {hot} video frame(s) of {len(scores.frame_nsfw)}: max {top:.2f}")]
    if top >= th.limit_nsfw:
        return [("limit", f"suggestive {what}: {top:.2f} >= {th.limit_nsfw:.2f}")]
    if top >= th.review_nsfw:
        return [("review", f"possibly suggestive {what}: {top:.2f} >= {th.review_nsfw:.2f}")]
    return []


def decide(policy: Policy, scores: Scores) -> Decision:
    """The strongest action any rule asks for, with every reason at that strength (and weaker ones after)."""
    found = _text_decision(policy, scores.text) + _media_decision(policy, scores)
    if not found:
        return Decision("allow", ())
    found.sort(key=lambda ar: -SEVERITY[ar[0]])
    return Decision(found[0][0], tuple(reason for _, reason in found))
