"""Trends domain: hashtag trend detection (hourly velocity z-scores) grouped into topics by co-occurrence.

``assets.trends.logic`` is the pure core (no Spark, no Dagster); the asset wiring comes later.
"""
