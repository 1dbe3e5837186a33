"""Versioned feature services: what each consumer reads. Add a _v2 rather than changing a served one."""

from feast import FeatureService

from post_features import post_engagement
from user_features import user_engagement

post_stats_v1 = FeatureService(
    name="post_stats_v1",
    features=[post_engagement],
    description="Engagement counters of one post (post details, creator analytics).",
    owner="team:ml",
)

user_stats_v1 = FeatureService(
    name="user_stats_v1",
    features=[user_engagement],
    description="Engagement a user gave and follows gained, 1-day and 7-day.",
    owner="team:ml",
)

feed_ranking_v1 = FeatureService(
    name="feed_ranking_v1",
    features=[
        post_engagement[
            [
                "views_7d",
                "unique_viewers_7d",
                "avg_watch_time_s_7d",
                "engagement_rate_7d",
                "views_1d",
                "likes_1d",
            ]
        ],
        user_engagement[["views_given_7d", "likes_given_7d", "watch_time_s_7d"]],
    ],
    description="Features the feed ranker scores (post, viewing user) pairs with; keyed by post_id and user_id.",
    owner="team:ml",
)
