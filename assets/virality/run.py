"""Read the lake for the virality model, train and register it, and score young posts into Postgres (called by
the assets, the CLI and the analytics bench; the model itself is in :mod:`socialpulse.virality_model`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from socialpulse import lake, virality
from socialpulse import virality_model as vm
from socialpulse.contracts import FOLLOWS, INTERACTIONS, POSTS
from socialpulse.model_registry import champion_or_none
from socialpulse.settings import Settings

POST_COLUMNS = ["post_id", "author_id", "kind", "duration_s", "hashtags", "created_at"]
EVENT_COLUMNS = ["post_id", "user_id", "event_type", "watch_time_s", "created_at"]
ENGAGEMENT = ["view", "like", "share", "comment"]


class NotEnoughData(RuntimeError):
    """Too few posts with a complete 7-day window (or no post in the top decile) to train on."""


def _posts(settings: Settings, since: dt.date | None = None) -> pa.Table:
    filters = [("event_date", ">=", since)] if since else None
    t = lake.read(POSTS, settings=settings, columns=POST_COLUMNS + ["event_date"], filters=filters)
    t = t.drop_columns(["event_date"])
    # bronze is append-only: a post re-sent keeps its first row
    _, first = np.unique(t["post_id"].to_numpy(zero_copy_only=False).astype(object), return_index=True)
    return t.take(pa.array(np.sort(first)))


def _events(settings: Settings, since: dt.date | None = None) -> pa.Table:
    filters = [("event_type", "in", ENGAGEMENT)] + ([("event_date", ">=", since)] if since else [])
    return lake.read(INTERACTIONS, settings=settings, columns=EVENT_COLUMNS, filters=filters)


def _follows(settings: Settings) -> pa.Table:
    return lake.read(FOLLOWS, settings=settings, columns=["followee_id", "action", "created_at"])


def data_end(interactions: pa.Table) -> dt.datetime | None:
    """The newest event time in the lake (the training clock: a 7-day window must close before it)."""
    if interactions.num_rows == 0:
        return None
    return pc.max(interactions["created_at"]).as_py()


def training_rows(settings: Settings, log: Callable[[str], None] = print) -> tuple[pa.Table, dict[str, int], dict]:
    t0 = time.perf_counter()
    posts, events, follows = _posts(settings), _events(settings), _follows(settings)
    end = data_end(events)
    labelled = vm.labelled_posts(posts, end) if end else posts.slice(0, 0)
    if labelled.num_rows < 50:
        raise NotEnoughData(f"{labelled.num_rows} posts have a complete {vm.REACH_DAYS}-day window before the "
                            f"newest event ({end}); at least 50 are needed")
    t1 = time.perf_counter()
    rows = vm.signals(posts, events, follows, vm.observation_grid(labelled["post_id"].to_pylist()))
    reach = vm.reach(labelled, events)
    timing = {"read_s": round(t1 - t0, 2), "features_s": round(time.perf_counter() - t1, 2)}
    log(f"virality: {labelled.num_rows} labelled posts of {posts.num_rows} (events up to {end}), "
        f"{rows.num_rows} observations; read {timing['read_s']} s, features {timing['features_s']} s")
    return rows, dict(zip(reach["post_id"].to_pylist(), reach["reach_7d"].to_pylist())), timing


def train_and_register(settings: Settings, *, register: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train on the lake's labelled posts (a time split), evaluate beside Szabo-Huberman, and (``register``)
    log to MLflow and promote when the held-out AUC beats the champion's."""
    rows, reach, timing = training_rows(settings, log)
    champion = champion_or_none(lambda: vm.load_champion(settings.mlflow, settings.model_cache), log,
                                "virality") if register else None
    try:
        result = vm.train_and_evaluate(rows, reach, champion)
    except ValueError as exc:
        raise NotEnoughData(str(exc)) from None
    model, evaluation = result["model"], result["evaluation"]
    evaluation["timing_s"].update(timing)
    m, b = evaluation["model"], evaluation["szabo_huberman"]
    log(f"virality {model.version}: AUC@{vm.DECISION_HOURS}h {m['auc']:.4f} (Szabo-Huberman {b['auc']:.4f}), "
        f"precision@10% {m['precision@10%']:.3f} ({b['precision@10%']:.3f}), ECE {m['ece']:.4f} ({b['ece']:.4f})")
    out = {"model_version": model.version, "auc": m["auc"], "szabo_huberman_auc": b["auc"],
           "precision@10%": m["precision@10%"], "szabo_huberman_precision@10%": b["precision@10%"],
           "ece": m["ece"], "threshold_reach_7d": evaluation["threshold_reach_7d"], "evaluation": evaluation}
    if register:
        reg = vm.log_and_promote(settings.mlflow, model, evaluation=evaluation,
                                 params={"features": list(vm.FEATURES), "observation_hours": list(vm.OBSERVATION_HOURS),
                                         **vm.PARAMS})
        out.update({"registered_version": reg["version"], "promoted": reg["promoted"],
                    "champion_version": reg["champion_version"]})
        log(f"virality: registered version {reg['version']}, promoted={reg['promoted']} "
            f"(previous held-out AUC {reg['previous_gate']})")
    out["model"] = model
    return out


