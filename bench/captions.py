"""Benchmark `captions`: alt-text, captions and hashtags on the seed-7 synthetic world's posts (small: 5k posts;
full: 50k), with real photos from scikit-image as the image media (so labels mean something): throughput of the
EfficientNet-Lite0 labels (images/s, and video frames), of alt-text and of the grounded generator (posts/s on CPU),
the llama.cpp generator's tokens/s when it runs here; hashtag hit@5 of the grounded generator (creators' own
hashtags held back) beside the existing suggester (assets.trends.suggest_eval on the same posts), alt-text coverage
and length, the guard's rejections by reason, and five posts as a reader would check them.
"""

from __future__ import annotations

import datetime as dt
import io
import time

from bench import run_main, say, scale_configs, timed

METHOD = (
    "one process per run on this machine (2 cores, CPU only): the seed-7 synthetic world loaded into bronze Delta "
    "(its posts' captions and hashtags are the creators' own); every image post gets one of scikit-image's real photos "
    "(astronaut, coffee, chelsea, rocket, hubble_deep_field, coins, camera, retina) as its media and every video post a 3-second mp4 of one of them "
    "(H.264/MPEG-4 via PyAV); labels: assets.captions.labels.ImageLabeler (EfficientNet-Lite0, torch, 2 threads) "
    "timed over `label_images` images one by one and in batches, and over decoded video frames (4 per video); "
    "facts: assets.captions.evaluation.build_facts; alt-text: assets.captions.grounded.alt_text; captions: "
    "GroundedGenerator.generate; hit@5: held-out facts (no hashtags, caption stripped of #tags) for every tagged post "
    "(the grounded generator learns nothing, so every post is a held-out draft), the existing suggester through "
    "assets.trends.suggest_eval.suggestion_eval (random 80/20 split, seed 7, its hit@5 on the held-out 20%); "
    "LLM: assets.captions.generators.build_generator('llama-cpp') on the shipped Gemma 3 270M GGUF when it starts"
)
SCALES = {
    "small": [dict(users=1_000, posts=5_000, days=3, label_images=24, videos=3, llm_posts=8)],
    "full": [dict(users=10_000, posts=50_000, days=7, label_images=96, videos=10, llm_posts=32)],
}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "coins", "camera", "retina")


def configs(scale: str) -> list[dict]:
    return scale_configs("captions", SCALES, scale)


def photo_image(name: str):
    """One of scikit-image's photos as an RGB PIL image."""
    import numpy as np
    import skimage.data
    from PIL import Image

    arr = getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return Image.fromarray(arr[..., :3].astype("uint8"))


