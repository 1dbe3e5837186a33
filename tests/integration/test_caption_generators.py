"""Caption generators with real models: a tiny random Llama + LoRA adapter through HFGenerator, the embedded
llama.cpp server on the shipped Gemma 3 270M GGUF (start, a batch, tokens/s, guard, stop by PID, fallback
once stopped), and the quality guard scoring toxicity with the registered text moderation champion."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from assets.captions.facts import PostFacts
from assets.captions.generators import (EmbeddedLlamaCppGenerator, HFGenerator, LlamaCppServer, OpenAIChatGenerator,
                                        build_generator,
                                        gguf_metadata, is_instruction_tuned, shipped_gguf)
from assets.captions.grounded import GroundedGenerator
from assets.captions.guard import QualityGuard, moderation_toxicity, toxicity_of

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hatexplain"

POSTS = [
    PostFacts("v1", "video", caption="Morning walk with Max #dogs", labels=(("golden_retriever", 0.81),),
              ocr_text="BEST DAY", transcript="Look at him run! He loves the beach.", duration_s=12),
    PostFacts("i1", "image", caption="Fresh coffee before work #coffee", labels=(("espresso", 0.64), ("cup", 0.31))),
    PostFacts("v2", "video", caption="Trying the new recipe tonight", labels=(("pizza, pizza pie", 0.72),),
              transcript="First we stretch the dough, then the sauce goes on.", duration_s=34),
    PostFacts("t1", "text", caption="Finally finished my first marathon! #running #marathon"),
]


# --- a tiny Llama built offline, with a LoRA adapter ------------------------------------------------------
def _tiny_llama(folder: Path, *, garbage: bool) -> Path:
    """A 2-layer Llama (hidden 32) on a word-level tokenizer over the posts' words, saved to ``folder``.
    ``garbage``: the output head is zeroed, so greedy decoding always picks token 0 ("the"): "the the the"."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from assets.captions.generators import build_prompt

    words = ["the", "[PAD]", "[UNK]", "<s>", "</s>"]
    for p in POSTS:
        for w in build_prompt(p).split() + ["CAPTION:", "HASHTAGS:", "#beach", "#dogs", "Paris"]:
            if w not in words:
                words.append(w)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=1, bos_token_id=3, eos_token_id=4)
    model = LlamaForCausalLM(cfg)
    if garbage:
        with torch.no_grad():
            model.lm_head.weight.zero_()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if importlib.util.find_spec("peft") is None:
        pytest.skip("peft is not installed (make install not finished)")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny_llama")
    base = _tiny_llama(root / "base", garbage=True)
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    # init_lora_weights=False: B is random too, so the merged weights differ from the base
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    lora.save_pretrained(root / "adapter")
    return base, root / "adapter"


def test_hf_generator_loads_by_path_merges_the_adapter_and_falls_back_on_garbage(tiny):
    import torch
    from transformers import AutoModelForCausalLM

    base_dir, adapter_dir = tiny
    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    gen = HFGenerator(base_dir, adapter_dir, max_new_tokens=8)
    assert gen.version == "hf:base+adapter"
    merged = dict(gen.model.named_parameters())
    assert not any("lora" in n for n in merged)  # merged and unloaded: a plain Llama again
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[q], dict(base.named_parameters())[q])
    k = "model.layers.0.self_attn.k_proj.weight"  # not targeted: untouched
    assert torch.equal(merged[k], dict(base.named_parameters())[k])

    out = gen.generate(POSTS)
    assert [s.post_id for s in out] == [p.post_id for p in POSTS]
    grounded = GroundedGenerator()
    for facts, s in zip(POSTS, out):
        assert s.fallback and s.generator == "hf:base+adapter"
        assert s.rejected and s.rejected[0].reason == "repetition" and s.rejected[0].text.startswith("the the")
        assert s.captions == grounded.suggest(facts).captions
    assert gen.last_stats.completion_tokens == 8 * len(POSTS)


def test_hf_generator_random_model_output_is_guarded(tmp_path):
    """A random (not zeroed) tiny Llama: whatever it says is either accepted by the guard or refused with a
    reason and replaced by the grounded output; nothing unguarded gets through."""
    folder = _tiny_llama(tmp_path / "random", garbage=False)
    gen = build_generator("hf", hf_path=folder, max_new_tokens=12)
    guard = QualityGuard()
    for facts, s in zip(POSTS, gen.generate(POSTS)):
        assert s.captions
        if s.fallback:
            assert s.rejected
        else:
            assert all(guard.check(c, facts) is None for c in s.captions)


# --- the embedded llama.cpp server on the shipped GGUF --------------------------------------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable (llama-cpp-python not installed: make install not finished "
                    "or its compile failed)")
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = LlamaCppServer(n_ctx=1024, log_path=log)
    server.start(wait_s=120)
    try:
        yield server
    finally:
        server.stop()


def test_shipped_gguf_metadata_says_what_the_model_is():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable")
    meta = gguf_metadata(shipped_gguf())
    print("\nGGUF metadata:", json.dumps({k: v for k, v in meta.items() if k.startswith("general.")
                                          or k == "tokenizer.chat_template"}, default=str)[:1500])
    assert meta.get("general.architecture", "").startswith("gemma3")
    # recorded, not asserted either way: the report states what this file is
    print("instruction-tuned:", is_instruction_tuned(meta))


