"""Captions tables: what the image shows (silver media_labels) and the generated alt-text, captions and hashtags
(gold post_captions), as contracts."""

from __future__ import annotations

import pyarrow as pa

from socialpulse.contracts import TS, TableContract


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


LABEL_STATUS = ("none", "ok", "synthetic", "error")

LABEL = pa.struct([pa.field("name", pa.string(), nullable=False), pa.field("prob", pa.float32(), nullable=False)])

MEDIA_LABELS = TableContract(
    name="media_labels",
    layer="silver",
    key=("post_id",),
    partition_by=("event_date",),
    allowed={"status": LABEL_STATUS},
    description="Per post: the ImageNet top-5 classes (EfficientNet-Lite0) of its image or of a few video frames, "
    "with the model version and the media status.",
    schema=pa.schema(
        [
            _f("post_id", pa.string()),
            _f("media_uri", pa.string(), True),  # a changed media reference means relabelling
            _f("media_kind", pa.string(), True),
            _f("labels", pa.list_(LABEL)),
            _f("frames", pa.int32()),
            _f("status", pa.string()),
            _f("error", pa.string(), True),
            _f("model_version", pa.string()),
            _f("labelled_at", TS),
            _f("event_date", pa.date32()),
        ]
    ),
)

POST_CAPTIONS = TableContract(
    name="post_captions",
    layer="gold",
    key=("post_id",),
    partition_by=("event_date",),
    description="Per post: generated alt-text, caption and hashtag suggestions, the generator's version, whether "
    "the grounded fallback stood in, and what the quality guard rejected.",
    schema=pa.schema(
        [
            _f("post_id", pa.string()),
            _f("author_id", pa.string()),
            _f("kind", pa.string()),
            _f("alt_text", pa.string(), True),
            _f("captions", pa.list_(pa.string())),
            _f("hashtags", pa.list_(pa.string())),
            _f("generator", pa.string()),
            _f("fallback", pa.bool_()),
            _f("rejected", pa.list_(pa.string())),  # the guard's reasons, one per rejected suggestion
            _f("labels_version", pa.string(), True),
            _f("generated_at", TS),
            _f("event_date", pa.date32()),
        ]
    ),
)
