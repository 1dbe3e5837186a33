"""Spark Connect sessions: the same PySpark code runs on Sail here and on a Spark 4 cluster in production."""

from __future__ import annotations

import os

_SESSIONS: list = []


def spark_session(remote: str):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(remote).getOrCreate()
    _SESSIONS.append(session)
    return session


def stop_sessions() -> None:
    """Close every session opened here. A Spark Connect session still open when its server goes away
    retries its release at interpreter exit for minutes (RETRIES_EXCEEDED), so close before stopping Sail."""
    while _SESSIONS:
        session = _SESSIONS.pop()
        try:
            session.stop()
        except Exception:  # noqa: BLE001 - the server may already be gone; nothing left to release
            pass
