"""MLflow registry plumbing shared by every model the platform trains: reachability, a scoped tracking URI,
metric/param flattening, the ``champion`` alias and a cached download of a version's artifacts.

Each model's own module (what it logs, how it loads) builds on these; serving loads champions through
here too, so mlflow is imported inside the functions and importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ALIAS = "champion"


class RegistryUnavailable(ConnectionError):
    """The MLflow tracking server does not answer."""


def check_reachable(tracking_uri: str, timeout: float = 3.0) -> None:
    """Raise :class:`RegistryUnavailable` quickly when an http(s) tracking server does not answer
    (MLflow's own client retries for minutes)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            if r.status != 200:
                raise RegistryUnavailable(f"MLflow at {tracking_uri} answered {r.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(f"MLflow at {tracking_uri} is unreachable ({exc})") from exc


@contextlib.contextmanager
def tracking(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's global tracking + registry URIs at ``tracking_uri`` for the block, then put back exactly
    what was there (including "not set"), so callers' own MLflow settings are left alone."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    check_reachable(tracking_uri)
    prev_tracking = getattr(tracking_utils, "_tracking_uri", None)
    prev_registry = getattr(registry_utils, "_registry_uri", None)
    prev_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(prev_tracking)
        mlflow.set_registry_uri(prev_registry)
        for k, v in prev_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def flatten(prefix: str, obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            flatten(f"{prefix}_{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = obj
    return out


def metric_values(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of a (nested) dict: numeric leaves only, keys joined by ``_`` (``@`` is kept)."""
    flat = flatten(prefix, metrics, {})
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}


def param_values(params: Mapping[str, Any]) -> dict[str, str]:
    flat = flatten("", params, {})
    return {k: (json.dumps(v) if isinstance(v, (list, tuple)) else str(v))[:500] for k, v in flat.items()}


def champion_version(client, name: str) -> Any | None:
    """The model version holding the ``champion`` alias of ``name``, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def cached_download(tracking_uri: str, uri: str, cache_dir: Path, key: str, load: Callable[[Path], Any]) -> Any:
    """``load`` the artifacts at ``uri``, downloaded once into ``cache_dir/key`` (a staging folder renamed
    into place, so a crash never leaves a half-written copy that a later call would trust)."""
    import mlflow

    target = Path(cache_dir) / key
    try:
        return load(target)
    except (FileNotFoundError, ValueError):
        pass
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        with tracking(tracking_uri):
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load(target)


def pinned_requirements(dists: Iterable[str]) -> list[str]:
    """``dist==installed version`` for each distribution (bare name when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in dists:
        try:
            out.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def tag_float(mv, tag: str) -> float | None:
    """A numeric tag of a model version (None when absent or not a number)."""
    value = (mv.tags or {}).get(tag)
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def champion_summary(tracking_uri: str, name: str, gate_tag: str) -> dict | None:
    """``{version, model_version, gate, run_id}`` of ``name``'s champion, or None when there is none yet."""
    from mlflow import MlflowClient

    with tracking(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mv = champion_version(client, name)
        if mv is None:
            return None
        return {"version": str(mv.version), "model_version": (mv.tags or {}).get("model_version"),
                "gate": tag_float(mv, gate_tag), "run_id": mv.run_id}


def log_register_gate(tracking_uri: str, *, name: str, experiment: str, model_version: str, folder: Path,
                      artifact: str, python_model, requirements: Sequence[str], evaluation: Mapping[str, Any],
                      params: Mapping[str, Any], gate: float, gate_tag: str, champion_gate: float | None = None,
                      force: bool = False) -> dict:
    """Log a run (params, every numeric leaf of ``evaluation`` as a metric, the evaluation as JSON, the saved
    model ``folder`` as a pyfunc artifact), register it as a version of ``name`` tagged with its ``gate``
    value, and move ``champion`` to it when it beats the champion strictly: ``champion_gate`` is the
    champion re-scored on this run's held-out split; without it, the champion's own recorded gate. No
    champion, or ``force``, promotes. Returns ``{run_id, version, promoted, champion_version, gate,
    previous_gate}``."""
    import mlflow
    from mlflow import MlflowClient

    with tracking(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=model_version) as run:
            mlflow.set_tags({"model_version": model_version})
            mlflow.log_params(param_values({**params, "model_version": model_version}))
            mlflow.log_metrics({k.replace("@", "_at_").replace("%", "pct"): v
                                for k, v in metric_values("", evaluation).items()})
            mlflow.log_dict(dict(evaluation), "evaluation.json")
            info = mlflow.pyfunc.log_model(name="model", python_model=python_model, artifacts={artifact: str(folder)},
                                           pip_requirements=list(requirements))
        mv = mlflow.register_model(info.model_uri, name, tags={"model_version": model_version, gate_tag: repr(float(gate))})
        current = champion_version(client, name)
        previous = None
        if current is not None:
            previous = float(champion_gate) if champion_gate is not None else tag_float(current, gate_tag)
        promoted = force or current is None or previous is None or float(gate) > previous
        if promoted:
            client.set_registered_model_alias(name, ALIAS, str(mv.version))
        return {"run_id": run.info.run_id, "version": str(mv.version), "promoted": promoted,
                "champion_version": str(mv.version) if promoted else str(current.version),
                "gate": float(gate), "previous_gate": previous}


def champion_or_none(load: Callable[[], Any], log: Callable[[str], None], what: str) -> Any | None:
    """The champion to re-score on a training run's held-out split (the gate compares like with like), or None:
    none registered yet, or one of another feature layout (the gate then uses its recorded value). An
    unreachable registry raises :class:`RegistryUnavailable`."""
    try:
        return load()
    except LookupError:
        return None
    except ValueError as exc:
        log(f"{what}: the champion cannot score this split ({exc}); gating on its recorded value")
        return None

