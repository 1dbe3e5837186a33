"""Text moderation: hate speech / offensive / normal classification of short posts (HateXplain classes).

Pure logic: imports only the standard library, numpy, torch, transformers and scikit-learn (the last two
lazily) and the shared encoder (:mod:`socialpulse.encoder`), so the same file runs inside the platform and
standalone on a GPU box. Nothing here touches Dagster, MLflow or stores; see
:mod:`assets.moderation.registry` for the MLflow side.

Two deployable kinds of :class:`TextModerator`, both "MiniLM mean-pooled embedding -> linear head ->
softmax":

* ``frozen``: the packaged all-MiniLM-L6-v2 encoder as is (L2-normalised embeddings, exactly what
  sentence-transformers computes) + a scikit-learn logistic-regression head. Only the head is saved; the
  encoder comes from :func:`encoder_path` at load time and must be the same weights (checked by hash).
* ``finetuned``: the whole encoder fine-tuned with a linear head on un-normalised mean-pooled states;
  the saved folder holds the Hugging Face model folder and the head.

Model selection uses the validation split only (:func:`train_text_moderator`,
:func:`finetune_text_moderator`); the test split is for reporting (:func:`evaluation_table`).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

try:
    from socialpulse import encoder as _encoder
except ImportError:  # standalone on a GPU box without the platform installed: load the file beside the repo
    import importlib.util
    import sys

    _spec = importlib.util.spec_from_file_location(
        "_socialpulse_encoder", Path(__file__).resolve().parents[2] / "socialpulse" / "encoder.py")
    _encoder = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _encoder
    _spec.loader.exec_module(_encoder)

# the encoder API, re-exported: the moderation model reads these embeddings
ENCODER_ENV, ENCODER_NAME, TextEncoder = _encoder.ENCODER_ENV, _encoder.ENCODER_NAME, _encoder.TextEncoder
_autocast, _clean, _mean_pool = _encoder._autocast, _encoder._clean, _encoder._mean_pool
encoder_path, weights_digest = _encoder.encoder_path, _encoder.weights_digest

CLASSES: tuple[str, ...] = ("hatespeech", "offensive", "normal")
TOXIC_CLASSES: tuple[str, ...] = ("hatespeech", "offensive")
FORMAT = "socialpulse-text-moderator"
FORMAT_VERSION = 1

#: HateXplain paper (Mathew et al., AAAI 2021), test split, three classes.
PAPER_RESULTS: list[dict[str, Any]] = [
    {"model": "CNN-GRU", "accuracy": 0.627, "macro_f1": 0.606, "auroc": 0.793},
    {"model": "BiRNN-HateXplain", "accuracy": 0.629, "macro_f1": 0.629, "auroc": 0.805},
    {"model": "BERT", "accuracy": 0.690, "macro_f1": 0.674, "auroc": 0.843},
    {"model": "BERT-HateXplain", "accuracy": 0.698, "macro_f1": 0.687, "auroc": 0.851},
]

Progress = Callable[[str], None] | None


class EncoderMismatchError(ValueError):
    """A saved frozen-encoder model was trained on different encoder weights than the ones available."""


def _say(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


# --- the deployable model ----------------------------------------------------------------------
def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _hash_arrays(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, torch.Tensor):
            h.update(np.ascontiguousarray(p.detach().cpu().float().numpy()).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()


class TextModerator:
    """Encoder + linear head + softmax over :data:`CLASSES`; the unit that is saved, registered and served.

    ``kind`` is ``"frozen"`` (packaged MiniLM + logistic-regression head; only the head is saved) or
    ``"finetuned"`` (fine-tuned encoder saved with the head). ``version`` identifies the trained model
    (kind + hash of its parameters and weights).
    """

    classes: tuple[str, ...] = CLASSES

    def __init__(self, kind: str, encoder: TextEncoder, weight: np.ndarray, bias: np.ndarray, *,
                 params: Mapping[str, Any] | None = None, version: str | None = None):
        if kind not in ("frozen", "finetuned"):
            raise ValueError(f"unknown model kind {kind!r}; expected 'frozen' or 'finetuned'")
        weight = np.asarray(weight, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        if weight.shape != (len(CLASSES), encoder.dim) or bias.shape != (len(CLASSES),):
            raise ValueError(f"head shapes {weight.shape}/{bias.shape} do not fit {len(CLASSES)} classes x "
                             f"{encoder.dim} dims")
        self.kind = kind
        self.encoder = encoder
        self.weight = weight
        self.bias = bias
        self.params = dict(params or {})
        self.version = version or f"text-{kind}-{_hash_arrays(kind, self.params, encoder.version, weight, bias)[:12]}"

    def __repr__(self) -> str:
        return f"TextModerator(kind={self.kind!r}, version={self.version!r})"

    def warm(self) -> "TextModerator":
        """Load the encoder weights now (so timings and later calls do not include it)."""
        self.encoder.load()
        return self

    def predict_proba(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """Class probabilities, shape ``(n, 3)`` in :data:`CLASSES` order; each row sums to 1."""
        emb = self.encoder.encode(texts, progress=progress).astype(np.float64)
        if emb.shape[0] == 0:
            return np.zeros((0, len(CLASSES)))
        return _softmax(emb @ self.weight.T + self.bias)

    def predict(self, texts: Sequence[str]) -> list[str]:
        proba = self.predict_proba(texts)
        return [CLASSES[i] for i in proba.argmax(axis=1)]

    # --- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` (config.json + head.npz, plus encoder/ when fine-tuned)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "head.npz", weight=self.weight, bias=self.bias)
        encoder_version = self.encoder.version
        if self.kind == "finetuned":
            self.encoder.load()
            enc_dir = d / "encoder"
            model = self.encoder._model
            model.save_pretrained(str(enc_dir), safe_serialization=True)
            self.encoder._tokenizer.save_pretrained(str(enc_dir))
            encoder_version = f"{self.encoder.name}@{weights_digest(enc_dir)[:12]}"
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "version": self.version,
            "classes": list(CLASSES),
            "encoder_version": encoder_version,
            "encoder_name": self.encoder.name,
            "normalize": self.encoder.normalize,
            "max_length": self.encoder.max_length,
            "dim": self.encoder.dim,
            "params": self.params,
        }
        (d / "config.json").write_text(json.dumps(config, indent=2, default=str))
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str = "cpu", batch_size: int = 64) -> "TextModerator":
        """Read a folder written by :meth:`save`. A frozen model takes its encoder from
        :func:`encoder_path` and refuses (:class:`EncoderMismatchError`) weights other than the ones it was
        trained on."""
        d = Path(directory)
        cfg_file = d / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{d} is not a text moderation model folder (no config.json)")
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_file} is not a {FORMAT} config (format={cfg.get('format')!r})")
        if tuple(cfg.get("classes", ())) != CLASSES:
            raise ValueError(f"{cfg_file}: classes {cfg.get('classes')} differ from {list(CLASSES)}")
        kind = cfg["kind"]
        if kind == "frozen":
            enc = TextEncoder(encoder_path(), device=device, batch_size=batch_size,
                              max_length=cfg.get("max_length", 128), normalize=cfg.get("normalize", True),
                              name=cfg.get("encoder_name", ENCODER_NAME))
        elif kind == "finetuned":
            enc = TextEncoder(d / "encoder", device=device, batch_size=batch_size,
                              max_length=cfg.get("max_length", 128), normalize=cfg.get("normalize", False),
                              name=cfg.get("encoder_name", ENCODER_NAME))
        else:
            raise ValueError(f"{cfg_file}: unknown kind {kind!r}")
        if enc.version != cfg["encoder_version"]:
            if kind == "frozen":
                raise EncoderMismatchError(
                    f"model {cfg.get('version')} at {d} was trained on text encoder {cfg['encoder_version']}, "
                    f"but the encoder at {enc.path} is {enc.version}; point {ENCODER_ENV} at the encoder "
                    f"it was trained with, or retrain the model"
                )
            raise EncoderMismatchError(
                f"fine-tuned encoder in {d / 'encoder'} is {enc.version}, config.json expects "
                f"{cfg['encoder_version']}: the folder is damaged or mixed up"
            )
        with np.load(d / "head.npz") as head:
            weight, bias = head["weight"], head["bias"]
        return cls(kind, enc, weight, bias, params=cfg.get("params"), version=cfg["version"])


# --- labels and metrics ------------------------------------------------------------------------
def _label_indices(labels: Sequence[str], classes: Sequence[str] = CLASSES) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, lab in enumerate(labels):
        if lab not in index:
            raise ValueError(f"label {lab!r} (item {i}) is not one of {list(classes)}")
        out[i] = index[lab]
    return out


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _auroc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Binary AUROC (ties count one half); None unless both classes occur."""
    from sklearn.metrics import roc_auc_score

    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, score))


