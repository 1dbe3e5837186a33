"""Caption / alt-text logic without models: grounded alt-text rules, grounded hashtags, the quality guard's
reasons, prompt building, answer parsing, and the OpenAI generator's fallbacks (a fake server on a port)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assets.captions.facts import PostFacts, Suggestions
from assets.captions.generators import (GenerationError, OpenAIChatGenerator, build_generator, build_messages,
                                        build_prompt, example_leak, free_port, is_instruction_tuned, parse_answer)
from assets.captions.grounded import (ALT_MAX_CHARS, GroundedGenerator, alt_text, caption_candidates,
                                      hashtag_candidates, label_words)
from assets.captions.guard import QualityGuard

DOG = PostFacts(
    "p1", "video", caption="Morning walk with Max #dogs #fun",
    hashtags=("dogs", "fun"),
    labels=(("golden_retriever", 0.81), ("tennis_ball", 0.42), ("tabby, tabby cat", 0.05)),
    ocr_text="  BEST   DAY ", transcript="Look at him run! He loves the beach.", duration_s=12.4)
WEAK = PostFacts("p2", "image", labels=(("jellyfish", 0.12), ("umbrella", 0.08)))
TEXT = PostFacts("p3", "text", caption="Big news today #launch")


# --- alt-text -----------------------------------------------------------------------------------------
def test_label_words_take_the_first_synonym_in_plain_words():
    assert label_words("golden_retriever") == "golden retriever"
    assert label_words("tabby, tabby cat") == "tabby"
    assert label_words("  German_shepherd, German shepherd dog") == "German shepherd"


def test_alt_text_puts_the_confident_content_first():
    alt = alt_text(DOG)
    assert alt.startswith("Golden retriever and tennis ball, 12-second video")
    assert "on-screen text: 'BEST DAY'" in alt
    assert "speech: 'Look at him run!" in alt
    assert "tabby" not in alt.lower()  # 5 % is no detection
    assert len(alt) <= 125


def test_alt_text_never_names_what_nothing_detected():
    assert alt_text(WEAK) == "Photo"
    assert "jellyfish" not in alt_text(WEAK)
    video = PostFacts("v", "video", labels=(("cat", 0.2),), ocr_text="SALE", duration_s=12)
    assert alt_text(video) == "Video, 12 seconds, with on-screen text: 'SALE'"


def test_alt_text_quotes_the_creator_only_when_nothing_else_is_known():
    assert alt_text(PostFacts("i", "image", caption="my new kitchen #home")) == "Photo, captioned 'my new kitchen'"
    assert "kitchen" not in alt_text(PostFacts("i", "image", caption="my new kitchen", labels=(("stove", 0.9),)))


def test_alt_text_is_none_for_text_posts_and_deterministic():
    assert alt_text(TEXT) is None
    assert alt_text(DOG) == alt_text(DOG)


@pytest.mark.parametrize("facts", [
    PostFacts("l", "video", labels=(("golden_retriever", 0.9),), ocr_text="word " * 200, transcript="talk " * 300,
              duration_s=59),
    PostFacts("l", "image", caption="x" * 1000),
    PostFacts("l", "image", ocr_text="y" * 1000),
])
def test_alt_text_stays_short(facts):
    alt = alt_text(facts)
    assert len(alt) <= 125 < ALT_MAX_CHARS


@pytest.mark.parametrize("facts", [DOG, WEAK, PostFacts("x", "image", caption="A photo of my dog"),
                                   PostFacts("x", "image", labels=(("picture_frame", 0.9),))])
def test_alt_text_never_opens_with_image_of(facts):
    assert not alt_text(facts).lower().startswith(("image of", "picture of", "photo of", "an image", "a picture"))


# --- grounded captions and hashtags ----------------------------------------------------------------------------
def test_grounded_hashtags_come_from_the_facts_not_the_creators_tags():
    tags = hashtag_candidates(DOG)
    assert tags[0] == "goldenretriever" and "tennisball" in tags
    assert "dogs" not in tags and "fun" not in tags  # held back: they are what suggestions are scored against
    assert "the" not in tags and "tabby" not in tags
    assert len(tags) <= 10 and len(set(tags)) == len(tags)
    many = PostFacts("m", "text", caption=" ".join(f"word{chr(97 + i)}x" for i in range(26)))
    assert len(hashtag_candidates(many, limit=50)) == 10


def test_related_tags_lead_the_hashtags_and_words_fill_in():
    from dataclasses import replace

    from assets.captions.evaluation import with_related_tags

    related = with_related_tags([DOG], [[("DogsOfInstagram", 0.6), ("#beachday", 0.3), ("dogsofinstagram", 0.2)]])[0]
    assert related.related_tags == (("dogsofinstagram", 1.0), ("beachday", 0.5))  # canonical, once, best = 1
    tags = hashtag_candidates(related)
    # 12 x 1.0 and 12 x 0.5 beat the label's 3 x 0.81 + 1; the post's own words follow
    assert tags[:3] == ["dogsofinstagram", "beachday", "goldenretriever"] and "tennisball" in tags
    assert hashtag_candidates(replace(related, related_tags=())) == hashtag_candidates(DOG)
    with pytest.raises(ValueError, match="1 rankings for 2 posts"):
        with_related_tags([DOG, WEAK], [[]])
    # a post unlike every indexed post (nearest cosine under the floor) gets no related tags
    gated = with_related_tags([DOG, WEAK], [[("beachday", 0.9)], [("gaming", 0.9)]], [0.8, 0.2], min_similarity=0.45)
    assert gated[0].related_tags == (("beachday", 1.0),) and gated[1].related_tags == ()
    assert with_related_tags([DOG], [[("beachday", 0.9)]], [None])[0].related_tags == ()


def test_related_tags_of_a_barely_similar_post_do_not_crowd_out_its_own_words():
    from assets.captions.evaluation import related_confidence, with_related_tags

    assert related_confidence(0.44) == 0.0 and related_confidence(None) == 0.0
    assert related_confidence(0.60) == pytest.approx(1.0) and related_confidence(0.9) == 1.0
    assert related_confidence(0.525) == pytest.approx(0.5)
    assert related_confidence(0.45, ramp=0) == 1.0  # a step at the floor
    coffee = PostFacts("c", "image", caption="Saturday flat white at my favourite cafe", labels=(("espresso", 0.9),))
    travel = [("roadtrip", 1.0), ("travel", 0.6), ("travelgram", 0.5), ("wanderlust", 0.4), ("beach", 0.2)]
    near, barely = with_related_tags([coffee, coffee], [travel, travel], [0.8, 0.455])
    assert near.related_tags[0] == ("roadtrip", 1.0) and barely.related_tags[0] == ("roadtrip", pytest.approx(0.0333, abs=1e-3))
    assert hashtag_candidates(near)[0] == "roadtrip"  # a close neighbour's tags lead
    own = hashtag_candidates(barely)[:6]  # a barely similar one's follow the post's own words
    assert own == ["espresso", "saturday", "flat", "white", "favourite", "cafe"], own


def test_noise_read_off_an_image_is_not_quoted():
    from assets.captions.grounded import readable_text

    assert readable_text("O") is None and readable_text(" . ; ") is None and readable_text(None) is None
    assert readable_text("  OAT   MILK ") == "OAT MILK" and readable_text("5 G") is None and readable_text("5G") == "5G"


def test_guard_accepts_related_tags_and_still_refuses_inventions():
    from dataclasses import replace

    guard = QualityGuard()
    with_related = replace(DOG, related_tags=(("dogsofinstagram", 1.0),))
    assert guard.check_hashtag("dogsofinstagram", with_related) is None
    assert guard.check_hashtag("dogsofinstagram", DOG).reason == "unknown_entity"
    assert guard.check_hashtag("puppylove", with_related).reason == "unknown_entity"


def test_draft_text_is_the_post_without_any_hashtag():
    from assets.captions.evaluation import draft_text

    text = draft_text(DOG)
    assert "#" not in text and "dogs" not in text.lower().split()
    assert text.startswith("Morning walk with Max") and "on screen: BEST DAY" in text and "said: Look at him run" in text


def test_grounded_captions_clean_the_creator_words_first():
    caps = caption_candidates(DOG)
    assert caps[0] == "Morning walk with Max"
    assert "Golden retriever and tennis ball" in caps and 1 <= len(caps) <= 3
    assert caption_candidates(WEAK) == []
    sugg = GroundedGenerator().generate([DOG, TEXT])
    assert [s.post_id for s in sugg] == ["p1", "p3"] and sugg[1].captions == ["Big news today"]
    assert sugg[0].generator == "grounded-1" and not sugg[0].fallback


# --- the guard ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, reason", [
    ("the the the", "repetition"),
    ("a walk in the park, a walk in the park", "repetition"),
    ("hahahahahahaha", "repetition"),
    ("Max in Paris today", "unknown_entity"),
    ("Max with his new iPhone", "unknown_entity"),
    ("see www.dogs.com now", "unknown_entity"),
    ("walk with @bob", "unknown_entity"),
    ("best day #bestdayever", "unknown_entity"),
    ("Morning walk, 5 stars", "unknown_entity"),
    ("ok", "length"),
    ("walk " + "and more " * 40, "length"),
])
def test_guard_rejects_with_the_reason(text, reason):
    rej = QualityGuard().check(text, DOG)
    assert rej is not None and rej.reason == reason and rej.detail


@pytest.mark.parametrize("text", ["Max loves the beach.", "Golden retriever at the beach with Max",
                                  "Best day: a 12 second walk #goldenretriever #morningwalk",
                                  "Enjoying a sunny morning walk!"])
def test_guard_passes_grounded_text(text):
    assert QualityGuard().check(text, DOG) is None


def test_guard_toxicity_threshold_and_batch_scoring():
    calls = []

    def fake(texts):
        calls.append(list(texts))
        return [{"hatespeech": 0.7 if "hate" in t else 0.0, "offensive": 0.2 if "meh" in t else 0.0} for t in texts]

    guard = QualityGuard(fake, toxic_threshold=0.5)
    facts = PostFacts("t", "text", caption="I hate mondays, meh")
    assert guard.check("I hate mondays", facts).reason == "toxic"
    assert guard.check("meh mondays", facts) is None
    assert QualityGuard(fake, toxic_threshold=0.1).check("meh mondays", facts).reason == "toxic"
    calls.clear()
    out = guard.filter_many([Suggestions("t", captions=["I hate mondays", "meh mondays", "the the"],
                                         hashtags=["mondays", "#Mondays", "tuesday"])], [facts])[0]
    assert out.captions == ["meh mondays"] and out.hashtags == ["mondays"]
    assert sorted(r.reason for r in out.rejected) == ["repetition", "toxic", "unknown_entity"]
    assert len(calls) == 1  # one scorer call for the whole batch
    calls.clear()
    other = PostFacts("u", "text", caption="mondays again, meh")
    two = guard.filter_many([Suggestions("t", captions=["meh mondays"], hashtags=["mondays"]),
                             Suggestions("u", captions=["meh mondays"], hashtags=["mondays"])], [facts, other])
    assert [(o.captions, o.hashtags) for o in two] == [(["meh mondays"], ["mondays"])] * 2
    assert calls == [["meh mondays", "mondays"]]  # a text repeated across posts is scored once


# --- prompts and answers ---------------------------------------------------------------------------------------
def test_prompt_holds_only_the_facts():
    msgs = build_messages(DOG)
    user = msgs[1]["content"]
    assert msgs[0]["role"] == "system" and "only the facts" in msgs[0]["content"]
    assert "golden retriever" in user and "BEST DAY" in user and "12 seconds" in user
    assert "#dogs" not in user and "tabby" not in user  # held-back tags and weak labels stay out
    assert build_prompt(DOG).endswith("CAPTION:")
    from dataclasses import replace

    assert "Similar posts' tags: #dogsofinstagram" in build_messages(
        replace(DOG, related_tags=(("dogsofinstagram", 1.0),)))[1]["content"]


@pytest.mark.parametrize("answer, caption, tags", [
    ("CAPTION: Max on a morning walk\nHASHTAGS: #goldenretriever #MorningWalk", "Max on a morning walk",
     ["goldenretriever", "morningwalk"]),
    ('```json\n{"caption": "Best day", "hashtags": ["#beach", "walk"]}\n```', "Best day", ["beach", "walk"]),
    (" Max runs on the beach #beach\nmore text", "Max runs on the beach", ["beach"]),
    ('**Caption:** "Look at him run"\n**Hashtags:** #run', "Look at him run", ["run"]),
])
def test_parse_answer_shapes(answer, caption, tags):
    assert parse_answer(answer) == (caption, tags)


@pytest.mark.parametrize("answer", ["", "   ", "\n\n#### 12 !!", None])
def test_parse_answer_refuses_garbage(answer):
    with pytest.raises(GenerationError):
        parse_answer(answer)


def test_instruction_tuned_from_metadata():
    assert is_instruction_tuned({"general.name": "Gemma 3 270m It"})
    assert is_instruction_tuned({"general.finetune": "instruct"})
    assert not is_instruction_tuned({"general.name": "Gemma 3 270m"})


# --- the OpenAI generator against fake servers -------------------------------------------------------------------
def test_openai_generator_falls_back_when_the_server_refuses_connections():
    gen = OpenAIChatGenerator(f"http://127.0.0.1:{free_port()}", "m", timeout_s=2)
    out = gen.generate([DOG, TEXT])
    assert gen.version == "openai:m"
    assert all(s.fallback for s in out)
    assert out[0].captions == GroundedGenerator().suggest(DOG).captions
    assert out[0].rejected[0].reason == "no_output" and "unreachable" in out[0].rejected[0].detail


class _Fake(BaseHTTPRequestHandler):
    answers: dict[str, str] = {}
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        user = body["messages"][1]["content"] if "messages" in body else body["prompt"].rsplit("\n\n", 1)[-1]
        content = next((a for k, a in self.answers.items() if k in user), "CAPTION: ok post")
        if content == "HTTP500":
            self.send_response(500)
            self.end_headers()
            return
        choice = {"message": {"content": content}} if "messages" in body else {"text": content.removeprefix("CAPTION:")}
        data = json.dumps({"choices": [choice], "usage": {"completion_tokens": 7}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture()
def fake_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Fake.seen.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_openai_generator_guards_parses_and_falls_back_per_post(fake_server):
    _Fake.answers = {
        "Morning walk": "CAPTION: Max loves the beach\nHASHTAGS: #beach #goldenretriever #paris",
        "Big news": "CAPTION: Big news from Paris Hilton\nHASHTAGS: #launch",
        "jellyfish": "HTTP500",
        "on-screen": "!!!",
    }
    posts = [DOG, TEXT, PostFacts("w", "image", caption="jellyfish"), PostFacts("o", "image", ocr_text="on-screen")]
    gen = OpenAIChatGenerator(fake_server, "tiny", max_tokens=16, concurrency=2)
    out = gen.generate(posts)
    assert out[0].captions == ["Max loves the beach"] and not out[0].fallback
    assert out[0].hashtags == ["beach", "goldenretriever"]
    assert [r.reason for r in out[0].rejected] == ["unknown_entity"]  # #paris
    assert out[1].fallback and out[1].captions == ["Big news today"]
    assert out[1].rejected[0].reason == "unknown_entity"
    assert out[2].fallback and "HTTP 500" in out[2].rejected[0].detail
    assert out[3].fallback and out[3].rejected[0].reason == "no_output"
    assert {b["max_tokens"] for b in _Fake.seen} == {16} and all(b["temperature"] == 0 for b in _Fake.seen)
    assert gen.last_stats.completion_tokens == 7 * 3


def test_openai_generator_token_budget_limits_calls(fake_server):
    _Fake.answers = {}
    gen = OpenAIChatGenerator(fake_server, "tiny", max_tokens=10, batch_token_budget=25, batch_size=8)
    out = gen.generate([PostFacts(f"p{i}", "text", caption=f"ok post {i}") for i in range(4)])
    assert len(_Fake.seen) == 2
    assert [s.fallback for s in out] == [False, False, True, True]
    assert "budget" in out[3].rejected[0].detail


def test_generator_from_settings_reads_the_captions_fields():
    from types import SimpleNamespace

    from assets.captions.generators import generator_from_settings

    assert generator_from_settings(SimpleNamespace()).version == "grounded-1"
    gen = generator_from_settings(SimpleNamespace(captions_generator="openai", captions_llm_url="http://tgi:8080",
                                                  captions_llm_model="llama-3-8b-lora", captions_max_tokens=64,
                                                  captions_timeout_s=20.0, captions_batch_size=8))
    assert (gen.version, gen.max_tokens, gen.timeout_s, gen.batch_size) == ("openai:llama-3-8b-lora", 64, 20.0, 8)


def test_build_generator_kinds():
    assert build_generator().version == "grounded-1"
    assert build_generator("openai", url="http://h:1/v1", model="m").base_url == "http://h:1"
    with pytest.raises(ValueError, match="URL"):
        build_generator("openai")
    with pytest.raises(ValueError, match="unknown caption generator"):
        build_generator("gpt")


@pytest.mark.parametrize("answer", ["Post: photo\nShows: cup", "CAPTION: Speech: look at him run"])
def test_parse_answer_refuses_an_echo_of_the_prompt(answer):
    with pytest.raises(GenerationError, match="prompt"):
        parse_answer(answer)


def test_example_words_copied_into_an_answer_are_refused():
    assert example_leak("A lighthouse by the beach", DOG) == "lighthouse"
    assert example_leak("Max loves the beach", DOG) is None
    assert example_leak("the lighthouse", PostFacts("l", "image", labels=(("beacon, lighthouse", 0.9),))) is None


def test_completions_endpoint_sends_the_few_shot_prompt(fake_server):
    _Fake.answers = {"Morning walk": "CAPTION: Max loves the beach\nHASHTAGS: #beach",
                     "Big news": "CAPTION: A windy evening on the coast\nHASHTAGS: #launch"}
    gen = OpenAIChatGenerator(fake_server, "base", endpoint="completions", max_tokens=24)
    out = gen.generate([DOG, TEXT])
    body = _Fake.seen[0]
    assert body["prompt"].endswith("CAPTION:") and body["stop"] and "messages" not in body
    assert out[0].captions == ["Max loves the beach"] and out[0].hashtags == ["beach"] and not out[0].fallback
    assert out[1].fallback and out[1].rejected[0].reason == "unknown_entity" and "example" in out[1].rejected[0].detail


def test_guard_new_words_rule_is_opt_in_and_catches_lowercase_inventions():
    weak = PostFacts("w", "image", labels=(("jellyfish", 0.2),))
    assert QualityGuard().check("a photo of the sea", weak) is None  # the entity rule sees no name
    rej = QualityGuard(max_new_words=0).check("a photo of the sea", weak)
    assert rej.reason == "new_words" and "sea" in rej.detail and "photo" not in rej.detail
    assert QualityGuard(max_new_words=0).check("Running with Max on the beach", DOG) is None  # stems: run
    assert QualityGuard(max_new_words=1).check("an excited Max on the beach", DOG) is None


def test_guard_checks_hashtags_alone_and_takes_pair_scores():
    guard = QualityGuard(lambda texts: [(0.0, 0.9) if "crap" in t else (0.0, 0.0) for t in texts])
    assert guard.check_hashtag("#GoldenRetriever", DOG) is None
    assert guard.check_hashtag("bestday", DOG) is None  # on-screen "BEST DAY" joined
    assert guard.check_hashtag("dog", DOG).reason == "unknown_entity"
    assert guard.check_hashtag("two words", DOG).reason == "length"
    assert guard.check_hashtag("crap", PostFacts("c", "text", caption="crap")).reason == "toxic"
