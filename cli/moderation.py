"""The `socialpulse moderation` commands: score, evaluate and train the text moderation model, run the
moderation assets (retrain, backfill) through Dagster, report decisions against HateXplain's labels, and the
live worker. ``train`` needs no service, so it also runs on a bare GPU box.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from cli.common import day_range, emit, fail, progress

#: inputs longer than this report progress on stderr
PROGRESS_ABOVE = 2_000


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def _load_model(model_dir: Path | None):
    """The model from ``model_dir``, else the MLflow champion at the configured tracking URI."""
    _quiet_transformers()
    from assets.moderation.text import TextModerator

    if model_dir is not None:
        try:
            return TextModerator.load(model_dir)
        except (OSError, ValueError) as exc:
            fail(f"cannot load model from {model_dir}: {exc}")
    from assets.moderation.registry import RegistryUnavailable, load_champion
    from socialpulse.settings import get_settings

    uri = get_settings().mlflow
    try:
        return load_champion(uri, cache_dir=get_settings().home_abs / "cache" / "text-moderation")
    except RegistryUnavailable as exc:
        fail(f"{exc}; start it with `socialpulse services up mlflow`, set SOCIALPULSE_MLFLOW_TRACKING_URI, "
             f"or pass --model DIR")
    except LookupError as exc:
        fail(f"{exc.args[0] if exc.args else exc}; or pass --model DIR")
    except Exception as exc:  # noqa: BLE001 - the CLI's job is a clear message
        fail(f"cannot load the champion from MLflow at {uri} ({type(exc).__name__}: {exc}); pass --model DIR")


def _parse_label_map(value: str | None) -> dict | None:
    """--label-map: a JSON object, or a .json file holding one, mapping the file's labels to classes."""
    if value is None:
        return None
    from assets.moderation.text import CLASSES

    text = value
    if not value.lstrip().startswith("{") and Path(value).is_file():
        text = Path(value).read_text(encoding="utf-8")
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--label-map is not valid JSON ({exc.msg}); give an object such as "
             f"'{{\"hate\": \"hatespeech\", \"abusive\": \"offensive\", \"none\": \"normal\"}}' or a .json file")
    if not isinstance(mapping, dict):
        fail("--label-map must be a JSON object mapping the file's labels to classes")
    bad = sorted({str(v) for v in mapping.values() if v not in CLASSES})
    if bad:
        fail(f"--label-map maps to {bad}, which are not classes; map every label to one of {list(CLASSES)}")
    return mapping


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def moderation() -> None:
    """Text moderation: classify posts as hatespeech / offensive / normal (MiniLM + a trained head).

    Models come from a folder written by `train` (--model DIR) or, by default, the `champion` alias of
    socialpulse-text-moderation in MLflow (SOCIALPULSE_MLFLOW_TRACKING_URI, or the embedded server).
    """


@moderation.command("score")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL (.jsonl/.json) or CSV (.csv) file of posts")
@click.option("--text-field", required=True, help="field holding the text to score")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="output file; .csv writes CSV, anything else JSONL (default: JSONL on stdout)")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="model folder written by `train` (default: the MLflow champion)")
def score_cmd(input_path: Path, text_field: str, output_path: Path | None, model_dir: Path | None) -> None:
    """Score every row of INPUT: writes the original fields plus `label` and `score_hatespeech`,
    `score_offensive`, `score_normal`."""
    from assets.moderation.text import read_records, score_records, write_records

    try:
        numbered = list(read_records(input_path))
    except (OSError, ValueError) as exc:
        fail(str(exc))
    missing = next((line for line, rec in numbered if text_field not in rec), None)
    if missing is not None:
        fail(f"{input_path}:{missing}: no field {text_field!r}")
    records = [rec for _, rec in numbered]
    model = _load_model(model_dir)
    chatty = len(records) > PROGRESS_ABOVE
    rows = score_records(model, records, text_field, progress=progress if chatty else None)
    if output_path is not None:
        write_records(rows, output_path)
    else:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False))
    if output_path is not None or chatty:
        progress(f"{len(rows)} rows scored with {model.version}" + (f" -> {output_path}" if output_path else ""))


