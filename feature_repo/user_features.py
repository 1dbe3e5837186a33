"""User engagement features: what a user gave (views, likes, ...) and follows gained, 1-day and 7-day."""

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.data_format import DeltaFormat
from feast.types import Float64, Int64

from entities import user
from socialpulse.settings import get_settings

user_engagement_source = FileSource(
    name="user_engagement_daily",
    path=get_settings().table_uri("gold", "user_engagement_daily"),
    file_format=DeltaFormat(),
    timestamp_field="feature_ts",
    created_timestamp_column="computed_at",
    description="Daily Delta partitions written by the engagement assets (Spark); read through the Delta log.",
    tags={"lake_layer": "gold", "lake_table": "user_engagement_daily"},
)

user_engagement = FeatureView(
    name="user_engagement",
    entities=[user],
    ttl=timedelta(days=8),
    schema=[
        Field(name="views_given_1d", dtype=Int64),
        Field(name="likes_given_1d", dtype=Int64),
        Field(name="shares_given_1d", dtype=Int64),
        Field(name="comments_given_1d", dtype=Int64),
        Field(name="watch_time_s_1d", dtype=Float64),
        Field(name="follows_gained_1d", dtype=Int64),
        Field(name="unfollows_gained_1d", dtype=Int64),
        Field(name="views_given_7d", dtype=Int64),
        Field(name="likes_given_7d", dtype=Int64),
        Field(name="shares_given_7d", dtype=Int64),
        Field(name="comments_given_7d", dtype=Int64),
        Field(name="watch_time_s_7d", dtype=Float64),
        Field(name="follows_gained_7d", dtype=Int64),
        Field(name="unfollows_gained_7d", dtype=Int64),
    ],
    online=True,
    source=user_engagement_source,
    owner="team:ml",
    tags={"domain": "engagement"},
)
