"""A deterministic synthetic world for SocialPulse: users, posts, media, interactions, comments, follows.

The world has planted structure that later assets must recover, and that structure is written as ground
truth under the lake's ``meta`` layer:

* K interest clusters (cooking, football, ...), each with its own hashtag vocabulary and caption words;
  every user has a primary cluster (``meta/synthetic_users``).
* ~5% of users are creators; their posts are mostly in their cluster, and each has a latent quality
  (Beta distributed) that drives watch completion and like/share/comment rates.
* Users view mostly posts of their own cluster (~78%), with a popularity skew and a recency decay.
* Follows skew to creators of the follower's cluster.
* A few burst hashtags whose post volume jumps x5-10 on known days (``meta/synthetic_bursts``).
* ~3% toxic posts whose captions are HateXplain hatespeech/offensive texts from the vendored sample
  (``meta/synthetic_posts`` holds is_toxic / toxic_label per post).
* Virality that is learnable but not trivial: a post's reach weight is its creator's popularity (creator
  history) x a lognormal draw (seen in its first hours' views) x its content's appeal (kind and, for
  videos, length: :data:`KIND_APPEAL`); from the day after it was made the feed multiplies it by a lift,
  ``exp(AMPLIFY * (quality - 0.4) + N(0, LIFT_NOISE))``: the algorithm amplifies posts that hold viewers,
  and quality shows early only through noisy completion and like rates, so early views alone miss the
  lift and the rest stays noise (``meta/synthetic_posts`` holds appeal and lift per post).

Generation is pure and vectorised (numpy + Arrow) and runs one UTC day at a time, so memory stays bounded
by one day of events plus a few numeric arrays per post. The same ``WorldConfig`` always gives
byte-identical rows: the world uses ``default_rng([seed, 0])`` and day ``d`` uses
``default_rng([seed, 1, d])`` (posts) and ``default_rng([seed, 2, d])`` (interactions); users' birth years
use ``default_rng([seed, 3])``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from socialpulse.contracts import (
    COMMENTS, FOLLOWS, IMPRESSIONS, INTERACTIONS, MEDIA, MIN_USER_AGE, POSTS, TS, USERS, TableContract,
)

# --- vocabulary -------------------------------------------------------------------------------------

#: cluster name -> (hashtags ordered by popularity, caption/comment words)
CLUSTERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cooking": (
        ("cooking", "recipe", "foodie", "homecooking", "baking", "pasta", "easyrecipe", "dinnerideas",
         "chef", "vegan", "foodtok", "mealprep"),
        ("pasta", "garlic", "sourdough", "oven", "sauce", "ramen", "dumplings", "spices", "dessert", "curry",
         "brunch", "tacos", "knife skills", "cast iron", "lasagna", "cookies", "salad", "noodles", "kitchen",
         "butter"),
    ),
    "football": (
        ("football", "soccer", "goal", "premierleague", "championsleague", "skills", "matchday", "messi",
         "ronaldo", "footballtiktok", "worldcup", "freekick"),
        ("goal", "striker", "free kick", "derby", "penalty", "keeper", "dribble", "volley", "stadium",
         "midfield", "tackle", "header", "transfer", "fans", "assist", "match", "boots", "pitch", "coach",
         "corner"),
    ),
    "gaming": (
        ("gaming", "gamer", "fortnite", "minecraft", "twitch", "esports", "gameplay", "speedrun", "nintendo",
         "playstation", "gamingsetup", "retrogaming"),
        ("boss fight", "speedrun", "controller", "ranked", "loot", "headshot", "build", "mod", "lobby",
         "clutch", "setup", "console", "respawn", "quest", "patch", "co-op", "pixel art", "stream", "glitch",
         "level"),
    ),
    "travel": (
        ("travel", "wanderlust", "travelgram", "roadtrip", "backpacking", "beach", "travelvlog", "adventure",
         "hiddengems", "solotravel", "citybreak", "mountains"),
        ("sunset", "hostel", "road trip", "beach", "old town", "hike", "waterfall", "street food", "train",
         "island", "passport", "viewpoint", "market", "cabin", "lagoon", "airport", "ferry", "temple",
         "canyon", "glacier"),
    ),
    "music": (
        ("music", "newmusic", "cover", "guitar", "singing", "producer", "hiphop", "piano", "livemusic",
         "songwriter", "rap", "beatmaker"),
        ("guitar", "chorus", "beat", "piano", "vocals", "studio", "verse", "melody", "drums", "bassline",
         "mixtape", "cover", "riff", "concert", "synth", "harmony", "lyrics", "album", "open mic", "freestyle"),
    ),
    "pets": (
        ("pets", "dogsoftiktok", "catsoftiktok", "puppy", "kitten", "dog", "cat", "petlover", "rescuedog",
         "cute", "doglife", "catlife"),
        ("puppy", "kitten", "golden retriever", "zoomies", "treats", "tabby", "leash", "vet visit", "paws",
         "fetch", "cat tower", "rescue", "corgi", "nap", "belly rubs", "squeaky toy", "husky", "whiskers",
         "dog park", "parrot"),
    ),
    "fitness": (
        ("fitness", "gym", "workout", "fitnessmotivation", "legday", "running", "yoga", "homeworkout",
         "bodybuilding", "cardio", "gains", "pilates"),
        ("deadlift", "squats", "leg day", "protein", "cardio", "5k run", "yoga flow", "pull ups", "rest day",
         "bench press", "stretching", "kettlebell", "core", "plank", "marathon", "warm up", "mobility",
         "hiit", "dumbbells", "personal best"),
    ),
    "fashion": (
        ("fashion", "ootd", "style", "outfit", "streetwear", "thrift", "fashiontiktok", "grwm", "vintage",
         "sneakers", "lookbook", "makeup"),
        ("outfit", "thrift haul", "sneakers", "denim", "jacket", "vintage", "accessories", "capsule wardrobe",
         "lipstick", "tote bag", "blazer", "boots", "linen", "street style", "earrings", "hoodie",
         "skincare", "dress", "sunglasses", "fit check"),
    ),
}
GENERIC_TAGS = ("fyp", "viral", "foryou")
CAPTION_TEMPLATES = (
    "my {a} {b} today", "{a} and {b} vibes", "who else loves {a}?", "day {n} of {a}", "trying {a} with {b}",
    "best {a} ever", "{a} tips: {b} and {c}", "pov: your {a} just hit different", "rating {a} so you don't have to",
    "quick {a} before work", "{a} > {b}, change my mind", "this {a} took {n} tries", "weekend = {a} + {b}",
    "nobody talks about {a} enough", "a little {a} {b} moment", "honest review of {a}",
)
COMMENT_TEMPLATES = (
    "love the {a}", "where did you get the {a}?", "the {a} is amazing", "need more {a} content",
    "{a} goals", "tried the {a}, worked!", "the {a} part 😂", "omg the {a}",
)
GENERIC_COMMENTS = (
    "love this", "so good", "wow", "🔥🔥🔥", "need to try this", "this made my day", "how??", "first!",
    "underrated", "tutorial please", "saving this", "can't stop watching", "this is the content i'm here for",
    "part 2 please", "so satisfying", "10/10", "hahaha", "facts", "obsessed", "you never miss",
)
COUNTRIES = ("US", "GB", "IN", "CA", "AU", "NG", "PH", "DE", "BR", "MX")
COUNTRY_P = (0.30, 0.10, 0.14, 0.06, 0.05, 0.07, 0.08, 0.06, 0.08, 0.06)
LANGUAGES = ("en", "es", "pt", "fr", "de")
LANGUAGE_P = (0.85, 0.05, 0.04, 0.03, 0.03)
KIND_P = (0.60, 0.25, 0.15)  # video / image / text, in contracts.POST_KINDS order

#: the vendored HateXplain sample the toxic captions come from (repo-relative, works without /work/shared)
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"
HATEXPLAIN_SAMPLE = SAMPLES_DIR / "hatexplain"

# behaviour constants (why: documented next to each use)
NONCREATOR_QUALITY = 0.2  # posts by ordinary users: lower quality than the average creator (Beta(2,3) mean 0.4)
EXPLORE_SHARE = 0.25  # views drawn from the global feed; own-cluster share = 0.75 + 0.25 * cluster share
RECENCY_TAU_DAYS = 2.0  # feed weight decays as exp(-age / tau)
FOLLOW_SHARE, UNFOLLOW_SHARE = 0.025, 0.005  # of each day's interaction budget
KIND_APPEAL = (1.25, 1.0, 0.6)  # reach weight of a video / image / text post (contracts.POST_KINDS order)
SHORT_VIDEO_APPEAL = 0.3  # a 15 s video x1.15, a 60 s one x0.85: shorter clips are finished and replayed more
AMPLIFY, LIFT_NOISE = 2.0, 0.6  # the feed's lift from day 1 on: exp(AMPLIFY * (quality - 0.4) + N(0, LIFT_NOISE))
MAX_AGE = 65  # the oldest synthetic user (the youngest: contracts.MIN_USER_AGE)
BIRTH_YEAR_UNDECLARED = 0.08  # share of users without a birth year (it is optional at sign-up)
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US


@dataclass(frozen=True)
class WorldConfig:
    """Size and seed of a synthetic world; ``interactions`` defaults to 10 x posts."""

    users: int
    posts: int
    days: int
    seed: int = 7
    start: dt.date = dt.date(2026, 1, 1)
    interactions: int | None = None
    creator_share: float = 0.05
    creator_in_cluster: float = 0.9  # share of a creator's posts in its own cluster
    toxic_share: float = 0.03
    hx_normal_share: float = 0.02  # share of non-toxic posts captioned with a HateXplain "normal" text
    n_bursts: int = 3
    toxic_splits: tuple[str, ...] = ("val", "test")  # not train: a toxicity model trained on train stays honest

    def __post_init__(self) -> None:
        if self.users < 2 or self.posts < 0 or self.days < 1:
            raise ValueError("WorldConfig needs users >= 2, posts >= 0, days >= 1")
        if self.interactions is None:
            object.__setattr__(self, "interactions", 10 * self.posts)

    @property
    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


@dataclass
class World:
    """Day-independent state: users, creators, vocabularies, caption pools and the planted bursts."""

    config: WorldConfig
    cluster_names: tuple[str, ...]
    user_cluster: np.ndarray  # int16 per user
    is_creator: np.ndarray  # bool per user
    quality: np.ndarray  # float per user; NaN for non-creators
    activity: np.ndarray  # float per user: how much a user views / follows
    popularity: np.ndarray  # float per user; 0 for non-creators
    users: pa.Table  # the bronze users table
    tag_names: pa.Array  # global tag id -> string (cluster tags, then generic tags)
    tags_per_cluster: int
    captions: pa.Array  # K * pool generated captions, then toxic texts, then HateXplain normal texts
    caption_pool: int
    toxic_texts: list[dict]
    normal_texts: list[dict]
    comments: pa.Array  # K * pool comment texts
    comment_pool: int
    bursts: list[dict]  # hashtag, tag_id, cluster, day_index, multiplier
    posts_per_day: np.ndarray
    interactions_per_day: np.ndarray


@dataclass
class DayBatch:
    """One UTC day of bronze tables (posts, media, interactions, comments, follows) plus its ground truth."""

    day_index: int
    date: dt.date
    tables: dict[str, pa.Table]
    truth_posts: pa.Table
    burst_counts: list[dict] = field(default_factory=list)


# --- small vectorised helpers -----------------------------------------------------------------------


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Deterministic string ids like ``u000042``, built in Arrow (fast for millions of rows)."""
    digits = pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _user_ids(idx: np.ndarray, cfg: WorldConfig) -> pa.Array:
    return _ids("u", idx + 1, max(6, len(str(cfg.users))))