@moderation.command("eval")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="labelled JSONL (.jsonl/.json) or CSV (.csv) file")
@click.option("--text-field", required=True, help="field holding the text")
@click.option("--label-field", required=True, help="field holding the reference label")
@click.option("--label-map", default=None,
              help="JSON object (or .json file) mapping the file's labels to hatespeech/offensive/normal; "
                   "several labels may map to one class")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="model folder written by `train` (default: the MLflow champion)")
@click.option("--baseline", is_flag=True, help="also score alt-profanity-check, side by side")
def eval_cmd(input_path: Path, text_field: str, label_field: str, label_map: str | None, model_dir: Path | None,
             baseline: bool) -> None:
    """Evaluate a model on a labelled file; prints JSON metrics (accuracy, macro_f1, auroc, per_class, toxic, n)."""
    from assets.moderation.text import classification_metrics, profanity_baseline_proba, read_labelled

    mapping = _parse_label_map(label_map)
    try:
        texts, labels = read_labelled(input_path, text_field, label_field, mapping)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if not texts:
        fail(f"{input_path} has no rows")
    model = _load_model(model_dir)
    t0 = time.perf_counter()
    proba = model.predict_proba(texts, progress=progress if len(texts) > PROGRESS_ABOVE else None)
    secs = time.perf_counter() - t0
    out = {"input": str(input_path), "model": model.version, **classification_metrics(labels, proba),
           "texts_per_s": round(len(texts) / secs, 1) if secs > 0 else None}
    if baseline:
        t0 = time.perf_counter()
        bproba = profanity_baseline_proba(texts)
        secs = time.perf_counter() - t0
        out["baseline"] = {"model": "alt-profanity-check", **classification_metrics(labels, bproba),
                           "texts_per_s": round(len(texts) / secs, 1) if secs > 0 else None,
                           "note": "maps p(profane) to offensive; cannot predict hatespeech"}
    click.echo(json.dumps(out, indent=2))


@moderation.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder with train.jsonl, val.jsonl, test.jsonl (fields text, label), e.g. HateXplain")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="where to write the selected model and report.json [default: $SOCIALPULSE_HOME/models/"
                   "text-moderation, i.e. .socialpulse/models/text-moderation]")
@click.option("--finetune-epochs", default=0, show_default=True, type=click.IntRange(min=0),
              help="also fine-tune the whole encoder for N epochs; the better of frozen / fine-tuned on val wins")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="where to encode and fine-tune")
@click.option("--lr", default=5e-5, show_default=True, type=float, help="fine-tuning learning rate")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="fine-tuning batch size")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=8), help="tokens per text")
@click.option("--seed", default=0, show_default=True, type=int, help="fine-tuning random seed")
@click.option("--register", is_flag=True,
              help="also log the run to MLflow and register the model (champion only if it beats the current "
                   "one on val)")
def train_cmd(data_dir: Path, out_dir: Path | None, finetune_epochs: int, device: str, lr: float, batch_size: int,
              max_length: int, seed: int, register: bool) -> None:
    """Train on a HateXplain-style folder, select on val only, write the model to --out and print the
    evaluation table (val metrics of each candidate; test + alt-profanity-check + paper rows for the
    selected model) as JSON. Needs no service unless --register."""
    _quiet_transformers()
    from assets.moderation.text import train_from_folder

    if out_dir is None:  # no settings import: this command also runs where pydantic-settings is absent
        out_dir = Path(os.environ.get("SOCIALPULSE_HOME", ".socialpulse")) / "models" / "text-moderation"

    try:
        model, report = train_from_folder(data_dir, out_dir, finetune_epochs=finetune_epochs, device=device, lr=lr,
                                          batch_size=batch_size, max_length=max_length, seed=seed,
                                          progress=progress)
    except (OSError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    if register:
        from assets.moderation.registry import RegistryUnavailable, log_and_register
        from socialpulse.settings import get_settings

        params = {**report["params"], "data": str(data_dir), "n_val": report["data"]["val"],
                  "n_test": report["data"]["test"]}
        try:
            report["registry"] = log_and_register(
                get_settings().mlflow, model, val_metrics=report["val"]["metrics"]["model"],
                test_metrics=report["test"]["metrics"]["model"], params=params, evaluation=report,
            )
        except RegistryUnavailable as exc:
            fail(f"{exc}; the model is saved in {out_dir}; start MLflow (`socialpulse services up mlflow`) "
                  f"and retry, or leave out --register")
        (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    click.echo(json.dumps(report, indent=2, default=str))


@moderation.command("run")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first day (default: --days back)")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="last day (default: today UTC)")
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=0),
              help="how many days back when --start is not given (0: train only)")
