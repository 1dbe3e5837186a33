"""Post and user-interest embeddings, pure core: what a post's document is, which posts need (re)embedding,
and how a user's interest vector is made from the posts they engaged with.

No Dagster, no stores: Arrow tables and numpy arrays in, the same out. :mod:`assets.content.assets` wires
these to Delta, Spark and Postgres.

Post embeddings
    A post's *document* is its caption, its hashtags, and, once moderation has stored them, the text read
    on its image or video frames (OCR) and the speech in its video (transcript). The row key is
    ``(post_id, encoder_version)``: a post is embedded again only when its document changes (its
    ``content_hash``) or the encoder does (a new ``encoder_version`` re-embeds every post, i.e. a
    backfill). Vectors are L2-normalised, so cosine similarity is a dot product.

User interest
    A time-decayed, engagement-weighted mean of the embeddings of the posts a user engaged with in the
    last :data:`INTEREST_WINDOW_DAYS` days (see :data:`EVENT_WEIGHTS` and :func:`decay`), L2-normalised.

Cold start
    A user with no engagement in the window (new, or silent for a month) gets the *cold-start vector*:
    the same decayed, weighted mean taken over every user's engagement, i.e. the platform's overall
    taste in the window. Its nearest posts are the broadly engaging ones, which is what a feed should
    show before it knows anything about a person; one engagement is enough to move a user off it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: bump when :func:`post_document` changes what it puts in a document (it is part of the embedding version)
#: doc2: hashtags already written in the caption are not appended a second time
DOCUMENT_VERSION = "doc2"
#: the longest document the encoder reads, in tokens (all-MiniLM-L6-v2 was trained on 256)
MAX_TOKENS = 256
#: OCR text and transcripts are cut to this many characters before they join the document
MAX_MEDIA_TEXT_CHARS = 600
DIM = 384

#: the user id under which the cold-start vector is stored (no real user id starts with "__")
COLD_START_USER = "__cold_start__"
#: interest uses engagement in the last 28 days, each event weighted by 0.5 ** (age / 7 days)
INTEREST_WINDOW_DAYS = 28
HALF_LIFE_DAYS = 7.0
#: weight of one event by type: explicit actions outweigh a view, a view counts by how much was watched
EVENT_WEIGHTS: dict[str, float] = {"view": 0.5, "like": 1.0, "comment": 1.5, "share": 2.0}
#: a view of a post without a duration (an image or text post) counts as fully watched after this dwell
DWELL_FULL_S = 5.0


def embedding_version(encoder_version: str) -> str:
    """The key part that names how vectors were made: the encoder's weights and the document recipe."""
    return f"{encoder_version}+{DOCUMENT_VERSION}"


def _clip(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0]


def post_document(caption: str | None, hashtags: Sequence[str] | None, ocr_text: str | None = None,
                  transcript: str | None = None) -> str:
    """The text embedded for a post. Caption and hashtags come first, so truncation at
    :data:`MAX_TOKENS` drops the tail of a long transcript, never the caption."""
    parts = [" ".join((caption or "").split())]
    written = {w.lower() for w in parts[0].split() if w.startswith("#")}
    tags = " ".join(dict.fromkeys(f"#{t}" for t in (hashtags or []) if t and f"#{t}".lower() not in written))
    parts.append(tags)
    if ocr_text and ocr_text.strip():
        parts.append("on screen: " + _clip(ocr_text, MAX_MEDIA_TEXT_CHARS))
    if transcript and transcript.strip():
        parts.append("said: " + _clip(transcript, MAX_MEDIA_TEXT_CHARS))
    return " ".join(p for p in parts if p)


def document_hash(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]


def documents(posts: pa.Table, media_text: pa.Table | None = None) -> pa.Table:
    """``post_id, author_id, created_at, event_date, language, document, content_hash`` for bronze-shaped
    posts, joined to moderation's ``post_id, ocr_text, transcript`` where given (posts without media text
    simply have none)."""
    ocr: dict[str, str | None] = {}
    speech: dict[str, str | None] = {}
    if media_text is not None and media_text.num_rows:
        for pid, o, t in zip(media_text["post_id"].to_pylist(), media_text["ocr_text"].to_pylist(),
                             media_text["transcript"].to_pylist()):
            ocr[pid], speech[pid] = o, t
    ids = posts["post_id"].to_pylist()
    docs = [post_document(c, h, ocr.get(p), speech.get(p))
            for p, c, h in zip(ids, posts["caption"].to_pylist(), posts["hashtags"].to_pylist())]
    return pa.table({
        "post_id": posts["post_id"],
        "author_id": posts["author_id"],
        "created_at": posts["created_at"],
        "event_date": posts["event_date"],
        "language": posts["language"],
        "hashtags": posts["hashtags"],
        "document": pa.array(docs, pa.string()),
        "content_hash": pa.array([document_hash(d) for d in docs], pa.string()),
    })


def reuse_index(current: pa.Table, existing: pa.Table, version: str) -> np.ndarray:
    """For each current document, the row of ``existing`` whose vector is still valid (same ``post_id``,
    ``content_hash`` and ``encoder_version``), or -1 when the post must be (re)embedded."""
    valid: dict[tuple[str, str], int] = {}
    if existing.num_rows:
        same_version = pc.equal(existing["encoder_version"], version).to_pylist()
        for i, (pid, h, ok) in enumerate(zip(existing["post_id"].to_pylist(), existing["content_hash"].to_pylist(),
                                             same_version)):
            if ok:
                valid[(pid, h)] = i
    return np.fromiter((valid.get((pid, h), -1) for pid, h in zip(current["post_id"].to_pylist(),
                                                                   current["content_hash"].to_pylist())),
                       dtype=np.int64, count=current.num_rows)