def photo_jpeg(name: str) -> bytes:
    buf = io.BytesIO()
    photo_image(name).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def photo_video(name: str, seconds: int = 3, fps: int = 10) -> bytes:
    """An mp4 whose frames show the photo (slowly panning), ``seconds`` long."""
    import av
    import numpy as np

    img = photo_image(name)
    w, h = (img.width // 2) * 2, (img.height // 2) * 2
    img = img.resize((w, h))
    arr = np.asarray(img)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        try:
            stream = out.add_stream("libx264", rate=fps)
        except Exception:  # noqa: BLE001 - an FFmpeg without x264
            stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.roll(arr, i * 2, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _llm(posts, facts) -> dict:
    try:
        from assets.captions.generators import build_generator
        from assets.captions.guard import QualityGuard

        gen, start_s = timed(build_generator, "llama-cpp", guard=QualityGuard())
    except Exception as exc:  # noqa: BLE001 - not compiled here, or the server did not start
        return {"available": False, "why": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        out, secs = timed(gen.generate, facts)
        stats = getattr(gen, "last_stats", None)
        tokens = getattr(stats, "completion_tokens", None) if stats is not None else None
        return {"available": True, "generator": gen.version, "posts": len(facts), "start_s": start_s,
                "seconds": secs, "posts_per_s": round(len(facts) / secs, 2) if secs else None,
                "completion_tokens": tokens, "tokens_per_s": round(tokens / secs, 1) if tokens and secs else None,
                "failed": getattr(stats, "failed", None), "errors": list(getattr(stats, "errors", []) or [])[:5],
                "fallback_posts": sum(1 for s in out if s.fallback),
                "rejected": sum(len(s.rejected) for s in out),
                "sample": [{"post_id": s.post_id, "captions": s.captions[:2], "hashtags": s.hashtags[:5],
                            "fallback": s.fallback, "rejected": [r.reason for r in s.rejected]} for s in out[:3]]}
    finally:
        close = getattr(gen, "close", None)
        if callable(close):
            close()


def main(cfg: dict) -> dict:
    import pyarrow as pa

    from assets.captions.evaluation import (
        alt_text_stats,
        build_facts,
        existing_suggester_hits,
        hashtag_hits,
        rejection_stats,
    )
    from assets.captions.grounded import GroundedGenerator, alt_text
    from assets.captions.labels import ImageLabeler, frames_of
    from assets.content.assets import _encoder
    from socialpulse import lake
    from socialpulse.contracts import POSTS
    from socialpulse.settings import get_settings
    from socialpulse.synthetic import load_synthetic

    settings = get_settings()
    out: dict = {"config": cfg}
    end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    _, out["load_s"] = timed(load_synthetic, settings, users=cfg["users"], posts=cfg["posts"], interactions=None,
                             days=cfg["days"], seed=7, start=end - dt.timedelta(days=cfg["days"] - 1), progress=say)
    posts = lake.read(POSTS, settings=settings)
    out["posts"] = posts.num_rows
    out["kinds"] = {k: posts.column("kind").to_pylist().count(k) for k in ("image", "video", "text")}

    # labels: EfficientNet-Lite0 on real photos
    labeler = ImageLabeler(threads=2)
    images = [photo_image(PHOTOS[i % len(PHOTOS)]) for i in range(cfg["label_images"])]
    labeler.label_images(images[:1])  # load the model once before timing
    _, one_s = timed(lambda: [labeler.label_images([im]) for im in images], digits=3)
    _, batch_s = timed(labeler.probabilities, images, digits=3)
    videos = [photo_video(PHOTOS[i % 3]) for i in range(cfg["videos"])]
    frames_n = 0
    t = time.perf_counter()
    video_labels = []
    for v in videos:
        _, frames = frames_of(v)
        frames_n += len(frames)
        video_labels.append(labeler.label_images(frames))
    video_s = time.perf_counter() - t
    per_photo = {name: labeler.label_images([photo_image(name)]) for name in PHOTOS}
    out["labels"] = {"model_version": labeler.version, "images": len(images),
                     "images_per_s_one_by_one": round(len(images) / one_s, 1),
                     "images_per_s_batched": round(len(images) / batch_s, 1),
                     "videos": len(videos), "frames": frames_n,
                     "videos_per_s": round(len(videos) / video_s, 2), "video_frames_per_s": round(frames_n / video_s, 1),
                     "top1": {name: per_photo[name][0] for name in PHOTOS},
                     "video_top1": [v[0] for v in video_labels]}
    say(f"labels: {out['labels']['images_per_s_batched']} images/s batched")

    # every image / video post shows one of the photos: its labels are the photo's (computed once per photo)
    kinds = posts.column("kind").to_pylist()
    rows = []
    for i, (pid, kind) in enumerate(zip(posts.column("post_id").to_pylist(), kinds)):
        if kind in ("image", "video"):
            labels = per_photo[PHOTOS[i % len(PHOTOS)]] if kind == "image" else video_labels[i % len(video_labels)]
            rows.append({"post_id": pid, "labels": [{"name": n, "prob": p} for n, p in labels], "status": "ok",
                         "model_version": labeler.version})
    labels_table = pa.Table.from_pylist(rows)

    facts, facts_s = timed(build_facts, posts, labels_table, None, digits=3)
    alts, alt_s = timed(lambda: [alt_text(f) for f in facts], digits=3)
    gen = GroundedGenerator()
    suggestions, gen_s = timed(gen.generate, facts, digits=3)
    out["throughput"] = {"facts_per_s": round(len(facts) / facts_s), "alt_text_posts_per_s": round(len(facts) / alt_s),
                         "captions_posts_per_s": round(len(facts) / gen_s)}
    out["alt_text"] = alt_text_stats([{"kind": f.kind, "alt_text": a} for f, a in zip(facts, alts)])
    out["guard"] = rejection_stats(suggestions)

    held = build_facts(posts, labels_table, None, hold_out_hashtags=True)
    hidden = [h or [] for h in posts.column("hashtags").to_pylist()]
    held_sugg = gen.generate(held)
    grounded = hashtag_hits(held, hidden, held_sugg, 5)
    records = [{"created_at": r["created_at"], "caption": r["caption"], "hashtags": r["hashtags"]}
               for r in posts.select(["created_at", "caption", "hashtags"]).to_pylist()]
    existing, existing_s = timed(existing_suggester_hits, records, _encoder(), 5, max_test=2000, progress=say)
    out["hashtags_hit_at_5"] = {"grounded": grounded, "existing_suggester": existing["hit_at_5"],
                                "existing_drafts": existing["drafts"], "existing_seconds": existing_s}
    say(f"hit@5 grounded {grounded['hit_at_5']} vs existing {existing['hit_at_5']}")

    # five posts as a reader checks them: an image, a video, a text post and two more with media
    picks, seen_kinds = [], set()
    for f in facts:
        if f.kind not in seen_kinds or (len(picks) < 5 and f.kind != "text"):
            picks.append(f)
            seen_kinds.add(f.kind)
        if len(picks) == 5:
            break
    by_id = {s.post_id: s for s in suggestions}
    out["sample"] = [{"post_id": f.post_id, "kind": f.kind, "caption": f.caption, "creator_hashtags": list(f.hashtags),
                      "labels": [list(l) for l in f.labels[:3]], "ocr_text": f.ocr_text, "transcript": f.transcript,
                      "alt_text": alt_text(f), "captions": by_id[f.post_id].captions,
                      "hashtags": by_id[f.post_id].hashtags[:5]} for f in picks]
    out["llm"] = _llm(posts, [f for f in facts if f.kind != "text"][: cfg["llm_posts"]])
    return out


if __name__ == "__main__":
    run_main(main)