def score_young_posts(settings: Settings, conn, now: dt.datetime | None = None,
                      model: vm.ViralityModel | None = None, log: Callable[[str], None] = print) -> dict:
    """Predict every post made in the last :data:`~socialpulse.virality_model.SCORING_HORIZON_HOURS` hours
    (and at least the first observation hour ago) with the champion, at the latest observation hour it
    has passed, and upsert the predictions into ``virality.predictions``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    model = model or vm.load_champion(settings.mlflow, settings.model_cache)
    since = (now - dt.timedelta(days=vm.HISTORY_DAYS + 1)).date()
    posts = _posts(settings, since)
    created = posts["created_at"]
    horizon = pa.scalar(now - dt.timedelta(hours=vm.SCORING_HORIZON_HOURS), created.type)
    first = pa.scalar(now - dt.timedelta(hours=vm.OBSERVATION_HOURS[0]), created.type)
    young = posts.filter(pc.and_(pc.greater(created, horizon), pc.less_equal(created, first)))
    if young.num_rows == 0:
        return {"scored": 0, "model_version": model.version}
    t0 = time.perf_counter()
    age_h = (np.datetime64(now.replace(tzinfo=None), "us")
             - young["created_at"].to_numpy(zero_copy_only=False).astype("datetime64[us]")) / np.timedelta64(1, "h")
    hours = vm.snap_hours(age_h)
    observations = pa.table({"post_id": young["post_id"], "observed_hours": pa.array(hours)})
    # the young posts' creators' histories are all the features need of the rest
    posts = posts.filter(pc.is_in(posts["author_id"], value_set=pc.unique(young["author_id"])))
    events = _events(settings, since)
    events = events.filter(pc.and_(pc.less(events["created_at"], pa.scalar(now, events["created_at"].type)),
                                   pc.is_in(events["post_id"], value_set=posts["post_id"])))
    rows = vm.signals(posts, events, _follows(settings), observations)
    p = model.probability(vm.matrix(rows))
    predicted = [
        {"post_id": r["post_id"], "author_id": r["author_id"], "post_created_at": r["post_created_at"],
         "predicted_at": now, "observed_hours": r["observed_hours"], "probability": float(pi),
         "views_so_far": int(r["views"]), "reach_threshold": model.threshold, "model_version": model.version}
        for r, pi in zip(rows.select(["post_id", "author_id", "post_created_at", "observed_hours", "views"]).to_pylist(), p)]
    virality.ensure_schema(conn)
    n = virality.upsert(conn, predicted)
    secs = time.perf_counter() - t0
    log(f"virality: scored {n} posts younger than {vm.SCORING_HORIZON_HOURS} h in {secs:.1f} s "
        f"(model {model.version})")
    return {"scored": n, "model_version": model.version, "seconds": round(secs, 2),
            "likely_viral": int(np.sum(p >= virality.LIKELY))}