def classification_metrics(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str] = CLASSES) -> dict:
    """Metrics of class probabilities ``proba`` (n, len(classes)) against string labels; prediction = argmax.

    * ``accuracy``; ``macro_f1``: unweighted mean F1 over the classes that occur in ``y_true`` or in the
      predictions (scikit-learn's convention; on HateXplain all three occur);
    * ``auroc``: macro one-vs-rest AUROC over ``classes``; None when a class is absent from ``y_true``;
    * ``per_class``: ``{cls: {precision, recall, f1, support}}``; ``n``;
    * ``toxic``: binary toxic (hatespeech or offensive) vs normal: precision/recall/F1 of the argmax
      decision and AUROC of 1 - p(normal).
    """
    classes = tuple(classes)
    proba = np.asarray(proba, dtype=np.float64)
    y = _label_indices(list(y_true), classes)
    if proba.ndim != 2 or proba.shape != (len(y), len(classes)):
        raise ValueError(f"proba has shape {proba.shape}; expected ({len(y)}, {len(classes)})")
    n = len(y)
    pred = proba.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    per_class: dict[str, dict] = {}
    f1s = []
    for k, c in enumerate(classes):
        tp = int(((pred == k) & (y == k)).sum())
        fp = int(((pred == k) & (y != k)).sum())
        fn = int(((pred != k) & (y == k)).sum())
        p, r, f = _prf(tp, fp, fn)
        per_class[c] = {"precision": p, "recall": r, "f1": f, "support": int((y == k).sum())}
        if (y == k).any() or (pred == k).any():
            f1s.append(f)
    aurocs = [_auroc((y == k).astype(int), proba[:, k]) for k in range(len(classes))] if n else [None]
    auroc = float(np.mean(aurocs)) if all(a is not None for a in aurocs) else None

    toxic: dict[str, Any] = {"precision": None, "recall": None, "f1": None, "auroc": None}
    if "normal" in classes and n:
        k_norm = classes.index("normal")
        yt = (y != k_norm).astype(int)
        pt = (pred != k_norm).astype(int)
        p, r, f = _prf(int((pt & yt).sum()), int((pt & (1 - yt)).sum()), int(((1 - pt) & yt).sum()))
        toxic = {"precision": p, "recall": r, "f1": f, "auroc": _auroc(yt, 1.0 - proba[:, k_norm]),
                 "support": int(yt.sum())}
    return {
        "n": n,
        "accuracy": float((pred == y).mean()) if n else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "auroc": auroc,
        "per_class": per_class,
        "toxic": toxic,
    }


