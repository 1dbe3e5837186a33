"""Post engagement features: 1-day and 7-day windows from gold/post_engagement_daily (Delta)."""

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.data_format import DeltaFormat
from feast.types import Float64, Int64

from entities import post
from socialpulse.settings import get_settings

post_engagement_source = FileSource(
    name="post_engagement_daily",
    path=get_settings().table_uri("gold", "post_engagement_daily"),
    file_format=DeltaFormat(),
    timestamp_field="feature_ts",
    created_timestamp_column="computed_at",
    description="Daily Delta partitions written by the engagement assets (Spark); read through the Delta log.",
    tags={"lake_layer": "gold", "lake_table": "post_engagement_daily"},
)

post_engagement = FeatureView(
    name="post_engagement",
    entities=[post],
    # a day's row stays servable for its 7-day window plus a day of slack for a late run
    ttl=timedelta(days=8),
    schema=[
        Field(name="views_1d", dtype=Int64),
        Field(name="likes_1d", dtype=Int64),
        Field(name="shares_1d", dtype=Int64),
        Field(name="comments_1d", dtype=Int64),
        Field(name="watch_time_s_1d", dtype=Float64),
        Field(name="avg_watch_time_s_1d", dtype=Float64),
        Field(name="unique_viewers_1d", dtype=Int64),
        Field(name="views_7d", dtype=Int64),
        Field(name="likes_7d", dtype=Int64),
        Field(name="shares_7d", dtype=Int64),
        Field(name="comments_7d", dtype=Int64),
        Field(name="watch_time_s_7d", dtype=Float64),
        Field(name="avg_watch_time_s_7d", dtype=Float64),
        Field(name="unique_viewers_7d", dtype=Int64),
        Field(name="engagement_rate_7d", dtype=Float64),
    ],
    online=True,
    source=post_engagement_source,
    owner="team:ml",
    tags={"domain": "engagement"},
)