def _post_ids(idx: np.ndarray, cfg: WorldConfig) -> pa.Array:
    return _ids("p", idx + 1, max(7, len(str(cfg.posts))))


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64)).cast(TS)


def _dates(day: dt.date, n: int) -> pa.Array:
    return pa.array(np.full(n, np.datetime64(day.isoformat(), "D")))


def _day_start_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_US


def _split(total: int, parts: int) -> np.ndarray:
    """``total`` spread over ``parts`` as evenly as possible (exact sum)."""
    base, rest = divmod(total, parts)
    out = np.full(parts, base, dtype=np.int64)
    out[:rest] += 1
    return out


def _pick(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """Draw ``n`` indices with probabilities given by cumulative weights ``cum`` (inverse CDF)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    u = rng.random(n) * cum[-1]
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


# UTC hour weights: a daily cycle peaking at 20:00 UTC (evening in Europe, afternoon in the Americas)
_HOUR_W = 1.0 + 0.85 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)
_HOUR_CUM = np.cumsum(_HOUR_W)


def _times_in_day(rng: np.random.Generator, day: dt.date, n: int) -> np.ndarray:
    """``n`` timestamps (us since epoch) inside ``day``, following the daily activity cycle."""
    hours = _pick(rng, _HOUR_CUM, n)
    return _day_start_us(day) + hours * 3600 * SECOND_US + rng.integers(0, 3600 * SECOND_US, n)


def read_hatexplain_texts(folder: Path = HATEXPLAIN_SAMPLE, splits: tuple[str, ...] = ("val", "test")) -> list[dict]:
    """Rows (post_id, text, label) of the vendored HateXplain sample for the given splits, in file order."""
    rows = []
    for split in splits:
        with open(folder / f"{split}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    rows.append({"post_id": r["post_id"], "text": r["text"], "label": r["label"]})
    return rows


# --- the world ---------------------------------------------------------------------------------------


def _fill(template: str, words: tuple[str, ...], rng: np.random.Generator) -> str:
    a, b, c = (words[i] for i in rng.choice(len(words), 3, replace=False))
    return template.format(a=a, b=b, c=c, n=int(rng.integers(2, 100)))


def _birth_years(rng: np.random.Generator, n: int, start: dt.date) -> pa.Array:
    """Users' birth years: ages 13-65 at the world's start, skewed young as a short-video audience is (mode
    about 19, median about 23); :data:`BIRTH_YEAR_UNDECLARED` of users leave it empty. A generator of its own,
    so adding ages shifts no other draw of the world."""
    age = np.minimum(MIN_USER_AGE + rng.gamma(2.0, 6.0, n), MAX_AGE).astype(np.int16)
    undeclared = rng.random(n) < BIRTH_YEAR_UNDECLARED
    return pa.array(np.int16(start.year) - age, pa.int16(), mask=undeclared)


def build_world(cfg: WorldConfig) -> World:
    """Draw everything that does not depend on the day: users, creators, pools, bursts (pure)."""
    rng = np.random.default_rng([cfg.seed, 0])
    names = tuple(CLUSTERS)
    k = len(names)
    n = cfg.users

    # clusters of mildly unequal size, so popularity is not uniform across interests
    cluster_p = rng.dirichlet(np.full(k, 8.0))
    user_cluster = rng.choice(k, size=n, p=cluster_p).astype(np.int16)

    # creators: ~creator_share of each cluster, at least one per cluster (so every cluster has supply)
    is_creator = np.zeros(n, dtype=bool)
    order = rng.permutation(n)
    for c in range(k):
        members = order[user_cluster[order] == c]
        if len(members) == 0:  # tiny worlds: reassign one user so the cluster exists
            members = order[~is_creator[order]][:1]
            user_cluster[members] = c
        take = max(1, int(round(cfg.creator_share * len(members))))
        is_creator[members[:take]] = True
    quality = np.full(n, np.nan)
    quality[is_creator] = rng.beta(2.0, 3.0, is_creator.sum())
    # popularity: heavy-tailed and correlated with quality (good creators tend to be bigger)
    popularity = np.zeros(n)
    popularity[is_creator] = rng.lognormal(0.0, 1.0, is_creator.sum()) * (0.3 + quality[is_creator])
    activity = rng.lognormal(0.0, 1.0, n)

    start_us = _day_start_us(cfg.start)
    users = pa.table(
        {
            "user_id": _user_ids(np.arange(n), cfg),
            "handle": _ids("user", np.arange(n) + 1, max(6, len(str(n)))),  # neutral: no cluster leak
            "country": pa.array(np.asarray(COUNTRIES)[rng.choice(len(COUNTRIES), n, p=COUNTRY_P)]),
            "language": pa.array(np.asarray(LANGUAGES)[rng.choice(len(LANGUAGES), n, p=LANGUAGE_P)]),
            "is_creator": pa.array(is_creator),
            "created_at": _ts(start_us - rng.integers(1, 365 * DAY_US, n)),  # all registered before day 0
            "birth_year": _birth_years(np.random.default_rng([cfg.seed, 3]), n, cfg.start),
        }
    )

    tags = [t for c in names for t in CLUSTERS[c][0]] + list(GENERIC_TAGS)
    tpc = len(CLUSTERS[names[0]][0])
    pool = 400
    captions = [_fill(CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))], CLUSTERS[c][1], rng)
                for c in names for _ in range(pool)]
    cpool = 120
    comments = []
    for c in names:
        for _ in range(cpool):
            if rng.random() < 0.5:
                comments.append(GENERIC_COMMENTS[rng.integers(len(GENERIC_COMMENTS))])
            else:
                comments.append(_fill(COMMENT_TEMPLATES[rng.integers(len(COMMENT_TEMPLATES))], CLUSTERS[c][1], rng))
    hx = read_hatexplain_texts(HATEXPLAIN_SAMPLE, cfg.toxic_splits)
    toxic = [r for r in hx if r["label"] in ("hatespeech", "offensive")]
    normal = [r for r in hx if r["label"] == "normal"]

    # bursts: distinct clusters, a mid-popularity tag (not the cluster's head tag), distinct days after day 0
    bursts = []
    nb = min(cfg.n_bursts, k)
    b_clusters = rng.choice(k, nb, replace=False)
    candidate_days = np.arange(1, cfg.days) if cfg.days > 1 else np.arange(cfg.days)
    b_days = rng.choice(candidate_days, nb, replace=len(candidate_days) < nb)
    for c, d in zip(b_clusters, b_days):
        local = int(rng.integers(3, 8))
        bursts.append(
            {
                "hashtag": CLUSTERS[names[c]][0][local],
                "tag_id": int(c) * tpc + local,
                "cluster": int(c),
                "day_index": int(d),
                "multiplier": float(round(rng.uniform(5.0, 10.0), 1)),
            }
        )

    return World(
        config=cfg,
        cluster_names=names,
        user_cluster=user_cluster,
        is_creator=is_creator,
        quality=quality,
        activity=activity,
        popularity=popularity,
        users=users,
        tag_names=pa.array(tags),
        tags_per_cluster=tpc,
        captions=pa.array(captions + [r["text"] for r in toxic] + [r["text"] for r in normal]),
        caption_pool=pool,
        toxic_texts=toxic,
        normal_texts=normal,
        comments=pa.array(comments),
        comment_pool=cpool,
        bursts=bursts,
        posts_per_day=_split(cfg.posts, cfg.days),
        interactions_per_day=_split(cfg.interactions, cfg.days),
    )


@dataclass
class _PostState:
    """Numeric attributes of every post generated so far (what the feed needs on later days)."""

    cluster: np.ndarray
    weight: np.ndarray
    day: np.ndarray
    ts: np.ndarray
    kind: np.ndarray
    duration: np.ndarray
    author: np.ndarray
    quality: np.ndarray
    lift: np.ndarray
    n: int = 0

    @classmethod
    def empty(cls, total: int) -> "_PostState":
        return cls(
            cluster=np.zeros(total, np.int16), weight=np.zeros(total), day=np.zeros(total, np.int32),
            ts=np.zeros(total, np.int64), kind=np.zeros(total, np.int8), duration=np.zeros(total, np.float32),
            author=np.zeros(total, np.int64), quality=np.zeros(total), lift=np.ones(total),
        )


# --- one day: posts ----------------------------------------------------------------------------------


def _posts_day(world: World, state: _PostState, d: int) -> tuple[dict[str, pa.Table], pa.Table, list[dict]]:
    cfg = world.config
    rng = np.random.default_rng([cfg.seed, 1, d])
    day = cfg.dates[d]
    n = int(world.posts_per_day[d])
    k = len(world.cluster_names)
    tpc = world.tags_per_cluster
    idx = state.n + np.arange(n)

    # authors: 85% of posts from creators (by popularity), the rest from ordinary users
    creators = np.flatnonzero(world.is_creator)
    others = np.flatnonzero(~world.is_creator)
    from_creator = (rng.random(n) < 0.85) | (len(others) == 0)
    author = np.empty(n, dtype=np.int64)
    author[from_creator] = creators[_pick(rng, np.cumsum(world.popularity[creators]), int(from_creator.sum()))]
    if len(others):
        author[~from_creator] = others[rng.integers(0, len(others), int((~from_creator).sum()))]
    stay = np.where(from_creator, rng.random(n) < cfg.creator_in_cluster, rng.random(n) < 0.7)
    cluster = np.where(stay, world.user_cluster[author], rng.integers(0, k, n)).astype(np.int16)
    quality = np.where(from_creator, world.quality[author], NONCREATOR_QUALITY)
    weight = np.where(from_creator, world.popularity[author], 0.2) * rng.lognormal(0.0, 0.5, n)

    kind = _pick(rng, np.cumsum(KIND_P), n).astype(np.int8)
    duration = np.where(kind == 0, np.round(rng.uniform(15.0, 60.0, n), 1), np.nan).astype(np.float32)
    ts = _times_in_day(rng, day, n)
    appeal, lift = _virality(np.random.default_rng([cfg.seed, 4, d]), kind, duration, quality)
    weight = weight * appeal

    # hashtags: 1-4 cluster tags with a Zipf-like popularity, 20% a generic tag, plus burst slots
    zipf = np.cumsum(1.0 / np.arange(1, tpc + 1) ** 0.8)
    n_tags = rng.integers(1, 5, n)
    slots = np.full((n, 5 + len(world.bursts)), -1, dtype=np.int64)
    local = _pick(rng, zipf, n * 4).reshape(n, 4)
    slots[:, :4] = np.where(np.arange(4) < n_tags[:, None], cluster[:, None].astype(np.int64) * tpc + local, -1)
    generic = rng.random(n) < 0.2
    slots[generic, 4] = k * tpc + rng.integers(0, len(GENERIC_TAGS), int(generic.sum()))
    burst_counts = []
    burst_tag = np.full(n, None, dtype=object)
    for j, b in enumerate(world.bursts):
        if b["day_index"] != d:
            continue
        has = (slots == b["tag_id"]).any(axis=1)
        base = int(has.sum())
        extra = int(round((b["multiplier"] - 1.0) * max(base, 1)))
        # prefer posts of the tag's own cluster, then any other post without the tag
        perm = rng.permutation(n)
        own = perm[(cluster[perm] == b["cluster"]) & ~has[perm]]
        rest = perm[(cluster[perm] != b["cluster"]) & ~has[perm]]
        chosen = np.concatenate([own, rest])[:extra]
        slots[chosen, 5 + j] = b["tag_id"]
        burst_tag[chosen] = b["hashtag"]
        burst_counts.append({**b, "baseline_count": base, "burst_count": base + len(chosen)})
    slots.sort(axis=1)
    slots[:, 1:][slots[:, 1:] == slots[:, :-1]] = -1  # drop duplicates (sorted rows: equal neighbours)
    valid = slots >= 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    hashtags = pa.ListArray.from_arrays(pa.array(offsets), world.tag_names.take(pa.array(slots[valid])))

    # captions: toxic HateXplain texts, a few HateXplain normal texts, else a generated cluster caption
    n_tox, n_norm = len(world.toxic_texts), len(world.normal_texts)
    toxic = (rng.random(n) < cfg.toxic_share) & (n_tox > 0)
    hx_normal = ~toxic & (rng.random(n) < cfg.hx_normal_share) & (n_norm > 0)
    cap = cluster.astype(np.int64) * world.caption_pool + rng.integers(0, world.caption_pool, n)
    tox_i = rng.integers(0, max(n_tox, 1), n)
    norm_i = rng.integers(0, max(n_norm, 1), n)
    base_off = k * world.caption_pool
    cap = np.where(toxic, base_off + tox_i, np.where(hx_normal, base_off + n_tox + norm_i, cap))
    text = world.captions.take(pa.array(cap))
    joined = pc.binary_join(hashtags, " #")
    caption = pc.if_else(
        pc.greater(pc.list_value_length(hashtags), 0),
        pc.binary_join_element_wise(text, pc.binary_join_element_wise("#", joined, ""), " "),
        text,
    )

    post_ids = _post_ids(idx, cfg)
    kinds = np.asarray(("video", "image", "text"))
    ext = np.where(kind == 0, ".mp4", ".jpg")
    has_media = kind != 2
    uri_all = pc.binary_join_element_wise("synthetic://media/", post_ids, pa.array(ext), "")
    uri = pc.if_else(pa.array(has_media), uri_all, pa.scalar(None, pa.string()))
    posts = pa.table(
        {
            "post_id": post_ids,
            "author_id": _user_ids(author, cfg),
            "kind": pa.array(kinds[kind]),
            "caption": caption,
            "hashtags": hashtags,
            "media_uri": uri,
            "duration_s": pa.array(duration, mask=np.isnan(duration)),
            "language": pa.array(np.full(n, "en")),  # captions are English (generated or HateXplain)
            "created_at": _ts(ts),
            "event_date": _dates(day, n),
        }
    )

    m_idx = np.flatnonzero(has_media)
    m_uri = uri_all.take(pa.array(m_idx))
    m_size = np.where(
        kind[m_idx] == 0,
        (np.nan_to_num(duration[m_idx].astype(np.float64)) * rng.uniform(150e3, 400e3, len(m_idx))).astype(np.int64),
        rng.integers(80_000, 900_000, len(m_idx)),
    )
    # no bytes exist for synthetic media: the "content address" is the sha256 of its uri (stable, unique)
    sha = [hashlib.sha256(u.encode()).hexdigest() for u in m_uri.to_pylist()]
    media = pa.table(
        {
            "media_id": pc.binary_join_element_wise("m", post_ids.take(pa.array(m_idx)), ""),
            "post_id": post_ids.take(pa.array(m_idx)),
            "uri": m_uri,
            "content_type": pa.array(np.where(kind[m_idx] == 0, "video/mp4", "image/jpeg")),
            "size_bytes": pa.array(m_size, pa.int64()),
            "sha256": pa.array(sha, pa.string()),
            "created_at": _ts(ts[m_idx]),
            "event_date": _dates(day, len(m_idx)),
        }
    )

    tox_label = np.array([r["label"] for r in world.toxic_texts] or ["hatespeech"], dtype=object)[tox_i]
    tox_src = np.array([r["post_id"] for r in world.toxic_texts] or [""], dtype=object)[tox_i]
    norm_src = np.array([r["post_id"] for r in world.normal_texts] or [""], dtype=object)[norm_i]
    names = np.asarray(world.cluster_names)
    truth = pa.table(
        {
            "post_id": post_ids,
            "author_id": _user_ids(author, cfg),
            "cluster": pa.array(cluster),
            "cluster_name": pa.array(names[cluster]),
            "is_toxic": pa.array(toxic),
            "toxic_label": pa.array(np.where(toxic, tox_label, "normal").astype(str)),
            "caption_source": pa.array(np.where(toxic | hx_normal, "hatexplain", "generated")),
            "hatexplain_post_id": pa.array(np.where(toxic, tox_src, np.where(hx_normal, norm_src, None)), pa.string()),
            "burst_hashtag": pa.array(burst_tag, pa.string()),
            "quality": pa.array(quality),
            "appeal": pa.array(appeal),
            "lift": pa.array(lift),
            "event_date": _dates(day, n),
        }
    )

    sl = slice(state.n, state.n + n)
    state.cluster[sl], state.weight[sl], state.day[sl], state.ts[sl] = cluster, weight, d, ts
    state.kind[sl], state.duration[sl], state.author[sl], state.quality[sl] = kind, duration, author, quality
    state.lift[sl] = lift
    state.n += n
    return {"posts": posts, "media": media}, truth, burst_counts


def _virality(rng: np.random.Generator, kind: np.ndarray, duration: np.ndarray,
              quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each post's content appeal (a reach multiplier from the start) and its later lift (from the day after
    it was made), drawn from their own generator so the rest of the world's draws stay as they were."""
    appeal = np.asarray(KIND_APPEAL)[kind]
    length = np.clip((np.nan_to_num(duration.astype(np.float64), nan=15.0) - 15.0) / 45.0, 0.0, 1.0)
    appeal = np.where(kind == 0, appeal * (1.0 + SHORT_VIDEO_APPEAL * (0.5 - length)), appeal)
    lift = np.exp(AMPLIFY * (quality - 0.4) + rng.normal(0.0, LIFT_NOISE, len(kind)))
    return appeal, lift


# --- one day: interactions ---------------------------------------------------------------------------


@dataclass
class _FollowState:
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # follower * users + followee


def _interactions_day(world: World, posts: _PostState, follows: _FollowState, d: int) -> dict[str, pa.Table]:
    cfg = world.config
    rng = np.random.default_rng([cfg.seed, 2, d])
    day = cfg.dates[d]
    day_start = _day_start_us(day)
    day_end = day_start + DAY_US  # exclusive
    k = len(world.cluster_names)
    nu = cfg.users
    budget = int(world.interactions_per_day[d])
    n_unfollow = min(int(round(budget * UNFOLLOW_SHARE)), len(follows.edges))
    n_follow = int(round(budget * FOLLOW_SHARE))
    n_post_events = budget - n_follow - n_unfollow if posts.n else 0
    act_cum = np.cumsum(world.activity)

    # --- views: viewer by activity, post from own cluster (or the global feed), weighted by popularity
    # and recency; only posts that exist by today can be seen
    p_n = posts.n
    m = n_post_events
    viewer = _pick(rng, act_cum, m)
    vc = world.user_cluster[viewer]
    w = (posts.weight[:p_n] * np.where(posts.day[:p_n] < d, posts.lift[:p_n], 1.0)
         * np.exp(-(d - posts.day[:p_n] + 0.5) / RECENCY_TAU_DAYS))
    explore = rng.random(m) < EXPLORE_SHARE
    post = np.full(m, -1, dtype=np.int64)
    if m:
        by_cluster = np.argsort(posts.cluster[:p_n], kind="stable")
        bounds = np.searchsorted(posts.cluster[:p_n][by_cluster], np.arange(k + 1))
        for c in range(k):
            members = by_cluster[bounds[c]: bounds[c + 1]]
            sel = np.flatnonzero(~explore & (vc == c))
            if len(members) == 0:
                explore[sel] = True  # nothing in this cluster yet: fall back to the global feed
                continue
            post[sel] = members[_pick(rng, np.cumsum(w[members]), len(sel))]
        sel = np.flatnonzero(explore)
        post[sel] = _pick(rng, np.cumsum(w), len(sel))
    q = posts.quality[post] if m else np.zeros(0)
    match = posts.cluster[post] == vc if m else np.zeros(0, bool)
    # completion: Beta around a mean that rises with creator quality and interest match
    mu = np.clip(0.2 + 0.55 * q + 0.15 * match, 0.05, 0.95)
    completion = rng.beta(mu * 5.0, (1.0 - mu) * 5.0)
    p_like = 0.02 + 0.35 * q * completion + 0.03 * match
    p_share = 0.003 + 0.06 * q * completion
    p_comment = 0.004 + 0.05 * q * completion
    # keep as many views as the budget allows once their expected likes/shares/comments are counted
    v = int(np.searchsorted(np.cumsum(1.0 + p_like + p_share + p_comment), n_post_events, side="right"))
    viewer, post, q, completion = viewer[:v], post[:v], q[:v], completion[:v]
    p_like, p_share, p_comment = p_like[:v], p_share[:v], p_comment[:v]
    dur = posts.duration[post]
    # videos: seconds watched <= duration; images/text: dwell time of up to 12 s
    watch = np.where(posts.kind[post] == 0, completion * dur, completion * 12.0).astype(np.float32)
    watch = np.round(watch, 2)
    view_ts = _times_in_day(rng, day, v)
    p_ts = posts.ts[post]
    same_day = posts.day[post] == d
    # a post made today can only be seen after it was made
    after = p_ts + 1 + (rng.random(v) * (day_end - 1 - p_ts - 1)).astype(np.int64)
    view_ts = np.where(same_day, after, view_ts)

    def reaction(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = np.flatnonzero(rng.random(v) < p)
        t = view_ts[hit] + (watch[hit].astype(np.float64) * SECOND_US).astype(np.int64)
        t = np.minimum(t + rng.integers(0, 60 * SECOND_US, len(hit)), day_end - 1)
        return hit, t

    like_i, like_ts = reaction(p_like)
    share_i, share_ts = reaction(p_share)
    com_i, com_ts = reaction(p_comment)

    # --- follows: mostly creators of the follower's cluster, by popularity x quality
    follower = _pick(rng, act_cum, n_follow)
    creators = np.flatnonzero(world.is_creator)
    appeal = world.popularity * np.nan_to_num(0.5 + world.quality, nan=0.0)
    followee = creators[_pick(rng, np.cumsum(appeal[creators]), n_follow)]
    own = rng.random(n_follow) < 0.8
    for c in range(k):
        cc = creators[world.user_cluster[creators] == c]
        sel = np.flatnonzero(own & (world.user_cluster[follower] == c))
        if len(cc) and len(sel):
            followee[sel] = cc[_pick(rng, np.cumsum(appeal[cc]), len(sel))]
    key = follower * nu + followee
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(n_follow, bool)
    keep[first] = True
    keep &= (follower != followee) & ~np.isin(key, follows.edges)  # no self-follows, no re-follows
    follower, followee, key = follower[keep], followee[keep], key[keep]
    follow_ts = _times_in_day(rng, day, len(follower))
    # unfollows: edges made on earlier days, each at most once
    gone = rng.choice(len(follows.edges), n_unfollow, replace=False) if n_unfollow else np.zeros(0, np.int64)
    gone_keys = follows.edges[gone]
    unf_ts = _times_in_day(rng, day, n_unfollow)
    remaining = np.delete(follows.edges, gone)
    follows.edges = np.concatenate([remaining, key])

    # --- assemble, order by time, number the events
    blocks = [
        (0, viewer, post, np.full(v, -1), watch, view_ts),
        (1, viewer[like_i], post[like_i], np.full(len(like_i), -1), None, like_ts),
        (2, viewer[share_i], post[share_i], np.full(len(share_i), -1), None, share_ts),
        (3, viewer[com_i], post[com_i], np.full(len(com_i), -1), None, com_ts),
        (4, follower, np.full(len(follower), -1), followee, None, follow_ts),
        (5, gone_keys // nu, np.full(n_unfollow, -1), gone_keys % nu, None, unf_ts),
    ]
    etype = np.concatenate([np.full(len(b[1]), b[0], np.int8) for b in blocks])
    user = np.concatenate([b[1] for b in blocks]).astype(np.int64)
    epost = np.concatenate([b[2] for b in blocks]).astype(np.int64)
    target = np.concatenate([b[3] for b in blocks]).astype(np.int64)
    ewatch = np.concatenate(
        [b[4] if b[4] is not None else np.full(len(b[1]), np.nan, np.float32) for b in blocks]
    ).astype(np.float32)
    ets = np.concatenate([b[5] for b in blocks]).astype(np.int64)
    order = np.lexsort((user, etype, ets))
    etype, user, epost, target, ewatch, ets = (a[order] for a in (etype, user, epost, target, ewatch, ets))
    total = len(ets)
    width = max(7, len(str(2 * int(world.interactions_per_day.max()) + 10)))
    event_ids = _ids(f"e{day:%Y%m%d}-", np.arange(1, total + 1), width)
    null_str = pa.scalar(None, pa.string())
    has_post = epost >= 0
    has_target = target >= 0
    user_ids = _user_ids(user, cfg)
    post_ids = pc.if_else(pa.array(has_post), _post_ids(np.maximum(epost, 0), cfg), null_str)
    target_ids = pc.if_else(pa.array(has_target), _user_ids(np.maximum(target, 0), cfg), null_str)
    interactions = pa.table(
        {
            "event_id": event_ids,
            "event_type": pa.array(np.asarray(("view", "like", "share", "comment", "follow", "unfollow"))[etype]),
            "user_id": user_ids,
            "post_id": post_ids,
            "target_user_id": target_ids,
            "watch_time_s": pa.array(ewatch, mask=np.isnan(ewatch)),
            "created_at": _ts(ets),
            "event_date": _dates(day, total),
        }
    )

    ci = np.flatnonzero(etype == 3)
    ci_arr = pa.array(ci)
    text_idx = posts.cluster[epost[ci]].astype(np.int64) * world.comment_pool + rng.integers(0, world.comment_pool, len(ci))
    comments = pa.table(
        {
            "comment_id": event_ids.take(ci_arr),
            "post_id": post_ids.take(ci_arr),
            "user_id": user_ids.take(ci_arr),
            "text": world.comments.take(pa.array(text_idx)),
            "created_at": _ts(ets[ci]),
            "event_date": _dates(day, len(ci)),
        }
    )
    fi = np.flatnonzero(etype >= 4)
    fi_arr = pa.array(fi)
    follows_t = pa.table(
        {
            "event_id": event_ids.take(fi_arr),
            "follower_id": user_ids.take(fi_arr),
            "followee_id": target_ids.take(fi_arr),
            "action": pa.array(np.where(etype[fi] == 4, "follow", "unfollow")),
            "created_at": _ts(ets[fi]),
            "event_date": _dates(day, len(fi)),
        }
    )
    return {"interactions": interactions, "comments": comments, "follows": follows_t,
            "impressions": _impressions(day, etype, user, epost, ets, event_ids, user_ids, post_ids)}


#: the logging policy of the synthetic world: every view was served to the viewer IMPRESSION_LEAD_US
#: before it started, in one feed request per viewer and day (one microsecond: a view of a post made today
#: can start a microsecond after the post was made, and nothing is served before it exists)
SYNTHETIC_POLICY = "synthetic-policy"
IMPRESSION_LEAD_US = 1


def _impressions(day: dt.date, etype: np.ndarray, user: np.ndarray, epost: np.ndarray, ets: np.ndarray,
                 event_ids: pa.Array, user_ids: pa.Array, post_ids: pa.Array) -> pa.Table:
    """One impression per view (what the world's own feed served): no random draws, so the other tables
    stay byte-identical. Request = the viewer's day (one feed session); position = order of serving in it."""
    vi = np.flatnonzero(etype == 0)
    served = np.maximum(ets[vi] - IMPRESSION_LEAD_US, _day_start_us(day))  # its day stays the view's day
    key = user[vi]
    order = np.lexsort((served, key))
    starts = np.r_[0, np.flatnonzero(np.diff(key[order])) + 1]
    position = np.empty(len(vi), np.int32)
    position[order] = np.arange(len(vi)) - np.repeat(starts, np.diff(np.r_[starts, len(vi)]))
    vi_arr = pa.array(vi)
    view_ids = event_ids.take(vi_arr)
    request_ids = pc.binary_join_element_wise(pa.array([f"r{day:%Y%m%d}"] * len(vi)), user_ids.take(vi_arr), "-")
    return pa.table({
        "impression_id": pc.binary_join_element_wise(pa.array(["i"] * len(vi)), view_ids, ""),
        "request_id": request_ids,
        "user_id": user_ids.take(vi_arr),
        "post_id": post_ids.take(vi_arr),
        "position": pa.array(position, pa.int32()),
        "source": pa.array(["synthetic"] * len(vi)),
        "model_version": pa.array([SYNTHETIC_POLICY] * len(vi)),
        "score": pa.nulls(len(vi), pa.float32()),
        "served_at": _ts(served),
        "event_date": _dates(day, len(vi)),
    })


# --- public generation API ---------------------------------------------------------------------------


def iter_days(world: World) -> Iterator[DayBatch]:
    """Yield the world one UTC day at a time (posts first, so a day's views can include its new posts)."""
    cfg = world.config
    posts = _PostState.empty(cfg.posts)
    follows = _FollowState()
    for d, day in enumerate(cfg.dates):
        tables, truth, counts = _posts_day(world, posts, d)
        tables.update(_interactions_day(world, posts, follows, d))
        yield DayBatch(day_index=d, date=day, tables=tables, truth_posts=truth, burst_counts=counts)


def truth_users(world: World) -> pa.Table:
    """Ground truth per user: primary cluster, creator flag, latent quality (null for non-creators)."""
    names = np.asarray(world.cluster_names)
    return pa.table(
        {
            "user_id": world.users["user_id"],
            "cluster": pa.array(world.user_cluster),
            "cluster_name": pa.array(names[world.user_cluster]),
            "is_creator": pa.array(world.is_creator),
            "quality": pa.array(world.quality, mask=np.isnan(world.quality)),
            "popularity": pa.array(np.where(world.is_creator, world.popularity, np.nan), mask=~world.is_creator),
            "activity": pa.array(world.activity),
        }
    )


def truth_bursts(world: World, counts: list[dict]) -> pa.Table:
    """Ground truth per burst: hashtag, cluster, day, multiplier, and the realised baseline / burst counts."""
    by_key = {(c["hashtag"], c["day_index"]): c for c in counts}
    rows = []
    for b in world.bursts:
        c = by_key.get((b["hashtag"], b["day_index"]), {})
        rows.append(
            {
                "hashtag": b["hashtag"],
                "cluster": b["cluster"],
                "cluster_name": world.cluster_names[b["cluster"]],
                "day": world.config.dates[b["day_index"]],
                "day_index": b["day_index"],
                "multiplier": b["multiplier"],
                "baseline_count": c.get("baseline_count", 0),
                "burst_count": c.get("burst_count", 0),
            }
        )
    schema = pa.schema(
        [("hashtag", pa.string()), ("cluster", pa.int16()), ("cluster_name", pa.string()), ("day", pa.date32()),
         ("day_index", pa.int32()), ("multiplier", pa.float64()), ("baseline_count", pa.int64()),
         ("burst_count", pa.int64())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def truth_clusters(world: World) -> pa.Table:
    """The planted clusters with their hashtag vocabularies and caption words."""
    names = world.cluster_names
    return pa.table(
        {
            "cluster": pa.array(np.arange(len(names)), pa.int16()),
            "cluster_name": pa.array(names),
            "hashtags": pa.array([list(CLUSTERS[c][0]) for c in names]),
            "words": pa.array([list(CLUSTERS[c][1]) for c in names]),
        }
    )


# --- writing -----------------------------------------------------------------------------------------

EVENT_CONTRACTS: dict[str, TableContract] = {
    "posts": POSTS, "media": MEDIA, "interactions": INTERACTIONS, "comments": COMMENTS, "follows": FOLLOWS,
    "impressions": IMPRESSIONS,
}
#: how to recognise rows the synthetic world wrote (used to clear days an earlier run covered)
SYNTHETIC_KEYS: dict[str, tuple[str, str]] = {
    "posts": ("post_id", r"^p\d+$"),
    "media": ("media_id", r"^mp\d+$"),
    "interactions": ("event_id", r"^e\d{8}-\d+$"),
    "impressions": ("impression_id", r"^ie\d{8}-\d+$"),
    "comments": ("comment_id", r"^e\d{8}-\d+$"),
    "follows": ("event_id", r"^e\d{8}-\d+$"),
}
META_TABLES = ("synthetic_world", "synthetic_users", "synthetic_posts", "synthetic_bursts", "synthetic_clusters")


def _write_meta(settings, name: str, table: pa.Table) -> None:
    from deltalake import write_deltalake

    write_deltalake(settings.table_uri("meta", name), table, mode="overwrite", schema_mode="overwrite")


def _previous_dates(settings) -> set[dt.date]:
    """The days an earlier synthetic load covered (from ``meta/synthetic_world``), if any."""
    from socialpulse.lake import open_table

    t = open_table(settings.table_uri("meta", "synthetic_world"))
    if t is None:
        return set()
    rows = t.to_pyarrow_table().to_pylist()
    out: set[dt.date] = set()
    for r in rows:
        out.update(r["start"] + dt.timedelta(days=i) for i in range(r["days"]))
    return out


def _clear_stale_days(settings, stale: set[dt.date], progress: Callable[[str], None]) -> None:
    """Remove synthetic rows from days an earlier run covered and this run does not (keeps other rows)."""
    from socialpulse import lake

    if not stale:
        return
    days = sorted(stale)
    for name, contract in EVENT_CONTRACTS.items():
        col, pattern = SYNTHETIC_KEYS[name]
        old = lake.read(contract, settings=settings, filters=[("event_date", "in", days)])
        if old.num_rows == 0:
            continue
        kept = old.filter(pc.invert(pc.match_substring_regex(old[col], pattern)))
        lake.replace_partitions(contract, kept, days, settings=settings)
    progress(f"synthetic: cleared {len(days)} day(s) of an earlier run: {days[0]}..{days[-1]}")


def load_synthetic(
    settings,
    users: int,
    posts: int,
    days: int,
    seed: int = 7,
    start: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
    interactions: int | None = None,
) -> dict[str, int]:
    """Generate a world and write it to bronze (users overwritten, event tables replaced per day).

    ``start`` defaults to today (UTC) minus ``days``, so the world ends yesterday and never touches
    today's live partitions. Ground truth goes to plain Delta tables under ``meta/``. Returns rows
    written per bronze table.
    """
    from socialpulse import lake

    say = progress or (lambda _msg: None)
    if start is None:
        start = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=days)
    cfg = WorldConfig(users=users, posts=posts, days=days, seed=seed, start=start, interactions=interactions)
    world = build_world(cfg)
    _clear_stale_days(settings, _previous_dates(settings) - set(cfg.dates), say)

    counts = {"users": lake.overwrite(USERS, world.users, settings=settings)}
    counts.update({name: 0 for name in EVENT_CONTRACTS})
    truth_posts, burst_counts = [], []
    for batch in iter_days(world):
        for name, table in batch.tables.items():
            counts[name] += lake.replace_partitions(EVENT_CONTRACTS[name], table, [batch.date], settings=settings)
        truth_posts.append(batch.truth_posts)
        burst_counts.extend(batch.burst_counts)
        say(
            f"synthetic: day {batch.day_index + 1}/{days} {batch.date}: "
            + ", ".join(f"{n}={t.num_rows}" for n, t in batch.tables.items())
        )

    _write_meta(settings, "synthetic_users", truth_users(world))
    _write_meta(settings, "synthetic_posts", pa.concat_tables(truth_posts))
    _write_meta(settings, "synthetic_bursts", truth_bursts(world, burst_counts))
    _write_meta(settings, "synthetic_clusters", truth_clusters(world))
    world_row = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "toxic_splits"}
    world_row["toxic_splits"] = list(cfg.toxic_splits)
    _write_meta(settings, "synthetic_world", pa.Table.from_pylist([world_row]))
    say("synthetic: done " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


__all__ = [
    "CLUSTERS", "DayBatch", "World", "WorldConfig", "build_world", "iter_days", "load_synthetic",
    "read_hatexplain_texts", "truth_bursts", "truth_clusters", "truth_users",
]
