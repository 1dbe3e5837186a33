"""Content tables: post embeddings (Delta silver) and user interest vectors (Delta gold)."""

from __future__ import annotations

import pyarrow as pa

from socialpulse.contracts import TS, TableContract


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


VECTOR = pa.list_(pa.float32())

POST_EMBEDDINGS = TableContract(
    name="post_embeddings",
    layer="silver",
    key=("post_id", "encoder_version"),
    partition_by=("event_date",),
    description="Per post: the embedded document (caption, hashtags, OCR text, transcript), its hash, the "
    "encoder version and the L2-normalised MiniLM vector (384 floats).",
    schema=pa.schema(
        [
            _f("post_id", pa.string()),
            _f("author_id", pa.string()),
            _f("language", pa.string(), True),
            _f("hashtags", pa.list_(pa.string())),
            _f("document", pa.string()),
            _f("content_hash", pa.string()),
            _f("encoder_version", pa.string()),
            _f("embedding", VECTOR),
            _f("embedded_at", TS),
            _f("created_at", TS),
            _f("event_date", pa.date32()),
        ]
    ),
)

USER_INTEREST = TableContract(
    name="user_interest",
    layer="gold",
    key=("user_id",),
    partition_by=("event_date",),
    description="Per user, as of the end of the partition day: the time-decayed, engagement-weighted mean "
    "of the vectors of the posts they engaged with in the last 28 days; one cold-start row.",
    schema=pa.schema(
        [
            _f("user_id", pa.string()),
            _f("embedding", VECTOR),
            _f("cold_start", pa.bool_()),
            _f("weight", pa.float64()),
            _f("posts", pa.int64()),
            _f("encoder_version", pa.string()),
            _f("computed_at", TS),
            _f("event_date", pa.date32()),
        ]
    ),
)