@click.option("--hatexplain-days", is_flag=True, help="also moderate the days that hold the HateXplain posts")
@click.option("--train/--no-train", default=False, show_default=True,
              help="first train, evaluate and register the text model (text_model_job; promoted only if it "
              "beats the champion on val); needs `socialpulse load hatexplain`")
@click.option("--finetune-epochs", default=0, show_default=True, type=click.IntRange(min=0),
              help="with --train: fine-tune the encoder for N epochs (0: frozen encoder + head)")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="with --train: where to encode and fine-tune")
@click.option("--max-train-rows", default=None, type=click.IntRange(min=10), help="with --train: cap the train split")
def run_cmd(start, end, days: int, hatexplain_days: bool, train: bool, finetune_epochs: int, device: str,
            max_train_rows: int | None) -> None:
    """Run the moderation assets through Dagster (runs show in the Dagster UI): optionally retrain the text
    model, then moderate each day (scores -> decisions -> Postgres + Redis). Scoring is incremental: a day
    already moderated by the same models only scores its new or changed posts. Needs the services."""
    from orchestration.runner import moderate_all
    from socialpulse.loaders import HATEXPLAIN_DAYS
    from socialpulse.settings import get_settings

    run_days = day_range(start, end, days) if days or start else []
    if hatexplain_days:
        run_days = sorted(set(run_days) | set(HATEXPLAIN_DAYS.values()))
    config = {"finetune_epochs": finetune_epochs, "device": device, "max_train_rows": max_train_rows}
    summary = moderate_all(get_settings(), run_days, train=train, train_config=config if train else None,
                           progress=progress)
    emit(summary)
    if summary["failed"]:
        fail(f"{len(summary['failed'])} run(s) failed: see the runs in the Dagster UI")


@moderation.command("report")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True,
              help="which HateXplain split's posts to report on")
def report_cmd(split: str) -> None:
    """How the published decisions on the HateXplain posts fall across their reference labels: per label,
    the count and share of allow / limit / review / remove (JSON). Needs `socialpulse load hatexplain` and
    `socialpulse moderation run --hatexplain-days` first; reads the lake, no service needed."""
    from assets.moderation.scoring import hatexplain_action_report
    from socialpulse.settings import get_settings

    try:
        emit(hatexplain_action_report(get_settings(), split))
    except LookupError as exc:
        fail(str(exc))


@moderation.command("worker")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="file written once the models are loaded (the service manager waits for it)")
def worker_cmd(ready_file: Path | None) -> None:
    """Moderate new uploads within seconds: read ingest:posts as consumer group `moderation`, score and decide
    each post with the champion model and the policy, publish to Postgres and the Redis gate. Runs until
    interrupted (`socialpulse services up moderation` runs it in the background). The daily moderation
    assets stay the record in Delta and catch anything the worker missed."""
    import signal

    _quiet_transformers()
    from assets.moderation.worker import run_worker
    from socialpulse.settings import get_settings

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        run_worker(get_settings(), stop=lambda: bool(stopping), ready_file=ready_file,
                   log=lambda m: click.echo(m, err=True))
    except KeyboardInterrupt:
        pass
    except LookupError as exc:
        fail(f"{exc}; train one first: `socialpulse moderation run --train --days 0`")
