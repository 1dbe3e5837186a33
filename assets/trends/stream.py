"""Time-stamped post streams (JSONL, e.g. CrisisLex T6 ``stream.jsonl``) read into the records that
:func:`assets.trends.logic.replay` and :mod:`assets.trends.suggest_eval` take."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from socialpulse.tags import find_tags, normalise_tags


def read_stream(path: str | Path) -> tuple[list[dict], dict[str, int]]:
    """Read a time-stamped JSONL stream into records, sorted by time (stable), as the replay needs.

    Each line needs ``created_at`` (ISO 8601; a missing offset is read as UTC); ``hashtags`` (list of
    str) is optional and falls back to the ``#tags`` of ``text``, both canonical (:mod:`socialpulse.tags`);
    ``event``, ``on_topic`` and ``author_id`` are passed through. Unreadable lines are skipped and counted:
    returns ``(records, {"lines", "records", "skipped"})``.
    """
    records: list[dict] = []
    lines = skipped = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            lines += 1
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                ts = dt.datetime.fromisoformat(str(obj["created_at"]).strip().replace("Z", "+00:00"))
                ts = ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)
                tags = obj.get("hashtags")
                if tags is None:
                    tags = find_tags(str(obj.get("text") or ""))
                elif not isinstance(tags, list):
                    raise ValueError("hashtags must be a list")
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            records.append(
                {
                    "created_at": ts, "hashtags": normalise_tags(tags), "event": obj.get("event"),
                    "on_topic": obj.get("on_topic"), "author_id": obj.get("author_id"),
                    "text": str(obj.get("text") or obj.get("caption") or ""),
                }
            )
    records.sort(key=lambda r: r["created_at"])
    return records, {"lines": lines, "records": len(records), "skipped": skipped}