def vectors_column(vectors: np.ndarray) -> pa.Array:
    """A ``(n, DIM)`` float32 array as an Arrow ``list<float>`` column (what Delta stores)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape if vectors.ndim == 2 else (0, DIM)
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))


def to_matrix(column: pa.ChunkedArray | pa.Array, dim: int = DIM) -> np.ndarray:
    """An Arrow ``list<float>`` column of equal-length vectors as a ``(n, dim)`` float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32()))
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size != len(column) * dim:
        raise ValueError(f"vectors are not all {dim}-dimensional ({flat.size} values for {len(column)} rows)")
    return flat.reshape(len(column), dim)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


# --- user interest ----------------------------------------------------------------------------------------
def decay(age_days: np.ndarray | float, half_life_days: float = HALF_LIFE_DAYS) -> np.ndarray:
    """Weight of an event ``age_days`` old: 1 now, 1/2 after one half-life, 1/4 after two."""
    return np.power(0.5, np.maximum(np.asarray(age_days, dtype=np.float64), 0.0) / half_life_days)


def interest_vectors(user_ids: Sequence[str], post_ids: Sequence[str], weights: np.ndarray,
                     post_index: dict[str, int], post_vectors: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per user, the normalised weighted sum of the vectors of the posts they engaged with.

    ``(user_ids[i], post_ids[i], weights[i])`` are (decayed, summed) engagement weights per pair; pairs
    whose post has no embedding are ignored. Returns (users, ``(n_users, dim)`` vectors, total weight per
    user); a user whose every pair was ignored is not returned (they are cold-start users)."""
    from scipy import sparse

    weights = np.asarray(weights, dtype=np.float64)
    p_idx = np.fromiter((post_index.get(p, -1) for p in post_ids), dtype=np.int64, count=len(post_ids))
    ok = (p_idx >= 0) & (weights > 0)
    users_ok = np.asarray(user_ids, dtype=object)[ok]
    if users_ok.size == 0:
        return [], np.zeros((0, post_vectors.shape[1]), dtype=np.float32), np.zeros(0)
    users, u_idx = np.unique(users_ok, return_inverse=True)
    m = sparse.csr_matrix((weights[ok], (u_idx, p_idx[ok])), shape=(len(users), len(post_vectors)))
    summed = np.asarray(m @ post_vectors.astype(np.float64))
    total = np.asarray(m.sum(axis=1)).ravel()
    return users.tolist(), normalise(summed).astype(np.float32), total


def cold_start_vector(post_ids: Sequence[str], weights: np.ndarray, post_index: dict[str, int],
                      post_vectors: np.ndarray) -> np.ndarray:
    """The platform's overall taste: every pair's weight on its post, summed over users, normalised.
    With no engagement at all, the plain mean of the post vectors (or zeros when there are none)."""
    weights = np.asarray(weights, dtype=np.float64)
    p_idx = np.fromiter((post_index.get(p, -1) for p in post_ids), dtype=np.int64, count=len(post_ids))
    ok = p_idx >= 0
    if ok.any() and weights[ok].sum() > 0:
        per_post = np.bincount(p_idx[ok], weights=weights[ok], minlength=len(post_vectors))
        vec = per_post @ post_vectors.astype(np.float64)
    elif len(post_vectors):
        vec = post_vectors.astype(np.float64).mean(axis=0)
    else:
        return np.zeros(post_vectors.shape[1] if post_vectors.ndim == 2 else DIM, dtype=np.float32)
    return normalise(vec[None, :])[0].astype(np.float32)


# --- checks -------------------------------------------------------------------------------------------------
def _norm_violations(column, dim: int) -> tuple[int, int]:
    """(rows whose vector is not ``dim`` long, rows whose norm is not 1 within 1e-3)."""
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False) if len(column) else np.zeros(0)
    wrong_dim = int((lengths != dim).sum())
    if wrong_dim:
        return wrong_dim, 0
    norms = np.linalg.norm(to_matrix(column, dim), axis=1)
    return 0, int((np.abs(norms - 1.0) > 1e-3).sum())


def embedding_violations(rows: pa.Table, post_ids: Sequence[str], dim: int = DIM) -> dict[str, int]:
    """What is wrong with a day of post embeddings, given the day's post ids (all zero when valid)."""
    ids = rows["post_id"].to_pylist()
    wrong_dim, not_unit = _norm_violations(rows["embedding"], dim)
    return {
        "posts_not_embedded": len(set(post_ids) - set(ids)),
        "unknown_posts": len(set(ids) - set(post_ids)),
        "duplicate_posts": len(ids) - len(set(ids)),
        "wrong_dimension": wrong_dim,
        "not_unit_norm": not_unit,
        "encoder_versions_beyond_one": max(0, len(set(rows["encoder_version"].to_pylist())) - 1),
    }


def interest_violations(rows: pa.Table, dim: int = DIM) -> dict[str, int]:
    """What is wrong with a day of user interest rows (all zero when valid; a day without any post vector
    to build from is empty, with no cold-start row either)."""
    ids = rows["user_id"].to_pylist()
    if not ids:
        return {"duplicate_users": 0, "wrong_dimension": 0, "not_unit_norm": 0, "cold_start_rows_not_one": 0,
                "negative_weight": 0}
    wrong_dim, not_unit = _norm_violations(rows["embedding"], dim)
    cold = [u for u, c in zip(ids, rows["cold_start"].to_pylist()) if c]
    return {
        "duplicate_users": len(ids) - len(set(ids)),
        "wrong_dimension": wrong_dim,
        "not_unit_norm": not_unit,
        "cold_start_rows_not_one": abs(len(cold) - 1) + sum(1 for u in cold if u != COLD_START_USER),
        "negative_weight": sum(1 for w in rows["weight"].to_pylist() if w is None or w < 0),
    }
