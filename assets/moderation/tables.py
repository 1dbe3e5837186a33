"""Moderation tables: Delta silver scores and gold decisions (contracts), and their Postgres/Redis copies."""

from __future__ import annotations

import pyarrow as pa

from socialpulse.contracts import TS, TableContract

from assets.moderation.policy import ACTIONS


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


MEDIA_STATUS = ("none", "ok", "synthetic", "error")

MODERATION_SCORES = TableContract(
    name="moderation_scores",
    layer="silver",
    key=("post_id",),
    partition_by=("event_date",),
    allowed={"media_status": MEDIA_STATUS},
    description="Per post: text-model class probabilities per text source, NSFW per image/frame, OCR text and transcript.",
    schema=pa.schema(
        [
            _f("post_id", pa.string()),
            _f("author_id", pa.string()),
            _f("kind", pa.string()),
            _f("content_hash", pa.string()),  # caption + hashtags + media uri: a change means rescoring
            _f("caption_hatespeech", pa.float32(), True),
            _f("caption_offensive", pa.float32(), True),
            _f("ocr_hatespeech", pa.float32(), True),
            _f("ocr_offensive", pa.float32(), True),
            _f("transcript_hatespeech", pa.float32(), True),
            _f("transcript_offensive", pa.float32(), True),
            _f("media_kind", pa.string(), True),
            _f("media_status", pa.string()),
            _f("media_error", pa.string(), True),
            _f("frame_nsfw", pa.list_(pa.float32())),
            _f("nsfw_max", pa.float32(), True),
            _f("video_seconds", pa.float32(), True),
            _f("ocr_text", pa.string(), True),
            _f("transcript", pa.string(), True),
            _f("text_model_version", pa.string()),
            _f("media_model_version", pa.string()),
            _f("scored_at", TS),
            _f("created_at", TS),
            _f("event_date", pa.date32()),
        ]
    ),
)

MODERATION_DECISIONS = TableContract(
    name="moderation_decisions",
    layer="gold",
    key=("post_id",),
    partition_by=("event_date",),
    allowed={"action": ACTIONS},
    description="Per post: the policy's action (allow, limit, review, remove) with its reasons and versions.",
    schema=pa.schema(
        [
            _f("post_id", pa.string()),
            _f("author_id", pa.string()),
            _f("action", pa.string()),
            _f("reasons", pa.list_(pa.string())),
            _f("hatespeech", pa.float32(), True),  # strongest text source
            _f("offensive", pa.float32(), True),
            _f("nsfw", pa.float32(), True),
            _f("media_status", pa.string()),
            _f("policy_version", pa.string()),
            _f("text_model_version", pa.string()),
            _f("media_model_version", pa.string()),
            _f("decided_at", TS),
            _f("created_at", TS),
            _f("event_date", pa.date32()),
        ]
    ),
)

MODERATION_REVIEW_LABELS = TableContract(
    name="moderation_review_labels",
    layer="silver",
    key=("post_id",),
    description="Per reviewed post: the text the model read and the moderator's latest decision mapped to the "
    "text model's classes (training data for the text model's next run; never its evaluation).",
    schema=pa.schema(
        [
            _f("post_id", pa.string()),
            _f("review_id", pa.int64()),
            _f("text", pa.string()),
            _f("label", pa.string()),
            _f("decision", pa.string()),
            _f("model_action", pa.string()),
            _f("appeal", pa.bool_()),
            _f("reviewed_at", TS),
        ]
    ),
)
