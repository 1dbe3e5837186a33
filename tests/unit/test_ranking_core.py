"""The feed's ranking core: metrics against hand-computed values, the LambdaRank ranker, re-ranking rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from socialpulse.ranking import metrics
from socialpulse.ranking.model import FEATURES, Ranker, group_sizes, heuristic_scores, relevance_grade
from socialpulse.ranking.rerank import Candidate, adjust, arrange, diversify, eligible, merge_candidates


def test_metrics_match_hand_computed_values():
    ranked = ["a", "b", "c", "d"]
    rel = {"b": 1, "d": 2, "z": 1}  # z was never retrieved
    # DCG = (2^1-1)/log2(3) + (2^2-1)/log2(5); ideal = 3/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 1 / math.log2(3) + 3 / math.log2(5)
    ideal = 3 + 1 / math.log2(3) + 1 / 2
    assert metrics.ndcg_at_k(ranked, rel, 4) == pytest.approx(dcg / ideal)
    assert metrics.average_precision_at_k(ranked, rel, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert metrics.recall_at_k(ranked, rel, 2) == pytest.approx(1 / 3)
    assert metrics.precision_at_k(ranked, rel, 4) == pytest.approx(2 / 4)
    assert metrics.ndcg_at_k(["d", "b", "z"], rel, 3) == pytest.approx(1.0)
    out = metrics.evaluate({"u1": ranked}, {"u1": rel, "u2": {"a": 1}, "u3": {}}, ks=(2, 4))
    assert out["users"] == 2 and out["users_skipped"] == 1
    assert out["recall@4"] == pytest.approx((2 / 3 + 0) / 2)  # u2 got no list: zero, not skipped


def test_relevance_grades_and_groups():
    g = relevance_grade(completion=np.array([0.1, 0.5, 0.9, 0.1, 0.2, np.nan]),
                        liked=np.array([0, 0, 0, 1, 0, 0]), commented=np.zeros(6), shared=np.zeros(6),
                        followed=np.array([0, 0, 0, 0, 1, 0]))
    assert g.tolist() == [0, 1, 2, 3, 4, 0]
    assert group_sizes(["r1", "r1", "r2", "r3", "r3", "r3"]).tolist() == [2, 1, 3]


def _world(n_requests: int, rng: np.random.Generator):
    """Requests of 20 candidates whose relevance depends on interest similarity and completion signal."""
    X = rng.normal(size=(n_requests * 20, len(FEATURES)))
    X[:, FEATURES.index("sim_interest")] = rng.uniform(-0.2, 0.9, len(X))
    util = 3 * X[:, FEATURES.index("sim_interest")] + X[:, FEATURES.index("engagement_rate_7d")]
    y = np.clip(np.digitize(util + rng.normal(0, 0.3, len(X)), [0.5, 1.5, 2.5]), 0, 4)
    return X, y, np.full(n_requests, 20)


def test_lambdarank_learns_the_planted_utility_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X, y, groups = _world(300, rng)
    Xv, yv, gv = _world(100, rng)
    ranker = Ranker.train(X, y, groups, Xv, yv, gv)
    scores = ranker.score(Xv)
    # per request, nDCG@10 of the model beats a random ordering by a wide margin
    def mean_ndcg(s):
        out = []
        for r in range(100):
            sl = slice(r * 20, (r + 1) * 20)
            ids = [str(i) for i in range(20)]
            order = [ids[i] for i in np.argsort(-s[sl])]
            out.append(metrics.ndcg_at_k(order, {ids[i]: int(yv[sl][i]) for i in range(20) if yv[sl][i] > 0}, 10))
        return float(np.mean(out))
    assert mean_ndcg(scores) > mean_ndcg(rng.normal(size=len(Xv))) + 0.2
    top2 = sorted(ranker.importance(), key=ranker.importance().get)[-2:]
    assert set(top2) == {"sim_interest", "engagement_rate_7d"}  # the two features the utility is made of
    loaded = Ranker.load(ranker.save(tmp_path / "r"))
    assert loaded.version == ranker.version
    np.testing.assert_allclose(loaded.score(Xv[:50]), scores[:50])
    # NaN features (a missing online row) still score
    Xn = Xv[:5].copy()
    Xn[:, 3:] = np.nan
    assert np.isfinite(loaded.score(Xn)).all() and np.isfinite(heuristic_scores(Xn)).all()


def test_training_refuses_bad_groups_and_all_negative_labels():
    X = np.zeros((4, len(FEATURES)))
    with pytest.raises(ValueError, match="groups sum to 3"):
        Ranker.train(X, np.array([1, 0, 0, 0]), np.array([3]))
    with pytest.raises(ValueError, match="no positive grade"):
        Ranker.train(X, np.zeros(4), np.array([4]))


def test_merge_interleaves_sources_and_keeps_the_first_source():
    cands = merge_candidates({"interest": ["a", "b", "c"], "following": ["b", "d"], "popular": ["e", "a"]}, limit=4)
    assert [c.post_id for c in cands] == ["b", "a", "e", "d"]
    by_id = {c.post_id: c for c in cands}
    assert by_id["b"].source == "following" and by_id["a"].source == "interest" and by_id["e"].source == "popular"
    # the limit cuts after the fourth distinct post: c (interest's third) never becomes a candidate
    assert "c" not in by_id and len(merge_candidates({"interest": ["a", "b", "c"]}, limit=10)) == 3


def test_eligible_drops_seen_blocked_unfollowed_and_own_posts():
    cands = [Candidate("p1", "interest", author_id="c1"), Candidate("p2", "interest", author_id="c2"),
             Candidate("p3", "interest", author_id="c3"), Candidate("p4", "interest", author_id="me"),
             Candidate("p5", "interest", author_id="c5")]
    kept = eligible(cands, user_id="me", seen={"p5"}, blocked={"c1"}, unfollowed={"c2"})
    assert [c.post_id for c in kept] == ["p3"]


def test_adjust_penalises_not_interested_and_rewards_freshness():
    cands = [Candidate("old", "interest", author_id="a", age_hours=500), Candidate("new", "interest", author_id="b", age_hours=0),
             Candidate("like_dismissed", "interest", author_id="c", age_hours=500, sim_not_interested=0.95)]
    adjust(cands, np.array([1.0, 1.0, 1.0]))
    s = {c.post_id: c.score for c in cands}
    assert s["new"] > s["old"] > s["like_dismissed"]


def test_a_dismissed_creator_comes_after_every_other_candidate_whatever_the_caps():
    # the best posts are all fresh-pool posts (two per window of 10): a score penalty lost to the caps, which
    # took the dismissed creator's post (from interest) as the only one that fitted at position 2
    cands = [Candidate(f"f{i}", "fresh", author_id=f"c{i}", score=10 - i / 10) for i in range(6)]
    cands.append(Candidate("theirs", "interest", author_id="dismissed", score=-5.0))
    cands.append(Candidate("theirs2", "interest", author_id="dismissed", score=-6.0))
    assert [c.post_id for c in diversify(cands)][:3] == ["f0", "f1", "theirs"]
    ordered = [c.post_id for c in arrange(cands, demoted_authors={"dismissed"})]
    assert ordered == ["f0", "f1", "f2", "f3", "f4", "f5", "theirs", "theirs2"]
    assert [c.post_id for c in arrange(cands, demoted_authors={"dismissed"}, limit=7)][-1] == "theirs"
    assert [c.post_id for c in arrange(cands, demoted_authors={"dismissed"}, limit=3)] == ["f0", "f1", "f2"]


def test_diversify_caps_authors_and_topics_per_window_without_shortening():
    # creator "a" made the three best posts: with a cap of one per 4 positions they are spread out
    cands = [Candidate(f"p{i}", "interest", author_id="a" if i < 3 else f"c{i}", score=10 - i) for i in range(10)]
    ids = [c.post_id for c in diversify(cands, author_cap=1, topic_cap=99, window=4)]
    assert ids == ["p0", "p3", "p4", "p5", "p1", "p6", "p7", "p8", "p2", "p9"]
    # topics: at most 2 of topic t in any 3 consecutive positions while other topics remain
    cands = [Candidate(f"q{i}", "interest", author_id=f"c{i}", topic="t" if i < 6 else "u", score=10 - i) for i in range(9)]
    out = diversify(cands, author_cap=9, topic_cap=2, window=3)
    topics = [c.topic for c in out]
    assert topics[:6] == ["t", "t", "u", "t", "t", "u"]
    # a narrow pool (one creator only) is ordered, never shortened
    narrow = [Candidate(f"n{i}", "interest", author_id="a", score=i) for i in range(5)]
    assert [c.post_id for c in diversify(narrow)] == ["n4", "n3", "n2", "n1", "n0"]
