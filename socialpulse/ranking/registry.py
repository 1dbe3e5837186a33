"""MLflow side of the feed ranker: log a trained :class:`~socialpulse.ranking.model.Ranker` with its offline
evaluation, register it, promote it to ``champion`` only when it beats the champion on the held-out split's
:data:`GATE_METRIC`, and load the champion back (the serving tier does, through a local cache).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from socialpulse.model_registry import (
    ALIAS,
    cached_download,
    champion_summary,
    log_register_gate,
    pinned_requirements,
)
from socialpulse.ranking.model import META_FILE, Ranker

MODEL_NAME = "socialpulse-feed-ranker"
EXPERIMENT = "feed-ranking"
#: the held-out metric a new version must beat (strictly) to become champion
GATE_METRIC = "ndcg@10"
#: the registry tag that holds it (MLflow names may not contain "@")
GATE_TAG = "heldout_ndcg_at_10"
REQUIREMENTS = ("mlflow", "numpy", "pandas", "lightgbm")


def _pyfunc():
    import mlflow.pyfunc

    class FeedRankerPyfunc(mlflow.pyfunc.PythonModel):
        """Input: a DataFrame with the ranker's feature columns. Output: one score per row."""

        def load_context(self, context):
            self.ranker = Ranker.load(context.artifacts["ranker"])

        def predict(self, context, model_input, params=None):
            return self.ranker.score(model_input[list(self.ranker.features)].to_numpy())

    return FeedRankerPyfunc()


def champion_info(tracking_uri: str) -> dict | None:
    """``{version, model_version, gate}`` of the champion, or None when there is none yet."""
    return champion_summary(tracking_uri, MODEL_NAME, GATE_TAG)


def log_and_promote(tracking_uri: str, ranker: Ranker, *, evaluation: Mapping[str, Any], params: Mapping[str, Any],
                    force: bool = False) -> dict:
    """Log, register and promote the ranker when ``evaluation["model"][GATE_METRIC]`` beats the champion's on
    the same held-out split (``evaluation["champion"]``, the champion re-scored on it) or, without it, the
    champion's recorded value (:func:`socialpulse.model_registry.log_register_gate`)."""
    same_split = (evaluation.get("champion") or {}).get(GATE_METRIC)
    with tempfile.TemporaryDirectory(prefix="ranker-log-") as tmp:
        return log_register_gate(
            tracking_uri, name=MODEL_NAME, experiment=EXPERIMENT, model_version=ranker.version,
            folder=ranker.save(Path(tmp) / "ranker"), artifact="ranker", python_model=_pyfunc(),
            requirements=pinned_requirements(REQUIREMENTS), evaluation=evaluation, params=params,
            gate=evaluation["model"][GATE_METRIC], gate_tag=GATE_TAG, champion_gate=same_split, force=force)


def _find(folder: Path) -> Ranker:
    for meta in sorted(Path(folder).rglob(META_FILE), key=lambda p: len(p.parts)):
        return Ranker.load(meta.parent)
    raise FileNotFoundError(f"no feed ranker ({META_FILE}) under {folder}")


def load_champion(tracking_uri: str, cache_dir: Path) -> Ranker:
    """The champion ranker (downloaded once per version into ``cache_dir``). Raises LookupError when there
    is no champion, :class:`~socialpulse.model_registry.RegistryUnavailable` when MLflow does not answer."""
    info = champion_info(tracking_uri)
    if info is None:
        raise LookupError(f"no '{ALIAS}' version of {MODEL_NAME!r} at {tracking_uri} yet: materialize "
                          "ml/ranking/feed_ranker (or run `socialpulse ranking train`)")
    key = f"{info['version']}-{info['model_version'] or 'unknown'}"
    return cached_download(tracking_uri, f"models:/{MODEL_NAME}/{info['version']}", cache_dir, key, _find)
