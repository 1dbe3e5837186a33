"""Benchmark `moderation`: texts/s and images/s (batch and single-item latency), seconds of video processed
per second of wall time, and p50/p99 from upload to decision through the live path.

Throughput: the text model is a frozen-MiniLM head trained on the vendored HateXplain sample (inference
cost does not depend on how well the head was trained); texts are HateXplain test posts (the full file
when ``../shared`` has it, else the sample, repeated). Images and video are generated (photo-like
gradients with text, a tone for audio), so the figures measure the pipeline, not the content.

Live path: the real platform runs (`services up` with the API and `dagster dev`, whose daemon runs the
ingest and moderation sensors); posts are uploaded through `POST /v1/posts` one at a time and
`GET /v1/posts/{id}/moderation` is polled until it answers ``decided``.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

from bench import auth_headers, pct

METHOD = (
    "one process on this machine; text: predict_proba over N HateXplain test texts at batch 64 and 256 "
    "(texts/s = N / wall) and 200 single-text calls (p50/p99 ms); images: 640x640 generated photos, NSFW at "
    "batch 1 and 16, and the full image analysis (NSFW + OCR); video: generated 30 s 640x360 video with "
    "audio through MediaAnalyser (1 fps NSFW, OCR every 2 s, Whisper tiny.en), video seconds / wall "
    "second; live: upload -> decision visible in GET /v1/posts/{id}/moderation (the moderation worker's), and "
    "upload -> the same decision recorded by the daily assets (drain run, then moderation run, both launched by "
    "Dagster sensors); posts sent one at a time every 2 s through the real API"
)
SCALES = {
    "small": [dict(texts=1000, images=32, video_s=30, live_posts=10)],
    "full": [dict(texts=4000, images=64, video_s=30, live_posts=30)],
}
REPO = Path(__file__).resolve().parents[1]
SHARED_HATEXPLAIN = REPO.parent / "shared" / "data" / "hatexplain"
SAMPLE_HATEXPLAIN = REPO / "data" / "samples" / "hatexplain"


def configs(scale: str) -> list[dict]:
    return SCALES[scale]


def _texts(n: int) -> list[str]:
    src = SHARED_HATEXPLAIN if (SHARED_HATEXPLAIN / "test.jsonl").exists() else SAMPLE_HATEXPLAIN
    texts = [json.loads(line)["text"] for line in (src / "test.jsonl").read_text().splitlines() if line.strip()]
    return (texts * (n // len(texts) + 1))[:n]


def photo(i: int, size=(640, 640), caption: str | None = None) -> bytes:
    """A photo-like JPEG: smooth colour gradients, shapes and (optionally) a caption burned in."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([(x / w * 255 + i * 37) % 256, (y / h * 255 + i * 91) % 256, ((x + y) / (w + h) * 255) % 256], -1)
    img = Image.fromarray(rgb.astype("uint8"))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.2, h * 0.2, w * 0.6, h * 0.6), fill=(30 + i % 200, 120, 200))
    if caption:
        font = ImageFont.load_default(size=max(24, h // 12))
        draw.rectangle((0, h * 0.75, w, h * 0.95), fill=(255, 255, 255))
        draw.text((w * 0.05, h * 0.78), caption, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def video(seconds: int, size=(640, 360), fps: int = 25, caption: str = "SOCIALPULSE DEMO") -> bytes:
    """An mp4 (h264 or mpeg4) with moving gradients, a burned-in caption and a 440 Hz tone."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        rate = 16000
        aus = out.add_stream("aac", rate=rate)
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        font = ImageFont.load_default(size=h // 10)
        for i in range(seconds * fps):
            rgb = np.stack([(xx / w * 255 + i * 3) % 256, (yy / h * 255) % 256, np.full_like(xx, (i * 5) % 256)], -1)
            img = Image.fromarray(rgb.astype("uint8"))
            ImageDraw.Draw(img).text((w * 0.05, h * 0.8), caption, fill=(255, 255, 255), font=font)
            for packet in vs.encode(av.VideoFrame.from_image(img)):
                out.mux(packet)
        t = np.arange(seconds * rate) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        chunk = 1024
        for k in range(0, len(tone), chunk):
            frame = av.AudioFrame.from_ndarray(tone[None, k:k + chunk], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in aus.encode(frame):
                out.mux(packet)
        for stream in (vs, aus):
            for packet in stream.encode(None):
                out.mux(packet)
    return buf.getvalue()


def bench_text(n: int) -> dict:
    from assets.moderation.text import TextModerator, train_text_moderator

    rows = {split: [json.loads(line) for line in (SAMPLE_HATEXPLAIN / f"{split}.jsonl").read_text().splitlines() if line.strip()]
            for split in ("train", "val")}
    model: TextModerator
    model, _ = train_text_moderator([r["text"] for r in rows["train"]], [r["label"] for r in rows["train"]],
                                    [r["text"] for r in rows["val"]], [r["label"] for r in rows["val"]])
    texts = _texts(n)
    model.predict_proba(texts[:64])  # warm-up
    out: dict = {"texts": n}
    for batch in (64, 256):
        t = time.perf_counter()
        for i in range(0, n, batch):
            model.predict_proba(texts[i:i + batch])
        out[f"texts_per_s_batch{batch}"] = round(n / (time.perf_counter() - t), 1)
    lat = []
    for text in texts[:200]:
        t = time.perf_counter()
        model.predict_proba([text])
        lat.append(time.perf_counter() - t)
    out.update(single_p50_ms=pct(lat, 0.5), single_p99_ms=pct(lat, 0.99))
    from assets.moderation.text import profanity_baseline_proba

    t = time.perf_counter()
    profanity_baseline_proba(texts)
    out["baseline_alt_profanity_check_texts_per_s"] = round(n / (time.perf_counter() - t), 1)
    return out


def bench_images(n: int) -> dict:
    from assets.moderation.media import FrameOCR, ImageModerator, MediaAnalyser

    images = [photo(i) for i in range(n)]
    nsfw = ImageModerator()
    nsfw.nsfw(images[0])
    out: dict = {"images": n}
    lat = []
    for img in images:
        t = time.perf_counter()
        nsfw.nsfw(img)
        lat.append(time.perf_counter() - t)
    out.update(nsfw_batch1_images_per_s=round(n / sum(lat), 1), nsfw_single_p50_ms=pct(lat, 0.5),
               nsfw_single_p99_ms=pct(lat, 0.99))
    t = time.perf_counter()
    for i in range(0, n, 16):
        nsfw.nsfw_batch(images[i:i + 16])
    out["nsfw_batch16_images_per_s"] = round(n / (time.perf_counter() - t), 1)
    analyser = MediaAnalyser(image_model=nsfw, ocr=FrameOCR())
    captioned = [photo(i, caption=f"caption number {i}") for i in range(min(n, 16))]
    analyser.analyse(captioned[0])
    lat = []
    for img in captioned:
        t = time.perf_counter()
        analyser.analyse(img)
        lat.append(time.perf_counter() - t)
    out.update(analyse_image_p50_ms=pct(lat, 0.5), analyse_image_p99_ms=pct(lat, 0.99),
               analyse_images_per_s=round(len(captioned) / sum(lat), 2))
    return out


def bench_video(seconds: int) -> dict:
    from assets.moderation.media import MediaAnalyser

    data = video(seconds)
    analyser = MediaAnalyser()
    analyser.analyse(video(2))  # load every model once
    t = time.perf_counter()
    result = analyser.analyse(data)
    wall = time.perf_counter() - t
    return {
        "video_s": seconds, "bytes": len(data), "wall_s": round(wall, 2),
        "video_seconds_per_wall_second": round(result.seconds_processed / wall, 2),
        "frames_sampled": result.frames_sampled, "ocr_text": result.ocr_text[:80],
    }


def bench_live(n: int) -> dict:
    """Upload posts through the API and time until their decision is served (real sensors and runs)."""
    import httpx

    from orchestration.runner import moderate_all, report_bronze_loaded
    from socialpulse.loaders import load_hatexplain
    from socialpulse.services.manager import services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    services_up(s)
    # a champion must exist before the live path can decide: train it on the vendored sample
    report_bronze_loaded(s, load_hatexplain(s, SAMPLE_HATEXPLAIN), "hatexplain")
    trained = moderate_all(s, [], train=True)
    if trained["failed"]:
        raise RuntimeError(f"text model training failed: {trained}")
    services_up(s, ["api", "dagster", "moderation"])
    api = f"http://{s.api_host}:{s.api_port}"
    texts = _texts(n)
    pending: dict[str, float] = {}
    sent: dict[str, float] = {}
    latencies: dict[str, float] = {}  # first decision served (the live worker's, normally)
    recorded: dict[str, float] = {}  # decision confirmed by the daily assets (source = asset)
    actions: dict[str, str] = {}
    with httpx.Client(base_url=api, timeout=30) as client:

        def poll_until(until: float) -> None:
            """Poll every sent post not yet recorded, until ``until``: decisions are timed while uploads go on
            (polling only after the last upload would add the remaining upload schedule to each latency)."""
            while True:
                for pid in list(sent):
                    if pid in recorded:
                        continue
                    body = client.get(f"/v1/posts/{pid}/moderation").json()
                    if body.get("status") == "decided":
                        now = time.time()
                        if pid in pending:
                            latencies[pid] = now - pending.pop(pid)
                            actions[pid] = body["action"]
                        if body.get("source") == "asset":
                            recorded[pid] = now - sent[pid]
                if time.time() >= until or len(recorded) == n:
                    return
                time.sleep(0.1)

        for i in range(n):
            pid = f"live-{i}"
            post = {"post_id": pid, "author_id": "u-bench", "kind": "image" if i % 3 == 0 else "text",
                    "caption": texts[i][:500], "hashtags": ["bench"]}
            files = {"post": (None, json.dumps(post), "application/json")}
            if post["kind"] == "image":
                files["media"] = ("photo.jpg", photo(i), "image/jpeg")
            t = time.time()
            r = client.post("/v1/posts", files=files, headers=auth_headers("u-bench"))
            if r.status_code >= 300:
                raise RuntimeError(f"upload {pid} failed: {r.status_code} {r.text}")
            pending[pid] = sent[pid] = t
            poll_until(t + 2)  # one upload every 2 s
        poll_until(time.time() + 600)

    def summary(values: list[float]) -> dict:
        return {"p50_s": round(statistics.median(values), 2), "p99_s": round(pct(values, 0.99) / 1000, 2),
                "max_s": round(max(values), 2)} if values else {}

    return {
        "posts": n, "decided": len(latencies), "undecided_after_600s": len(pending),
        "upload_to_decision": summary(list(latencies.values())),
        "upload_to_asset_record": {"confirmed": len(recorded), **summary(list(recorded.values()))},
        "actions": {a: list(actions.values()).count(a) for a in set(actions.values())},
    }


def main(cfg: dict) -> dict:
    from socialpulse.services.manager import services_down
    from socialpulse.settings import get_settings

    out = dict(cfg)
    out["text"] = bench_text(cfg["texts"])
    print(f"text: {out['text']}", flush=True)
    out["images"] = bench_images(cfg["images"])
    print(f"images: {out['images']}", flush=True)
    out["video"] = bench_video(cfg["video_s"])
    print(f"video: {out['video']}", flush=True)
    try:
        out["live"] = bench_live(cfg["live_posts"])
        print(f"live: {out['live']}", flush=True)
    finally:
        from socialpulse.spark import stop_sessions

        stop_sessions()
        services_down(get_settings())
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