def test_llama_cpp_server_batch_is_guarded_then_falls_back_once_stopped(llama_server):
    import httpx

    t0 = time.perf_counter()
    raw = httpx.post(f"{llama_server.url}/v1/completions", timeout=120,
                     json={"prompt": "A short walk along the river", "max_tokens": 64, "temperature": 0}).json()
    print(f"\nllama.cpp raw generation: {raw['usage']['completion_tokens']} tokens at "
          f"{raw['usage']['completion_tokens'] / (time.perf_counter() - t0):.1f} tokens/s")
    gen = EmbeddedLlamaCppGenerator(llama_server, max_tokens=32, timeout_s=120, guard=QualityGuard())
    t0 = time.perf_counter()
    out = gen.generate(POSTS)
    secs = time.perf_counter() - t0
    stats = gen.last_stats
    transport = [e for e in stats.errors if not e.startswith("unparseable")]
    assert not transport, transport  # the server answered every post (what it said is the guard's business)
    assert stats.completion_tokens > 0
    reasons = Counter(r.reason for s in out for r in s.rejected)
    print(f"llama.cpp: {len(POSTS)} posts in {secs:.1f}s, {stats.completion_tokens} tokens, "
          f"{stats.completion_tokens / secs:.1f} tokens/s (batch wall time, prompt processing included); "
          f"fallbacks {sum(s.fallback for s in out)}/{len(out)}; rejected by reason {dict(reasons)}")
    for s in out:
        print("  ", s.post_id, "fallback" if s.fallback else "model", s.captions[:1], s.hashtags[:5],
              [(r.reason, r.text[:60], r.detail[:60]) for r in s.rejected])
    guard = QualityGuard()
    for facts, s in zip(POSTS, out):
        assert s.generator == "llama-cpp:gemma3-270m-q4_k_m" and s.captions
        if not s.fallback:  # what the model said and the guard let through
            assert all(guard.check(c, facts) is None for c in s.captions)
        else:
            assert s.rejected

    pid = llama_server.pid
    llama_server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not llama_server.ready()
    down = gen.generate(POSTS[:2])
    assert all(s.fallback and s.rejected[-1].reason == "no_output" for s in down)
    assert down[0].captions == GroundedGenerator().suggest(POSTS[0]).captions


# --- toxicity from the registered moderation champion ------------------------------------------------------------
@pytest.fixture(scope="module")
def moderation_settings(tmp_path_factory):
    """A real MLflow server with the text moderation model trained on the vendored HateXplain sample
    registered as champion, as the moderation asset leaves it."""
    from assets.moderation.registry import log_and_register
    from assets.moderation.text import TextEncoder, classification_metrics, read_labelled, train_text_moderator
    from socialpulse.services import services_down, services_up
    from socialpulse.services.manager import free_port
    from socialpulse.settings import Settings

    sample = {s: read_labelled(SAMPLE / f"{s}.jsonl", "text", "label") for s in ("train", "val", "test")}
    model, report = train_text_moderator(*sample["train"], *sample["val"], encoder=TextEncoder().load(), Cs=(1.0,),
                                         class_weights=("balanced",))
    settings = Settings(home=tmp_path_factory.mktemp("captions_mlflow_home"), mlflow_port=free_port())
    services_up(settings, ["mlflow"])
    try:
        test_metrics = classification_metrics(sample["test"][1], model.predict_proba(sample["test"][0]))
        log_and_register(settings.mlflow, model, val_metrics=report["val_metrics"], test_metrics=test_metrics,
                         params=report["params"])
        yield settings, sample
    finally:
        services_down(settings, ["mlflow"])


def test_guard_scores_toxicity_with_the_moderation_champion(moderation_settings):
    settings, sample = moderation_settings
    score = moderation_toxicity(settings)
    texts, labels = sample["test"]
    scores = score(texts)
    toxic = [s["hatespeech"] + s["offensive"] for s in scores]
    assert all(0.0 <= t <= 1.0 + 1e-9 for t in toxic)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    hateful = [t for t, lab in zip(toxic, labels) if lab != "normal"]
    normal = [t for t, lab in zip(toxic, labels) if lab == "normal"]
    assert mean(hateful) > mean(normal) + 0.05  # the champion separates the classes on average

    facts = POSTS[0]
    # the most toxic test text that no other rule refuses, offered as a caption of a post that holds it
    plain = QualityGuard(max_chars=10_000)
    worst = max((t, x) for t, x, lab in zip(toxic, texts, labels)
                if lab != "normal" and plain.check(x, PostFacts("x", "text", caption=x)) is None)
    guard = QualityGuard(score, toxic_threshold=min(0.9, worst[0] - 1e-6), max_chars=10_000)
    assert guard.check("Look at him run on the beach", facts) is None
    rej = guard.check(worst[1], PostFacts("x", "text", caption=worst[1]))
    assert rej is not None and rej.reason == "toxic", rej
    assert QualityGuard(score, toxic_threshold=0.0).check("Look at him run on the beach", facts).reason == "toxic"
    assert QualityGuard(toxicity_of(type("M", (), {"predict_proba": lambda self, t: [[0.0, 0.0, 1.0]] * len(t)})()))\
        .check("Look at him run on the beach", facts) is None


def test_build_generator_starts_and_closes_the_embedded_server():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable (llama-cpp-python not installed)")
    gen = build_generator("llama-cpp", max_tokens=16, n_ctx=1024)
    try:
        assert gen.server.ready()
        out = gen.generate(POSTS[:1])
        assert out[0].generator == "llama-cpp:gemma3-270m-q4_k_m" and out[0].captions
    finally:
        gen.close()
    assert not gen.server.running()
