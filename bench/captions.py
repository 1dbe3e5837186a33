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
    "GroundedGenerator.generate; hit@5: the existing suggester's split (assets.trends.suggest_eval.split_records: "
    "random 80/20, seed 7, the held-out posts with hashtags, at most 2,000), each draft's facts held out (no hashtags, "
    "caption stripped of #tags); grounded_words_only: the generator on those facts; grounded_with_related_tags: the "
    "same plus each draft's related tags (the suggester's semantic + popularity ranking from the known 80% only, "
    "the draft embedded by assets.captions.evaluation.draft_text); existing_suggester: suggestion_eval on the same "
    "records and split; showcase: a photo with text drawn on it and a 6 s video with eSpeak NG speech, analysed "
    "by assets.moderation.media.MediaAnalyser (RapidOCR, Whisper tiny.en) and labelled, then captioned; "
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


def spoken(text: str, wpm: int = 150):
    """``text`` spoken by eSpeak NG (the ``espeakng-loader`` wheel's library and voices, offline): mono float32
    PCM at 16 kHz (the rate speech recognition reads)."""
    import ctypes
    from pathlib import Path

    import espeakng_loader
    import numpy as np
    from scipy.signal import resample_poly

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(2, 0, str(Path(espeakng_loader.get_data_path()).parent).encode(), 0)  # synchronous
    if rate <= 0:
        raise RuntimeError(f"eSpeak NG did not start ({rate})")
    chunks: list = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def collect(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_type(collect)  # kept alive until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName(b"en-us")
    lib.espeak_SetParameter(1, int(wpm), 0)  # espeakRATE
    data = text.encode()
    if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None) != 0:  # POS_CHARACTER, espeakCHARS_AUTO
        raise RuntimeError("eSpeak NG could not speak the text")
    lib.espeak_Synchronize()
    pcm = np.concatenate(chunks).astype(np.float32) / 32768.0
    g = np.gcd(16000, rate)
    return resample_poly(pcm, 16000 // g, rate // g).astype(np.float32)


def photo_with_text(name: str, text: str, size: int = 40):
    """One of the photos with ``text`` across its top in large letters on a dark band (what OCR reads)."""
    from PIL import ImageDraw, ImageFont

    img = photo_image(name).copy()
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size)
    box = draw.textbbox((0, 0), text, font=font)
    pad = size // 3
    draw.rectangle([0, 0, img.width, box[3] - box[1] + 3 * pad], fill=(20, 20, 20))
    draw.text(((img.width - (box[2] - box[0])) // 2, pad), text, font=font, fill=(255, 255, 255))
    return img


def photo_video(name: str, seconds: int = 3, fps: int = 10, image=None, speech=None) -> bytes:
    """An mp4 whose frames show the photo (slowly panning), ``seconds`` long; with ``speech`` (16 kHz mono
    float PCM, e.g. :func:`spoken`) an AAC track says it."""
    import av
    import numpy as np

    img = image if image is not None else photo_image(name)
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
        audio = None
        if speech is not None:
            audio = out.add_stream("aac", rate=16000)
            audio.layout = "mono"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.roll(arr, i * 2, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            pcm = np.asarray(speech, dtype=np.float32)[: seconds * 16000]
            for start in range(0, pcm.size, 1024):
                chunk = pcm[start:start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return buf.getvalue()


#: the showcase: a photo with words on it and a video that speaks, through the platform's real media analysis
SHOWCASE = [
    {"post_id": "showcase-photo", "kind": "image", "photo": "coffee", "overlay": "FLAT WHITE 3.50",
     "caption": "Saturday morning ritual"},
    {"post_id": "showcase-video", "kind": "video", "photo": "coffee", "overlay": "OAT MILK",
     "speech": "Welcome to my coffee corner. Today I am making a flat white with oat milk.",
     "caption": "How I make my morning coffee", "seconds": 6},
    {"post_id": "showcase-cat", "kind": "image", "photo": "chelsea", "caption": None},
]


def showcase(labeler, generator, related) -> list[dict]:
    """The SHOWCASE posts end to end: media made (text drawn on the photo, speech by eSpeak NG), analysed by
    the moderation media analyser (OCR, Whisper tiny.en) and labelled by EfficientNet-Lite0, then alt-text,
    captions and hashtags (with related tags from the bench's known posts)."""
    from assets.captions.evaluation import with_related_tags
    from assets.captions.facts import PostFacts
    from assets.captions.grounded import alt_text, readable_text
    from assets.captions.labels import frames_of
    from assets.moderation.media import MediaAnalyser

    analyser = MediaAnalyser()
    facts, inputs = [], []
    for item in SHOWCASE:
        img = photo_with_text(item["photo"], item["overlay"]) if item.get("overlay") else photo_image(item["photo"])
        if item["kind"] == "video":
            seconds = item.get("seconds", 3)
            data = photo_video(item["photo"], seconds=seconds, image=img,
                               speech=spoken(item["speech"]) if item.get("speech") else None)
            frames = frames_of(data)[1]
        else:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            data, frames = buf.getvalue(), [img]
        seen = analyser.analyse(data)
        facts.append(PostFacts(
            post_id=item["post_id"], kind=item["kind"], caption=item["caption"],
            labels=tuple(labeler.label_images(frames)), ocr_text=readable_text(seen.ocr_text),
            transcript=readable_text(getattr(seen, "transcript", None)),
            duration_s=getattr(seen, "duration_s", None) if item["kind"] == "video" else None))
        inputs.append({"media": f"{item['photo']} photo" + (f" with '{item['overlay']}' drawn on it"
                                                             if item.get("overlay") else "")
                       + (f", {item.get('seconds', 3)} s video saying '{item['speech']}'" if item.get("speech") else "")})
    rankings, sims = related(facts)
    facts = with_related_tags(facts, rankings, sims)
    out = []
    for f, s, given, sim in zip(facts, generator.generate(facts), inputs, sims):
        out.append({"post_id": f.post_id, "kind": f.kind, **given, "creator_caption": f.caption,
                    "labels": [[n, round(p, 3)] for n, p in f.labels[:3]], "ocr_text": f.ocr_text,
                    "transcript": f.transcript, "nearest_similarity": round(sim, 3),
                    "related_tags": [t for t, _ in f.related_tags[:5]],
                    "alt_text": alt_text(f), "captions": s.captions, "hashtags": s.hashtags[:5],
                    "rejected": [r.reason for r in s.rejected]})
    return out


def post_records(posts) -> list[dict]:
    return [{"post_id": r["post_id"], "created_at": r["created_at"], "caption": r["caption"], "hashtags": r["hashtags"]}
            for r in posts.select(["post_id", "created_at", "caption", "hashtags"]).to_pylist()]


def photo_labels(posts, per_photo: dict, video_labels: list | None = None):
    """media_labels-like rows: every image post shows one of the photos (in turn), every video one of the videos."""
    import pyarrow as pa

    rows = []
    for i, (pid, kind) in enumerate(zip(posts.column("post_id").to_pylist(), posts.column("kind").to_pylist())):
        if kind in ("image", "video"):
            labels = (video_labels[i % len(video_labels)] if kind == "video" and video_labels
                      else per_photo[PHOTOS[i % len(PHOTOS)]])
            rows.append({"post_id": pid, "labels": [{"name": n, "prob": p} for n, p in labels], "status": "ok",
                         "model_version": "bench"})
    return pa.Table.from_pylist(rows)


def held_out_drafts(posts, labels, records, max_test: int = 2000) -> dict:
    """The existing suggester's split of ``records`` (assets.trends.suggest_eval.split_records), each test draft's
    facts with its hashtags held out, and the hidden tags."""
    from assets.captions.evaluation import build_facts
    from assets.trends.suggest_eval import split_records

    train, test = split_records(records, max_test=max_test)
    held_all = {f.post_id: f for f in build_facts(posts, labels, None, hold_out_hashtags=True)}
    return {"train": train, "held": [held_all[r["post_id"]] for r in test],
            "hidden": [r["hashtags"] or [] for r in test]}


def related_lookup(encoder, train: list[dict]):
    """Related tags from the known posts only: the existing suggester's semantic + popularity ranking for each
    post's :func:`~assets.captions.evaluation.draft_text`, and its nearest known post's cosine."""
    from assets.captions.evaluation import draft_text
    from assets.trends.suggest_eval import known_embeddings, semantic_votes
    from socialpulse.hashtags import popularity_shares, rank, tag_statistics
    from socialpulse.tags import normalise_tags

    counts, _ = tag_statistics(train)
    popularity = popularity_shares(counts)
    known = known_embeddings(encoder, train)
    known_tags = [normalise_tags(r.get("hashtags")) for r in train]

    def related(facts):
        votes = semantic_votes(encoder.encode([draft_text(f) for f in facts]), known, known_tags)
        return ([[(x.tag, x.score) for x in rank(semantic=v, popularity=popularity, limit=10)] for v, _ in votes],
                [sim for _, sim in votes])

    return related


#: the grid the related-tags weight and similarity floor are chosen on (validation world only)
VALIDATION_WEIGHTS = (5.0, 8.0, 12.0, 20.0)
VALIDATION_MIN_SIMILARITY = (0.0, 0.3, 0.4, 0.45, 0.5, 0.6)
VALIDATION_RAMPS = (0.0, 0.15, 0.3)


def validation(per_photo: dict, encoder, cfg: dict) -> dict:
    """hit@5 of grounded + related tags over VALIDATION_WEIGHTS x VALIDATION_MIN_SIMILARITY on a seed-11 world
    (never the seed-7 test world): how SOURCE_WEIGHTS['related'] and RELATED_MIN_SIMILARITY were chosen (the grid with
    the default RELATED_RAMP), then VALIDATION_RAMPS at the chosen weight and floor."""
    import numpy as np
    import pyarrow as pa

    from assets.captions import grounded
    from assets.captions.evaluation import hashtag_hits, with_related_tags
    from assets.captions.grounded import GroundedGenerator
    from socialpulse.synthetic import WorldConfig, build_world, iter_days

    world = build_world(WorldConfig(users=cfg["users"], posts=cfg["posts"], days=cfg["days"], seed=11))
    posts = pa.concat_tables([b.tables["posts"] for b in iter_days(world)])
    records = post_records(posts)
    drafts = held_out_drafts(posts, photo_labels(posts, per_photo), records, max_test=1000)
    rankings, sims = related_lookup(encoder, drafts["train"])(drafts["held"])
    def hit_at_5(**related) -> float:
        facts = with_related_tags(drafts["held"], rankings, sims, **related)
        return hashtag_hits(facts, drafts["hidden"], GroundedGenerator().generate(facts), 5)["hit_at_5"]

    grid, ramps, saved = {}, {}, grounded.SOURCE_WEIGHTS["related"]
    try:
        for w in VALIDATION_WEIGHTS:
            grounded.SOURCE_WEIGHTS["related"] = w
            for floor in VALIDATION_MIN_SIMILARITY:
                grid[f"weight={w:g},min_similarity={floor:g}"] = hit_at_5(min_similarity=floor)
        grounded.SOURCE_WEIGHTS["related"] = saved
        for ramp in VALIDATION_RAMPS:  # the weight and floor chosen: the related tags' trust ramp above the floor
            ramps[f"ramp={ramp:g}"] = hit_at_5(ramp=ramp)
    finally:
        grounded.SOURCE_WEIGHTS["related"] = saved
    related_only = np.mean([bool(set(t for t, _ in r[:5]) & set(h)) for r, h in zip(rankings, drafts["hidden"])])
    return {"world_seed": 11, "drafts": len(drafts["held"]), "related_tags_only": round(float(related_only), 4),
            "nearest_similarity_p10_p50_p90": [round(float(np.percentile(sims, q)), 3) for q in (10, 50, 90)],
            "hit_at_5": grid, "hit_at_5_by_ramp": ramps}


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
    from assets.captions.evaluation import (
        alt_text_stats,
        build_facts,
        existing_suggester_hits,
        hashtag_hits,
        rejection_stats,
        with_related_tags,
    )
    from assets.captions.grounded import GroundedGenerator, alt_text
    from assets.captions.labels import ImageLabeler
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
    from assets.captions.labels import frames_of

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
    labels_table = photo_labels(posts, per_photo, video_labels)

    facts, facts_s = timed(build_facts, posts, labels_table, None, digits=3)
    alts, alt_s = timed(lambda: [alt_text(f) for f in facts], digits=3)
    gen = GroundedGenerator()
    suggestions, gen_s = timed(gen.generate, facts, digits=3)
    out["throughput"] = {"facts_per_s": round(len(facts) / facts_s), "alt_text_posts_per_s": round(len(facts) / alt_s),
                         "captions_posts_per_s": round(len(facts) / gen_s)}
    out["alt_text"] = alt_text_stats([{"kind": f.kind, "alt_text": a} for f, a in zip(facts, alts)])
    out["guard"] = rejection_stats(suggestions)

    # hit@5 on the existing suggester's own held-out drafts (same records, same split): the grounded generator
    # alone, and with each draft's related tags (the suggester's ranking from the known 80% only)
    records = post_records(posts)
    encoder = _encoder()
    drafts = held_out_drafts(posts, labels_table, records)
    related = related_lookup(encoder, drafts["train"])
    with_related, related_s = timed(lambda: with_related_tags(drafts["held"], *related(drafts["held"])))
    grounded = hashtag_hits(drafts["held"], drafts["hidden"], gen.generate(drafts["held"]), 5)
    combined = hashtag_hits(with_related, drafts["hidden"], gen.generate(with_related), 5)
    existing, existing_s = timed(existing_suggester_hits, records, encoder, 5, max_test=2000, progress=say)
    out["hashtags_hit_at_5"] = {"grounded_words_only": grounded, "grounded_with_related_tags": combined,
                                "related_tags_s": related_s, "existing_suggester": existing["hit_at_5"],
                                "existing_drafts": existing["drafts"], "existing_seconds": existing_s}
    say(f"hit@5 grounded {grounded['hit_at_5']}, with related tags {combined['hit_at_5']} vs existing "
        f"{existing['hit_at_5']}")
    out["validation"] = validation(per_photo, encoder, cfg)

    out["showcase"] = showcase(labeler, gen, related)

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
