"""Engagement domain: post and user engagement features (Spark → Delta gold) and their Feast materialization."""

from assets.engagement.assets import GOLD_CHECKS, engagement_features, online_engagement_features

ASSETS = [engagement_features, online_engagement_features]
ASSET_CHECKS = list(GOLD_CHECKS)

__all__ = ["ASSETS", "ASSET_CHECKS"]
