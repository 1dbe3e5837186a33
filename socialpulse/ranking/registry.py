"""MLflow side of the feed ranker: log a trained :class:`~socialpulse.ranking.model.Ranker` with its offline
evaluation, register it, promote it to ``champion`` only when it beats the champion on the held-out split's
:data:`GATE_METRIC`, and load the champion back (the serving tier does, through a local cache).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from socialpulse.model_registry import ALIAS, cached_download, champion_version, metric_values, param_values, tracking
from socialpulse.ranking.model import META_FILE, Ranker

MODEL_NAME = "socialpulse-feed-ranker"
EXPERIMENT = "feed-ranking"
#: the held-out metric a new version must beat (strictly) to become champion
GATE_METRIC = "ndcg@10"
#: the registry tag that holds it (MLflow names may not contain "@")
GATE_TAG = "heldout_ndcg_at_10"
REQUIREMENTS = ("mlflow", "numpy", "pandas", "lightgbm")


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in REQUIREMENTS:
        try:
            out.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def _pyfunc():
    import mlflow.pyfunc

    class FeedRankerPyfunc(mlflow.pyfunc.PythonModel):
        """Input: a DataFrame with the ranker's feature columns. Output: one score per row."""

        def load_context(self, context):
            self.ranker = Ranker.load(context.artifacts["ranker"])

        def predict(self, context, model_input, params=None):
            return self.ranker.score(model_input[list(self.ranker.features)].to_numpy())

    return FeedRankerPyfunc()


def _gate_value(client, mv) -> float | None:
    tag = (mv.tags or {}).get(GATE_TAG)
    try:
        return float(tag) if tag not in (None, "") else None
    except ValueError:
        return None


def champion_info(tracking_uri: str) -> dict | None:
    """``{version, model_version, gate}`` of the champion, or None when there is none yet."""
    from mlflow import MlflowClient

    with tracking(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mv = champion_version(client, MODEL_NAME)
        if mv is None:
            return None
        return {"version": str(mv.version), "model_version": (mv.tags or {}).get("model_version"),
                "gate": _gate_value(client, mv), "run_id": mv.run_id}


def log_and_promote(tracking_uri: str, ranker: Ranker, *, evaluation: Mapping[str, Any], params: Mapping[str, Any],
                    force: bool = False) -> dict:
    """Log the run (params, every metric of ``evaluation``, the evaluation as JSON), register the model and
    promote it when ``evaluation["model"][GATE_METRIC]`` beats the champion's on the same held-out split
    (``evaluation["champion"]``, the champion re-scored on it; without it, the champion's own recorded value),
    or there is no champion, or ``force``. Returns ``{run_id, version, promoted, champion_version, gate,
    previous_gate}``."""
    import mlflow
    from mlflow import MlflowClient

    gate = evaluation["model"][GATE_METRIC]
    with tracking(tracking_uri), tempfile.TemporaryDirectory(prefix="ranker-log-") as tmp:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        folder = ranker.save(Path(tmp) / "ranker")
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=ranker.version) as run:
            mlflow.set_tags({"model_version": ranker.version})
            mlflow.log_params(param_values({**params, "model_version": ranker.version}))
            mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in metric_values("", evaluation).items()})
            mlflow.log_dict(dict(evaluation), "evaluation.json")
            info = mlflow.pyfunc.log_model(name="model", python_model=_pyfunc(), artifacts={"ranker": str(folder)},
                                           pip_requirements=_requirements())
        mv = mlflow.register_model(info.model_uri, MODEL_NAME,
                                   tags={"model_version": ranker.version, GATE_TAG: repr(float(gate))})
        current = champion_version(client, MODEL_NAME)
        previous = None
        if current is not None:
            same_split = (evaluation.get("champion") or {}).get(GATE_METRIC)
            previous = float(same_split) if same_split is not None else _gate_value(client, current)
        promoted = force or current is None or previous is None or float(gate) > previous
        if promoted:
            client.set_registered_model_alias(MODEL_NAME, ALIAS, str(mv.version))
        return {"run_id": run.info.run_id, "version": str(mv.version), "promoted": promoted,
                "champion_version": str(mv.version) if promoted else str(current.version),
                "gate": float(gate), "previous_gate": previous}


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
