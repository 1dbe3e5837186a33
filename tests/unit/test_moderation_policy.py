"""The moderation policy: thresholds from one TOML file, scores in, one action with reasons out."""

import pytest

from assets.moderation.policy import (
    DEFAULT_POLICY_PATH,
    PolicyError,
    Scores,
    TextScores,
    decide,
    load_policy,
    parse_policy,
)

POLICY = load_policy(DEFAULT_POLICY_PATH)


def text(h, o):
    return TextScores(hatespeech=h, offensive=o, normal=round(1 - h - o, 6))


def test_clean_text_post_is_allowed():
    d = decide(POLICY, Scores(text={"caption": text(0.02, 0.05)}))
    assert d.action == "allow" and d.reasons == () and d.recommendable


def test_confident_hate_is_removed_and_names_the_source():
    d = decide(POLICY, Scores(text={"caption": text(0.01, 0.02), "transcript": text(0.95, 0.03)}))
    assert d.action == "remove"
    assert "hate speech in transcript" in d.reasons[0]


def test_likely_hate_goes_to_review_and_offensive_is_limited():
    assert decide(POLICY, Scores(text={"caption": text(0.70, 0.20)})).action == "review"
    d = decide(POLICY, Scores(text={"ocr": text(0.10, 0.75)}))
    assert d.action == "limit" and "offensive language in ocr" in d.reasons[0]


def test_toxic_mass_split_between_classes_is_limited():
    # neither class past its own bar, together past limit_toxic
    d = decide(POLICY, Scores(text={"caption": text(0.45, 0.40)}))
    assert d.action == "limit" and "toxic language" in d.reasons[0]


def test_strongest_action_wins_and_weaker_reasons_are_kept():
    d = decide(POLICY, Scores(text={"caption": text(0.05, 0.90)}, media_kind="image", frame_nsfw=[0.99]))
    assert d.action == "remove"
    assert len(d.reasons) == 2 and d.reasons[0].startswith("nudity in image")


@pytest.mark.parametrize(
    "nsfw,action", [(0.10, "allow"), (0.65, "review"), (0.85, "limit"), (0.98, "remove")]
)
def test_image_nsfw_bands(nsfw, action):
    assert decide(POLICY, Scores(media_kind="image", frame_nsfw=[nsfw])).action == action


def test_one_hot_video_frame_is_reviewed_two_are_removed():
    one = decide(POLICY, Scores(media_kind="video", frame_nsfw=[0.1, 0.99, 0.2, 0.1]))
    assert one.action == "review" and "1 video frame(s) of 4" in one.reasons[0]
    two = decide(POLICY, Scores(media_kind="video", frame_nsfw=[0.1, 0.99, 0.98, 0.1]))
    assert two.action == "remove"


def test_media_error_goes_to_review_with_the_reason():
    d = decide(POLICY, Scores(text={"caption": text(0.0, 0.0)}, media_kind="video",
                              media_error="zero_length_video: the file has no frames"))
    assert d.action == "review"
    assert d.reasons == ("media could not be analysed: zero_length_video: the file has no frames",)


def test_policy_version_changes_with_the_file(tmp_path):
    changed = DEFAULT_POLICY_PATH.read_text().replace("remove_hatespeech = 0.90", "remove_hatespeech = 0.65")
    p = tmp_path / "policy.toml"
    p.write_text(changed)
    other = load_policy(p)
    assert other.version != POLICY.version and other.text.remove_hatespeech == 0.65
    assert decide(other, Scores(text={"caption": text(0.70, 0.1)})).action == "remove"
    assert decide(POLICY, Scores(text={"caption": text(0.70, 0.1)})).action == "review"


def test_policy_from_environment(tmp_path, monkeypatch):
    p = tmp_path / "strict.toml"
    p.write_text(DEFAULT_POLICY_PATH.read_text().replace('on_error = "review"', 'on_error = "remove"'))
    monkeypatch.setenv("SOCIALPULSE_MODERATION_POLICY", str(p))
    assert load_policy().on_media_error == "remove"


@pytest.mark.parametrize(
    "edit,message",
    [
        (("limit_offensive = 0.70", "limit_offensive = 1.7"), "limit_offensive must be a number in [0, 1]"),
        (("limit_offensive = 0.70", ""), "limit_offensive is missing"),
        (("[video]", "[vid]"), "section [video] is missing"),
        (('on_error = "review"', 'on_error = "ban"'), "on_error must be one of"),
        (("review_nsfw = 0.60\n\n[video]", "review_nsfw = 0.90\n\n[video]"), "review_nsfw <= limit_nsfw"),
        (("[text]", "[text"), "not valid TOML"),
    ],
)
def test_bad_policy_is_refused_with_the_key(edit, message):
    content = DEFAULT_POLICY_PATH.read_text().replace(*edit, 1)
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(content)


def test_missing_policy_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "nope.toml")


def test_action_table_reads_actions_across_reference_labels():
    from assets.moderation.scoring import action_table

    decisions = [{"post_id": "a", "action": "remove"}, {"post_id": "b", "action": "review"},
                 {"post_id": "c", "action": "allow"}, {"post_id": "d", "action": "allow"},
                 {"post_id": "e", "action": "limit"}, {"post_id": "x", "action": "remove"}]
    labels = {"a": "hatespeech", "b": "hatespeech", "c": "hatespeech", "d": "normal", "e": "offensive"}
    t = action_table(decisions, labels)
    assert t["by_label"]["hatespeech"]["n"] == 3 and t["by_label"]["hatespeech"]["remove"] == 1
    assert t["hatespeech_removed_or_held"] == round(2 / 3, 4)
    assert t["normal_allowed"] == 1.0 and t["toxic_actioned"] == 1.0
    assert sum(v["n"] for v in t["by_label"].values()) == 5  # the unlabelled post is left out
