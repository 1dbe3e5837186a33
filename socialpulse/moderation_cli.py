"""The `socialpulse moderation` commands: score, evaluate and train the text moderation model, and run the
moderation assets (retrain, backfill) through Dagster.

Registered in ``socialpulse.cli`` with ``main.add_command(moderation)``. Heavy imports (torch, mlflow)
happen inside the commands, so ``socialpulse --help`` stays fast. ``train`` needs no service, so it also
runs on a bare GPU box.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import click

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = ("hatespeech", "offensive", "normal")
#: inputs longer than this report progress on stderr
PROGRESS_ABOVE = 2_000
CHUNK = 1_024


def _progress(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


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
            _fail(f"cannot load model from {model_dir}: {exc}")
    from assets.moderation.registry import RegistryUnavailable, load_champion
    from socialpulse.settings import get_settings

    uri = get_settings().mlflow
    try:
        return load_champion(uri, cache_dir=get_settings().home_abs / "cache" / "text-moderation")
    except RegistryUnavailable as exc:
        _fail(f"{exc}; start it with `socialpulse services up mlflow`, set SOCIALPULSE_MLFLOW_TRACKING_URI, "
              f"or pass --model DIR")
    except LookupError as exc:
        _fail(f"{exc.args[0] if exc.args else exc}; or pass --model DIR")
    except Exception as exc:  # noqa: BLE001 - the CLI's job is a clear message
        _fail(f"cannot load the champion from MLflow at {uri} ({type(exc).__name__}: {exc}); pass --model DIR")


def _parse_label_map(value: str | None) -> dict | None:
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith("{") and Path(value).is_file():
        text = Path(value).read_text(encoding="utf-8")
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"--label-map is not valid JSON ({exc.msg}); give an object such as "
              f"'{{\"hate\": \"hatespeech\", \"abusive\": \"offensive\", \"none\": \"normal\"}}' or a .json file")
    if not isinstance(mapping, dict):
        _fail("--label-map must be a JSON object mapping the file's labels to classes")
    bad = sorted({str(v) for v in mapping.values() if v not in CLASSES})
    if bad:
        _fail(f"--label-map maps to {bad}, which are not classes; map every label to one of {list(CLASSES)}")
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
    from assets.moderation.text import read_records

    try:
        records = list(read_records(input_path))
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    missing = next((line for line, rec in records if text_field not in rec), None)
    if missing is not None:
        _fail(f"{input_path}:{missing}: no field {text_field!r}")
    model = _load_model(model_dir)
    texts = [rec[text_field] for _, rec in records]
    n = len(texts)
    chatty = n > PROGRESS_ABOVE
    t0 = time.perf_counter()
    rows = []
    for start in range(0, n, CHUNK):
        proba = model.predict_proba(texts[start:start + CHUNK])
        for (_, rec), p in zip(records[start:start + CHUNK], proba):
            out = dict(rec)
            out["label"] = CLASSES[int(p.argmax())]
            for i, c in enumerate(CLASSES):
                out[f"score_{c}"] = round(float(p[i]), 6)
            rows.append(out)
        if chatty:
            done = min(start + CHUNK, n)
            _progress(f"scored {done}/{n} ({done / (time.perf_counter() - t0):.0f} texts/s)")

    if output_path is not None and output_path.suffix.lower() == ".csv":
        fields: list[str] = []
        for r in rows:
            fields.extend(k for k in r if k not in fields)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with open(output_path, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    else:
        fh = open(output_path, "w", encoding="utf-8") if output_path is not None else None
        try:
            for r in rows:
                click.echo(json.dumps(r, ensure_ascii=False), file=fh)
        finally:
            if fh is not None:
                fh.close()
    if output_path is not None or chatty:
        _progress(f"{n} rows scored with {model.version}" + (f" -> {output_path}" if output_path else ""))


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
        _fail(str(exc))
    if not texts:
        _fail(f"{input_path} has no rows")
    model = _load_model(model_dir)
    t0 = time.perf_counter()
    proba = model.predict_proba(texts, progress=_progress if len(texts) > PROGRESS_ABOVE else None)
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
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--lr", default=5e-5, show_default=True, type=float, help="fine-tuning learning rate")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="fine-tuning batch size")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=8), help="tokens per text")
@click.option("--seed", default=0, show_default=True, type=int)
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
                                          progress=_progress)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
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
            _fail(f"{exc}; the model is saved in {out_dir}; start MLflow (`socialpulse services up mlflow`) "
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
              "beats the champion on val); needs `socialpulse load hatexplain PATH`")
@click.option("--finetune-epochs", default=0, show_default=True, type=click.IntRange(min=0),
              help="with --train: fine-tune the encoder for N epochs (0: frozen encoder + head)")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--max-train-rows", default=None, type=click.IntRange(min=10), help="with --train: cap the train split")
def run_cmd(start, end, days: int, hatexplain_days: bool, train: bool, finetune_epochs: int, device: str,
            max_train_rows: int | None) -> None:
    """Run the moderation assets through Dagster (runs show in the Dagster UI): optionally retrain the text
    model, then moderate each day (scores -> decisions -> Postgres + Redis). Scoring is incremental: a day
    already moderated by the same models only scores its new or changed posts. Needs the services."""
    from orchestration.runner import moderate_all
    from socialpulse.loaders import HATEXPLAIN_DAYS
    from socialpulse.settings import get_settings

    end_d = end.date() if end else dt.datetime.now(dt.timezone.utc).date()
    start_d = start.date() if start else end_d - dt.timedelta(days=days - 1)
    if start_d > end_d and days:
        _fail(f"--start {start_d} is after --end {end_d}")
    run_days = [start_d + dt.timedelta(days=i) for i in range((end_d - start_d).days + 1)] if days or start else []
    if hatexplain_days:
        run_days = sorted(set(run_days) | set(HATEXPLAIN_DAYS.values()))
    config = {"finetune_epochs": finetune_epochs, "device": device, "max_train_rows": max_train_rows}
    summary = moderate_all(get_settings(), run_days, train=train, train_config=config if train else None,
                           progress=_progress)
    click.echo(json.dumps(summary, indent=2))
    if summary["failed"]:
        _fail(f"{len(summary['failed'])} run(s) failed: see the runs in the Dagster UI")


@moderation.command("report")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
def report_cmd(split: str) -> None:
    """How the published decisions on the HateXplain posts fall across their reference labels: per label,
    the count and share of allow / limit / review / remove (JSON). Needs `socialpulse load hatexplain` and
    `socialpulse moderation run --hatexplain-days` first; reads the lake, no service needed."""
    from assets.moderation.scoring import action_table
    from assets.moderation.tables import MODERATION_DECISIONS
    from socialpulse import lake
    from socialpulse.loaders import HATEXPLAIN_DAYS
    from socialpulse.settings import get_settings

    s = get_settings()
    uri = s.table_uri("reference", "hatexplain")
    if lake.open_table(uri) is None:
        _fail("no HateXplain reference table: run `socialpulse load hatexplain PATH` first")
    ref = lake.read(uri, columns=["post_id", "split", "label"]).to_pylist()
    labels = {r["post_id"]: r["label"] for r in ref if split == "all" or r["split"] == split}
    days = list(HATEXPLAIN_DAYS.values()) if split == "all" else [HATEXPLAIN_DAYS[split]]
    decisions = lake.read(MODERATION_DECISIONS, settings=s, columns=["post_id", "action", "policy_version"],
                          filters=[("event_date", "in", days)]).to_pylist()
    if not decisions:
        _fail("no decisions on the HateXplain days yet: run `socialpulse moderation run --hatexplain-days`")
    out = action_table(decisions, labels)
    out["split"] = split
    out["decided"] = sum(1 for d in decisions if d["post_id"] in labels)
    out["labelled"] = len(labels)
    out["policy_versions"] = sorted({d["policy_version"] for d in decisions})
    click.echo(json.dumps(out, indent=2))


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
        _fail(f"{exc}; train one first: `socialpulse moderation run --train --days 0`")
