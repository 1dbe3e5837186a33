"""Spark Connect sessions: the same PySpark code runs on Sail here and on a Spark 4 cluster in production."""

from __future__ import annotations

import os


def spark_session(remote: str):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(remote).getOrCreate()
