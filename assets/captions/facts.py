"""What the caption and alt-text generators work from, and what they give back (the interface both sides share).

``PostFacts`` holds only what the platform detected or the creator wrote: a generator must never name what is
not in them. ``Generator.generate`` takes a batch and returns one ``Suggestions`` per post, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(frozen=True)
class PostFacts:
    post_id: str
    kind: str  # "video" | "image" | "text"
    caption: str | None = None  # the creator's own words
    hashtags: tuple[str, ...] = ()  # the creator's own hashtags (canonical, without '#')
    labels: tuple[tuple[str, float], ...] = ()  # what the image / frames show: (ImageNet class name, probability), best first
    ocr_text: str | None = None  # text read in the image or frames
    transcript: str | None = None  # speech (videos)
    duration_s: float | None = None  # videos
    language: str | None = None
    #: the platform's hashtags for posts like this one (the existing suggester's ranking of the tags its nearest
    #: posts carry, score in [0, 1], best first): tags real posts use, never the post's own
    related_tags: tuple[tuple[str, float], ...] = ()


@dataclass
class Rejection:
    text: str
    reason: str  # "repetition" | "unknown_entity" | "length" | "toxic" | ...
    detail: str = ""


@dataclass
class Suggestions:
    post_id: str
    captions: list[str] = field(default_factory=list)  # accepted caption suggestions, best first
    hashtags: list[str] = field(default_factory=list)  # suggested hashtags (canonical, without '#'), best first
    generator: str = ""  # the generator's version, e.g. "grounded-1" or "llama-cpp:gemma3-270m-q4_k_m"
    fallback: bool = False  # True when the configured generator failed and the grounded output stands in
    rejected: list[Rejection] = field(default_factory=list)  # what the quality guard refused, with why


class Generator(Protocol):
    """Caption and hashtag suggestions for a batch of posts."""

    version: str

    def generate(self, posts: Sequence[PostFacts]) -> list[Suggestions]: ...
