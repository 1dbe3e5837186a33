"""Text moderation registry (assets.moderation.registry) against a real MLflow server started here: the first
model becomes champion, a worse one is registered but not promoted, and the champion loads back identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assets.moderation.registry import (
    ALIAS,
    MODEL_NAME,
    RegistryUnavailable,
    champion_info,
    load_champion,
    log_and_register,
)
from assets.moderation.text import (
    CLASSES,
    TextEncoder,
    TextModerator,
    classification_metrics,
    read_labelled,
    train_text_moderator,
)

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hatexplain"


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """A real MLflow server (sqlite + local artifacts) started alone on a free port, stopped by its PID."""
    from socialpulse.services import services_down, services_up
    from socialpulse.services.manager import free_port
    from socialpulse.settings import Settings

    settings = Settings(home=tmp_path_factory.mktemp("mlflow_only_home"), mlflow_port=free_port())
    services_up(settings, ["mlflow"])
    try:
        yield settings.mlflow
    finally:
        services_down(settings, ["mlflow"])


@pytest.fixture(scope="module")
def sample():
    return {s: read_labelled(SAMPLE / f"{s}.jsonl", "text", "label") for s in ("train", "val", "test")}


@pytest.fixture(scope="module")
def models(sample):
    encoder = TextEncoder().load()
    good, report = train_text_moderator(*sample["train"], *sample["val"], encoder=encoder)
    # a deliberately worse model: a head that always says "normal" (val macro-F1 = F1 of one class / 3)
    weight = np.zeros((len(CLASSES), encoder.dim))
    worse = TextModerator("frozen", encoder, weight, np.array([0.0, 0.0, 1.0]),
                          params={"kind": "frozen", "constant": "normal"})
    return good, report, worse


def _metrics(model, texts, labels):
    return classification_metrics(labels, model.predict_proba(texts))


def test_unreachable_server_is_a_clear_error():
    from socialpulse.services.manager import free_port

    with pytest.raises(RegistryUnavailable, match="unreachable"):
        champion_info(f"http://127.0.0.1:{free_port()}")


def test_champion_only_on_better_val_macro_f1(mlflow_uri, models, sample, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    # for the test's own MLflow calls (the registry functions take the URI as an argument)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_uri)
    good, report, worse = models
    assert champion_info(mlflow_uri) is None
    with pytest.raises(LookupError, match="no 'champion' version"):
        load_champion(mlflow_uri)

    good_val = _metrics(good, *sample["val"])
    good_test = _metrics(good, *sample["test"])
    first = log_and_register(mlflow_uri, good, val_metrics=good_val, test_metrics=good_test, params=report["params"],
                             evaluation={"rows": [{"model": good.version, "macro_f1": good_test["macro_f1"]}]})
    assert first["promoted"] is True
    assert first["champion_version"] == first["version"]
    assert first["champion_val_macro_f1"] == pytest.approx(good_val["macro_f1"])
    assert first["previous_champion_val_macro_f1"] is None

    worse_val = _metrics(worse, *sample["val"])
    assert worse_val["macro_f1"] < good_val["macro_f1"]
    second = log_and_register(mlflow_uri, worse, val_metrics=worse_val, test_metrics=_metrics(worse, *sample["test"]),
                              params=worse.params)
    assert second["promoted"] is False
    assert second["version"] != first["version"]
    assert second["champion_version"] == first["version"]
    assert second["previous_champion_val_macro_f1"] == pytest.approx(good_val["macro_f1"])

    # a tie does not promote either (strictly better only)
    third = log_and_register(mlflow_uri, good, val_metrics=good_val, test_metrics=good_test, params=report["params"])
    assert third["promoted"] is False and third["champion_version"] == first["version"]

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    versions = {mv.version for mv in client.search_model_versions(f"name='{MODEL_NAME}'")}
    assert versions == {first["version"], second["version"], third["version"]}
    assert client.get_model_version_by_alias(MODEL_NAME, ALIAS).version == first["version"]
    run = client.get_run(first["run_id"])
    assert run.data.metrics["val_macro_f1"] == pytest.approx(good_val["macro_f1"])
    assert run.data.metrics["test_macro_f1"] == pytest.approx(good_test["macro_f1"])
    assert "test_per_class_hatespeech_f1" in run.data.metrics
    assert run.data.params["model_version"] == good.version
    evaluation_file = client.download_artifacts(first["run_id"], "evaluation.json", str(tmp_path))
    evaluation = json.loads(Path(evaluation_file).read_text())
    assert evaluation["rows"][0]["model"] == good.version

    info = champion_info(mlflow_uri)
    assert info["version"] == first["version"] and info["model_version"] == good.version
    assert info["val_macro_f1"] == pytest.approx(good_val["macro_f1"])

    # the champion loads back and predicts exactly what the trained model did
    texts = sample["test"][0]
    champion = load_champion(mlflow_uri, cache_dir=tmp_path / "cache")
    assert champion.version == good.version
    np.testing.assert_array_equal(champion.predict_proba(texts), good.predict_proba(texts))
    cached = list((tmp_path / "cache").iterdir())
    assert [p.name for p in cached] == [f"{first['version']}-{good.version}"]
    again = load_champion(mlflow_uri, cache_dir=tmp_path / "cache")  # from the cache
    np.testing.assert_array_equal(again.predict_proba(texts[:5]), good.predict_proba(texts[:5]))
    assert load_champion(mlflow_uri).version == good.version  # temporary download

    # the logged pyfunc serves the same scores through MLflow's generic loader
    import pandas as pd

    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{ALIAS}")
    out = pyfunc.predict(pd.DataFrame({"text": texts[:5]}))
    np.testing.assert_allclose(out[[f"score_{c}" for c in CLASSES]].to_numpy(), good.predict_proba(texts[:5]))
    assert list(out["label"]) == good.predict(texts[:5])


def test_cli_scores_with_the_champion(mlflow_uri, models, sample, tmp_path, monkeypatch):
    """`socialpulse moderation score` without --model uses the MLflow champion."""
    from click.testing import CliRunner

    from socialpulse import settings as settings_mod
    from cli.moderation import moderation

    good, _, _ = models
    if champion_info(mlflow_uri) is None:
        log_and_register(mlflow_uri, good, val_metrics=_metrics(good, *sample["val"]),
                         test_metrics=_metrics(good, *sample["test"]), params={"kind": "frozen"})
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(json.dumps({"text": t}) for t in sample["test"][0][:5]) + "\n")
    monkeypatch.setenv("SOCIALPULSE_MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("SOCIALPULSE_HOME", str(tmp_path / "home"))
    settings_mod.get_settings.cache_clear()
    try:
        res = CliRunner().invoke(moderation, ["score", "--input", str(src), "--text-field", "text"])
    finally:
        settings_mod.get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    labels = [json.loads(line)["label"] for line in res.stdout.splitlines()]
    assert labels == good.predict(sample["test"][0][:5])
