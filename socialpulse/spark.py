"""Spark Connect sessions: the same PySpark code runs on Sail here and on a Spark 4 cluster in production."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_SESSIONS: list = []
#: Spark Connect's default port when the URL names none
DEFAULT_PORT = 15002
PROBE_TIMEOUT_S = 3.0


class SparkUnavailable(RuntimeError):
    """The Spark Connect endpoint does not answer; the message names it and says what to do."""


def endpoint(remote: str) -> tuple[str, int]:
    """``sc://host:port/;params`` -> (host, port)."""
    url = urlparse(remote.split(";", 1)[0])
    if url.scheme != "sc" or not url.hostname:
        raise ValueError(f"not a Spark Connect URL: {remote!r} (expected sc://host:port)")
    return url.hostname, url.port or DEFAULT_PORT


def probe(remote: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`SparkUnavailable` unless the Spark Connect server accepts a connection. PySpark's own
    client would retry an absent server for minutes before failing; a run should fail at once and say why."""
    host, port = endpoint(remote)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise SparkUnavailable(
            f"Spark Connect at {host}:{port} is not answering ({exc.strerror or exc}): start it with "
            "`socialpulse services up spark`, or point SOCIALPULSE_SPARK_REMOTE at a running Spark Connect server"
        ) from None


def spark_session(remote: str):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    probe(remote)
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
