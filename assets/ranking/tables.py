"""Ranking tables: the feed's point-in-time training set (Delta gold, one partition per UTC day)."""

from __future__ import annotations

import pyarrow as pa

from assets.ranking.spark_labels import LABELS_SCHEMA
from socialpulse.contracts import TableContract
from socialpulse.ranking.model import FEATURES

FEED_TRAINING_SET = TableContract(
    name="feed_training_set",
    layer="gold",
    key=("impression_id",),
    partition_by=("event_date",),
    description="One row per impression served that day: the engagement that followed, its relevance grade "
    "(0-4) and the ranker's features as of serving time (Feast point in time; interest as of the day before).",
    schema=pa.schema(
        list(LABELS_SCHEMA)
        + [pa.field("grade", pa.int32(), nullable=False)]
        + [pa.field(name, pa.float64()) for name in FEATURES]
        + [pa.field("event_date", pa.date32(), nullable=False)]
    ),
)