def _summary(m: Mapping[str, Any]) -> dict:
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "auroc": m["auroc"],
            "toxic_f1": m["toxic"]["f1"], "toxic_auroc": m["toxic"]["auroc"]}


# --- baseline ----------------------------------------------------------------------------------
def profanity_baseline_proba(texts: Sequence[str]) -> np.ndarray:
    """alt-profanity-check as a 3-class baseline: ``p = predict_prob(texts)`` mapped to ``[0, p, 1 - p]``.

    It only knows "profane or not", so it can never tell hate speech from merely offensive language: it
    never predicts ``hatespeech`` (its hatespeech recall is 0 by construction) and it misses hate written
    without swear words. Compare it on macro-F1 with that in mind, and on the toxic-vs-normal block.
    """
    from profanity_check import predict_prob

    texts = _clean(texts)
    if not texts:
        return np.zeros((0, 3))
    p = np.clip(np.asarray(predict_prob(texts), dtype=np.float64), 0.0, 1.0)
    return np.stack([np.zeros_like(p), p, 1.0 - p], axis=1)


def evaluation_table(model: TextModerator, texts: Sequence[str], labels: Sequence[str], *,
                     baseline: bool = True, paper: bool = True, progress: Progress = None) -> dict:
    """One evaluation run, side by side: ``rows`` for ``model``, alt-profanity-check and the HateXplain
    paper (``source="paper"``, copied from the publication, not measured here), each with accuracy,
    macro-F1, AUROC, toxic-vs-normal F1 and, for measured rows, texts/s (encoder load excluded).
    ``metrics`` holds the full :func:`classification_metrics` of each measured row."""
    texts = _clean(texts)
    labels = list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    model.warm()
    rows: list[dict] = []
    metrics: dict[str, dict] = {}

    def measure(name: str, key: str, fn) -> None:
        t0 = time.perf_counter()
        proba = fn(texts)
        secs = time.perf_counter() - t0
        m = classification_metrics(labels, proba)
        metrics[key] = m
        rows.append({"model": name, "source": "measured", **_summary(m), "n": m["n"],
                     "seconds": round(secs, 3), "texts_per_s": round(len(texts) / secs, 1) if secs > 0 else None})

    _say(progress, f"evaluating {model.version} on {len(texts)} texts")
    measure(f"socialpulse {model.version}", "model", lambda t: model.predict_proba(t, progress=progress))
    if baseline:
        try:
            import profanity_check  # noqa: F401 - absent on a bare GPU box: report it, do not fail the run
        except ImportError as exc:
            rows.append({"model": "alt-profanity-check", "source": "measured", "error": f"not installed ({exc})"})
        else:
            _say(progress, "evaluating alt-profanity-check")
            measure("alt-profanity-check", "baseline", profanity_baseline_proba)
    if paper:
        for r in PAPER_RESULTS:
            rows.append({"model": r["model"], "source": "paper", "accuracy": r["accuracy"],
                         "macro_f1": r["macro_f1"], "auroc": r["auroc"], "toxic_f1": None, "toxic_auroc": None,
                         "n": None, "seconds": None, "texts_per_s": None})
    return {"n": len(texts), "model_version": model.version, "rows": rows, "metrics": metrics}


