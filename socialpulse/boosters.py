"""Saved LightGBM boosters: the model text beside a JSON of what it expects (feature names, version,
metrics and whatever else the model keeps), one layout for every LightGBM model the platform trains."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

MODEL_FILE = "model.txt"


def save(folder: str | Path, booster, meta_file: str, meta: Mapping) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / MODEL_FILE))
    (folder / meta_file).write_text(json.dumps(dict(meta), indent=2))
    return folder


def load(folder: str | Path, meta_file: str, features: Sequence[str], what: str) -> tuple[object, dict]:
    """``(booster, meta)``; ValueError when the saved model expects other features than this code builds."""
    import lightgbm as lgb

    folder = Path(folder)
    meta = json.loads((folder / meta_file).read_text())
    if tuple(meta["features"]) != tuple(features):
        raise ValueError(f"{what} at {folder} expects features {meta['features']}, this code builds {list(features)}")
    return lgb.Booster(model_file=str(folder / MODEL_FILE)), meta