# --- calibration ---------------------------------------------------------------------------------
def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[str]) -> float:
    """Temperature scaling (Guo et al., 2017): the T > 0 that minimises the VAL negative log-likelihood of
    ``softmax(logits / T)``. It changes no prediction (argmax is kept) but makes the probabilities mean
    what the moderation policy's thresholds assume (a head fit on few texts is badly over-confident)."""
    y = _label_indices(list(labels))
    grid = np.geomspace(0.05, 50.0, 400)
    losses = [_nll(logits / t, y) for t in grid]
    return float(grid[int(np.argmin(losses))])


def _calibrated(weight: np.ndarray, bias: np.ndarray, val_logits: np.ndarray, val_labels: Sequence[str]):
    """Fold a val-fitted temperature into a linear head: (weight / T, bias / T, report)."""
    y = _label_indices(list(val_labels))
    finite = np.where(np.isfinite(val_logits), val_logits, -1e9)
    t = fit_temperature(finite, val_labels)
    return weight / t, bias / t, {"temperature": round(t, 4), "val_nll_before": round(_nll(finite, y), 4),
                                  "val_nll_after": round(_nll(finite / t, y), 4)}


# --- training: frozen encoder + logistic regression --------------------------------------------
def _head_from_sklearn(clf, mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold standardisation into the LR weights and lay them out in CLASSES order.

    A class absent from training gets a -1e9 logit (probability 0); the binary case (two classes seen)
    becomes softmax over [0, z], which equals scikit-learn's sigmoid."""
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    seen = [str(c) for c in clf.classes_]
    if len(seen) == 2:
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    w_scaled = coef / scale
    b_scaled = intercept - w_scaled @ mean
    weight = np.zeros((len(CLASSES), coef.shape[1]))
    bias = np.full(len(CLASSES), -1e9)
    for i, c in enumerate(seen):
        k = CLASSES.index(c)
        weight[k], bias[k] = w_scaled[i], b_scaled[i]
    return weight, bias


def train_text_moderator(train_texts: Sequence[str], train_labels: Sequence[str], val_texts: Sequence[str],
                         val_labels: Sequence[str], *, encoder: TextEncoder | None = None,
                         Cs: Sequence[float] = (0.25, 1.0, 4.0),
                         class_weights: Sequence[str | None] = ("balanced", None),
                         max_iter: int = 2000, progress: Progress = None) -> tuple[TextModerator, dict]:
    """Frozen MiniLM embeddings + a logistic-regression head (features standardised on train), one head per
    ``C`` x ``class_weight``; the head with the best VAL macro-F1 wins (ties: accuracy, then grid order).

    Returns ``(model, report)``; the report lists every candidate's val metrics, the chosen params, and
    encode / fit timings."""
    from sklearn.linear_model import LogisticRegression

    train_texts, val_texts = _clean(train_texts), _clean(val_texts)
    train_labels, val_labels = list(train_labels), list(val_labels)
    if len(train_texts) != len(train_labels) or len(val_texts) != len(val_labels):
        raise ValueError("texts and labels differ in length")
    if not train_texts or not val_texts:
        raise ValueError("train and val must both be non-empty")
    _label_indices(train_labels)
    _label_indices(val_labels)
    if len(set(train_labels)) < 2:
        raise ValueError("train needs at least two classes")
    encoder = encoder or TextEncoder()
    t_start = time.perf_counter()
    encoder.load()
    _say(progress, f"encoding {len(train_texts)} train + {len(val_texts)} val texts with {encoder.version}")
    t0 = time.perf_counter()
    x_train = encoder.encode(train_texts, progress=progress).astype(np.float64)
    x_val = encoder.encode(val_texts, progress=progress).astype(np.float64)
    encode_s = time.perf_counter() - t0
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[scale < 1e-12] = 1.0
    xs_train = (x_train - mean) / scale

    candidates: list[dict] = []
    best: tuple | None = None
    t_fit = time.perf_counter()
    for cw in class_weights:
        for C in Cs:
            t1 = time.perf_counter()
            clf = LogisticRegression(C=float(C), class_weight=cw, max_iter=max_iter)
            clf.fit(xs_train, train_labels)
            weight, bias = _head_from_sklearn(clf, mean, scale)
            m = classification_metrics(val_labels, _softmax(x_val @ weight.T + bias))
            cand = {"C": float(C), "class_weight": cw, "val": _summary(m),
                    "fit_seconds": round(time.perf_counter() - t1, 2),
                    "n_iter": int(np.max(clf.n_iter_))}
            candidates.append(cand)
            _say(progress, f"C={C} class_weight={cw}: val macro-F1 {m['macro_f1']:.4f} acc {m['accuracy']:.4f}")
            key = (m["macro_f1"], m["accuracy"])
            if best is None or key > best[0]:
                best = (key, cand, weight, bias, m)
    fit_s = time.perf_counter() - t_fit
    assert best is not None, "empty grid: give at least one C and one class weight"
    _, chosen, weight, bias, val_m = best
    weight, bias, calibration = _calibrated(weight, bias, x_val @ weight.T + bias, val_labels)
    _say(progress, f"temperature {calibration['temperature']}: val NLL {calibration['val_nll_before']} -> "
                   f"{calibration['val_nll_after']}")
    params = {"kind": "frozen", "C": chosen["C"], "class_weight": chosen["class_weight"], "standardize": True,
              "max_iter": max_iter, "n_train": len(train_texts), "temperature": calibration["temperature"]}
    model = TextModerator("frozen", encoder, weight, bias, params=params)
    n_enc = len(train_texts) + len(val_texts)
    report = {
        "kind": "frozen",
        "model_version": model.version,
        "encoder_version": encoder.version,
        "n_train": len(train_texts),
        "n_val": len(val_texts),
        "chosen": {"C": chosen["C"], "class_weight": chosen["class_weight"]},
        "params": params,
        "candidates": candidates,
        "val_metrics": val_m,
        "calibration": calibration,
        "encode_seconds": round(encode_s, 2),
        "encode_texts_per_s": round(n_enc / encode_s, 1) if encode_s > 0 else None,
        "fit_seconds": round(fit_s, 2),
        "train_seconds": round(time.perf_counter() - t_start, 2),
    }
    return model, report


# --- training: fine-tune the whole encoder -----------------------------------------------------
def finetune_text_moderator(train_texts: Sequence[str], train_labels: Sequence[str], val_texts: Sequence[str],
                            val_labels: Sequence[str], *, epochs: int = 3, lr: float = 5e-5, batch_size: int = 32,
                            device: str = "cpu", max_length: int = 128, seed: int = 0, warmup: float = 0.1,
                            weight_decay: float = 0.01, dropout: float = 0.1, path: str | Path | None = None,
                            progress: Progress = None) -> tuple[TextModerator, dict]:
    """Fine-tune all of MiniLM plus a linear head on mean-pooled states (cross-entropy, AdamW, linear
    warm-up over ``warmup`` of the steps then linear decay, gradient clipping at 1, bf16/fp16 autocast on
    CUDA). After each epoch the model is scored on val; the epoch with the best VAL macro-F1 is kept.

    Returns ``(model, report)``; the report has per-epoch train loss, val metrics and seconds."""
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train_texts, val_texts = _clean(train_texts), _clean(val_texts)
    y_train = _label_indices(list(train_labels))
    val_labels = list(val_labels)
    _label_indices(val_labels)
    if len(train_texts) != len(y_train) or len(val_texts) != len(val_labels):
        raise ValueError("texts and labels differ in length")
    if not train_texts or not val_texts:
        raise ValueError("train and val must both be non-empty")
    if epochs < 1:
        raise ValueError("epochs must be >= 1")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")

    src = Path(path) if path is not None else encoder_path()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src), dtype=torch.float32).to(device)
    dim = int(model.config.hidden_size)
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(dim, len(CLASSES))
    with torch.no_grad():
        head.weight.normal_(0.0, 0.02, generator=gen)
        head.bias.zero_()
    head = head.to(device)
    drop = torch.nn.Dropout(dropout)
    base_version = f"{ENCODER_NAME}@{weights_digest(src)[:12]}"
    enc = TextEncoder._from_loaded(model, tokenizer, device=device, batch_size=max(64, batch_size),
                                   max_length=max_length, normalize=False, name=f"{ENCODER_NAME}-finetuned",
                                   version=f"finetuned-from-{base_version}")

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    named = list(model.named_parameters()) + [(f"head.{n}", p) for n, p in head.named_parameters()]
    groups = [
        {"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr)
    steps_per_epoch = math.ceil(len(train_texts) / batch_size)
    total = steps_per_epoch * epochs
    sched = get_linear_schedule_with_warmup(opt, int(round(warmup * total)), total)
    loss_fn = torch.nn.CrossEntropyLoss()

    def val_proba() -> np.ndarray:
        emb = enc.encode(val_texts)
        with torch.no_grad():
            w = head.weight.detach().double().cpu().numpy()
            b = head.bias.detach().double().cpu().numpy()
        return _softmax(emb.astype(np.float64) @ w.T + b)

    history: list[dict] = []
    best: tuple | None = None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        head.train()
        perm = rng.permutation(len(train_texts))
        loss_sum, seen = 0.0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * batch_size:(step + 1) * batch_size]
            batch = tokenizer([train_texts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            target = torch.as_tensor(y_train[idx], device=device)
            with _autocast(device):
                hidden = model(**batch).last_hidden_state
                pooled = _mean_pool(hidden.float(), batch["attention_mask"])
                logits = head(drop(pooled))
            loss = loss_fn(logits.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            if progress and step % 100 == 99:
                progress(f"epoch {epoch} step {step + 1}/{steps_per_epoch} loss {loss_sum / seen:.4f}")
        train_s = time.perf_counter() - t0
        model.eval()
        head.eval()
        m = classification_metrics(val_labels, val_proba())
        secs = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "val": _summary(m),
                        "train_seconds": round(train_s, 2), "seconds": round(secs, 2)})
        _say(progress, f"epoch {epoch}: loss {loss_sum / max(seen, 1):.4f} val macro-F1 {m['macro_f1']:.4f} "
                       f"acc {m['accuracy']:.4f} ({secs:.1f}s)")
        if best is None or (m["macro_f1"], m["accuracy"]) > best[0]:
            best = ((m["macro_f1"], m["accuracy"]), epoch, m,
                    {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
                    copy.deepcopy(head).cpu())

    assert best is not None
    _, best_epoch, val_m, state, best_head = best
    model.load_state_dict(state)
    model.eval()
    weight = best_head.weight.detach().double().numpy()
    bias = best_head.bias.detach().double().numpy()
    val_emb = enc.encode(val_texts).astype(np.float64)
    weight, bias, calibration = _calibrated(weight, bias, val_emb @ weight.T + bias, val_labels)
    params = {"kind": "finetuned", "epochs": epochs, "best_epoch": best_epoch, "lr": lr, "batch_size": batch_size,
              "max_length": max_length, "seed": seed, "warmup": warmup, "weight_decay": weight_decay,
              "dropout": dropout, "base_encoder": base_version, "n_train": len(train_texts),
              "temperature": calibration["temperature"]}
    digest = _hash_arrays("finetuned", params, *[state[k] for k in sorted(state)], weight, bias)
    version = f"text-finetuned-{digest[:12]}"
    moderator = TextModerator("finetuned", enc, weight, bias, params=params, version=version)
    report = {
        "kind": "finetuned",
        "model_version": version,
        "device": str(device),
        "n_train": len(train_texts),
        "n_val": len(val_texts),
        "params": params,
        "chosen": {"best_epoch": best_epoch},
        "epochs": history,
        "best_epoch": best_epoch,
        "val_metrics": val_m,
        "calibration": calibration,
        "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 2),
        "train_seconds": round(time.perf_counter() - t_start, 2),
    }
    return moderator, report


# --- reading labelled files --------------------------------------------------------------------
def read_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, record)`` from a JSONL (``.jsonl``/``.json``; a ``.json`` file holding one JSON array
    of objects also works) or CSV (``.csv``, header row) file. ``line`` is the 1-based line in the file
    (for a JSON array, the item's 1-based position)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".jsonl", ".json", ".csv"):
        raise ValueError(f"{p}: unsupported file type {ext or '(none)'!r}; use .jsonl, .json or .csv")
    if ext == ".csv":
        with open(p, encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield reader.line_num, dict(row)
        return
    with open(p, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        if ext == ".json" and head.startswith("["):
            try:
                items = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}: invalid JSON ({exc})") from exc
            for i, obj in enumerate(items, start=1):
                if not isinstance(obj, dict):
                    raise ValueError(f"{p}: item {i} is not a JSON object")
                yield i, obj
            return
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{n}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"{p}:{n}: not a JSON object")
            yield n, obj


def score_records(model: TextModerator, records: Sequence[dict], text_field: str, *, chunk: int = 1024,
                  progress: Progress = None) -> list[dict]:
    """Each record with ``label`` (its most probable class) and ``score_<class>`` for every class added,
    scored ``chunk`` texts at a time (progress after each chunk)."""
    texts = [rec[text_field] for rec in records]
    rows: list[dict] = []
    t0 = time.perf_counter()
    for start in range(0, len(texts), chunk):
        proba = model.predict_proba(texts[start:start + chunk])
        for rec, p in zip(records[start:start + chunk], proba):
            rows.append({**rec, "label": CLASSES[int(p.argmax())],
                         **{f"score_{c}": round(float(p[i]), 6) for i, c in enumerate(CLASSES)}})
        _say(progress, f"scored {len(rows)}/{len(texts)} ({len(rows) / (time.perf_counter() - t0):.0f} texts/s)")
    return rows


def write_records(rows: Sequence[dict], path: str | Path) -> None:
    """Write rows as CSV (``.csv``: one column per field seen, lists and objects as JSON) or else JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if path.suffix.lower() != ".csv":
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            return
        fields: list[str] = []
        for r in rows:
            fields.extend(k for k in r if k not in fields)
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})


def _map_label(value: Any, label_map: Mapping[str, str] | None) -> str | None:
    if label_map:
        if value in label_map:
            return label_map[value]
        if str(value) in label_map:
            return label_map[str(value)]
    if isinstance(value, str) and value in CLASSES:
        return value
    return None


def read_labelled(path: str | Path, text_field: str, label_field: str | None = None,
                  label_map: Mapping[str, str] | None = None) -> tuple[list[str], list[str] | None]:
    """Texts (and labels, when ``label_field`` is given) from a JSONL or CSV file (see :func:`read_records`).

    ``label_map`` maps the file's labels to :data:`CLASSES` (several labels may map to one class); a label
    that is neither in the map nor already a class is an error naming the value and the line, as is a row
    without ``text_field`` (or without ``label_field``). A null text reads as the empty string.
    """
    if label_map is not None:
        if not isinstance(label_map, Mapping):
            raise ValueError("label map must be a JSON object mapping file labels to classes")
        bad = {k: v for k, v in label_map.items() if v not in CLASSES}
        if bad:
            raise ValueError(f"label map targets {sorted(map(str, bad.values()))} are not classes; "
                             f"map every label to one of {list(CLASSES)}")
    texts: list[str] = []
    labels: list[str] | None = [] if label_field else None
    for line, rec in read_records(path):
        if text_field not in rec:
            raise ValueError(f"{path}:{line}: no field {text_field!r} (fields: {sorted(rec)})")
        texts.append("" if rec[text_field] is None else str(rec[text_field]))
        if label_field:
            if label_field not in rec:
                raise ValueError(f"{path}:{line}: no field {label_field!r} (fields: {sorted(rec)})")
            mapped = _map_label(rec[label_field], label_map)
            if mapped is None:
                raise ValueError(f"{path}:{line}: label {rec[label_field]!r} is not one of {list(CLASSES)}"
                                 + (" and not in the label map" if label_map else "; pass a label map"))
            labels.append(mapped)
    return texts, labels


# --- the whole training run (CLI and standalone) -----------------------------------------------
def train_from_folder(data_dir: str | Path, out_dir: str | Path | None = None, *, finetune_epochs: int = 0,
                      device: str = "cpu", lr: float = 5e-5, batch_size: int = 32, max_length: int = 128,
                      seed: int = 0, progress: Progress = None) -> tuple[TextModerator, dict]:
    """Train on a HateXplain-style folder (``train/val/test.jsonl`` with ``text`` and ``label``): the frozen
    model always, a fine-tuned one too when ``finetune_epochs`` > 0; keep the better on VAL macro-F1, then
    evaluate it once on val and test beside alt-profanity-check (and the paper rows on test). Writes the
    model and ``report.json`` to ``out_dir`` when given. Needs no service."""
    data_dir = Path(data_dir)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")
    splits = {}
    for split in ("train", "val", "test"):
        f = data_dir / f"{split}.jsonl"
        if not f.is_file():
            raise FileNotFoundError(f"{data_dir} has no {split}.jsonl")
        splits[split] = read_labelled(f, "text", "label")
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = splits["train"], splits["val"], splits["test"]
    _say(progress, f"data: train {len(tr_x)} / val {len(va_x)} / test {len(te_x)} from {data_dir}")

    t0 = time.perf_counter()
    on_gpu = str(device).startswith("cuda")
    encoder = TextEncoder(device=device, batch_size=512 if on_gpu else 64, max_length=max_length)
    candidates = [train_text_moderator(tr_x, tr_y, va_x, va_y, encoder=encoder, progress=progress)]
    if finetune_epochs:
        candidates.append(finetune_text_moderator(
            tr_x, tr_y, va_x, va_y, epochs=finetune_epochs, lr=lr, batch_size=batch_size, device=device,
            max_length=max_length, seed=seed, progress=progress))
    train_s = time.perf_counter() - t0
    model, rep = max(candidates, key=lambda c: (c[1]["val_metrics"]["macro_f1"], c[1]["val_metrics"]["accuracy"]))
    _say(progress, f"selected {model.version} on val macro-F1 {rep['val_metrics']['macro_f1']:.4f}")
    if on_gpu:
        model.encoder.batch_size = 512

    val_eval = evaluation_table(model, va_x, va_y, paper=False, progress=progress)
    test_eval = evaluation_table(model, te_x, te_y, progress=progress)
    report = {
        "model_version": model.version,
        "kind": model.kind,
        "params": rep["params"],
        "out": str(out_dir) if out_dir is not None else None,
        "device": str(device),
        "torch": torch.__version__,
        "data": {"path": str(data_dir), "train": len(tr_x), "val": len(va_x), "test": len(te_x)},
        "train_seconds": round(train_s, 1),
        "selection": "val macro-F1 (test evaluated once, for the selected model only)",
        "candidates": [c[1] for c in candidates],
        "val": val_eval,
        "test": test_eval,
    }
    if out_dir is not None:
        out = Path(out_dir)
        model.save(out)
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return model, report


def _main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (no click, no socialpulse): ``python assets/moderation/text.py --data DIR --out DIR``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="Train the text moderation model on a HateXplain-style folder "
                                             "(select on val; print the evaluation report as JSON).")
    ap.add_argument("--data", required=True, help="folder with train/val/test.jsonl (text, label)")
    ap.add_argument("--out", default=None, help="write the selected model and report.json here")
    ap.add_argument("--finetune-epochs", type=int, default=0, help="also fine-tune MiniLM for N epochs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    _, report = train_from_folder(a.data, a.out, finetune_epochs=a.finetune_epochs, device=a.device, lr=a.lr,
                                  batch_size=a.batch_size, max_length=a.max_length, seed=a.seed,
                                  progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
