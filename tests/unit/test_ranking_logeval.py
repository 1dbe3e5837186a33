"""`socialpulse ranking eval` (assets/ranking/logeval.py, cli/ranking.py): loaders and their errors, the
per-user splits, the explicit --train/--test path, the CLI's JSON, and the pipeline beating most-popular on a
log with planted interest clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from assets.ranking.logeval import (
    PROTOCOL,
    LogError,
    Pairs,
    log_eval,
    parse_ks,
    read_csv,
    read_log,
    read_movielens,
    split_mask,
    train_counts,
)
from cli.main import main

T0 = 1_700_000_000
SYSTEMS = ("model", "most_popular", "interest_only")


def planted(n_users: int = 120, n_items: int = 150, clusters: int = 5, per_user: int = 24, own: float = 0.85,
            days: int = 30, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """(user, item, rating, unix time) rows: user u belongs to cluster u % clusters and draws ``own`` of its
    items from that cluster's items (i % clusters), the rest from the whole catalogue, both by a shared Zipf
    popularity; each user's items are spread over ``days`` in random order."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    rng.shuffle(pop)
    cluster_of = np.arange(n_items) % clusters
    rows = []
    for u in range(n_users):
        mine = np.flatnonzero(cluster_of == u % clusters)
        n = int(rng.integers(per_user // 2, per_user * 3 // 2))
        items: set[int] = set()
        while len(items) < n:
            pool = mine if rng.random() < own else np.arange(n_items)
            items.add(int(rng.choice(pool, p=pop[pool] / pop[pool].sum())))
        times = np.sort(rng.uniform(0, days * 86_400, n)).astype(int)
        rows += [(f"u{u}", f"i{i}", int(rng.integers(1, 6)), T0 + int(t))
                 for i, t in zip(rng.permutation(sorted(items)).tolist(), times)]
    return rows


def write_tsv(path, rows) -> str:
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def write_csv(path, rows, header: str = "user_id,item_id,timestamp,weight") -> str:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def check_result(out: dict, ks=(10, 20)) -> None:
    assert out["protocol"] == PROTOCOL and "full ranking" in out["protocol"]
    assert {"split", "data", "candidate_recall@200", "timing_s"} <= out.keys()
    assert {"users", "items", "train_rows", "test_rows"} <= out["data"].keys()
    assert set(out["timing_s"]) == {"load", "train", "evaluate"}
    assert 0.0 <= out["candidate_recall@200"] <= 1.0
    for system in SYSTEMS:
        for metric in ("ndcg", "map", "precision", "recall"):
            for k in ks:
                assert 0.0 <= out[system][f"{metric}@{k}"] <= 1.0, (system, metric, k)
        assert out[system]["users"] > 0


# --- the pipeline ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["random", "time"])
def test_model_beats_most_popular_on_planted_clusters(tmp_path, split):
    path = write_tsv(tmp_path / "u.data", planted())
    out = log_eval(fmt="movielens", interactions=path, split=split, ratio=0.75, ks=(10, 20), seed=7)
    check_result(out)
    model, popular = out["model"]["ndcg@10"], out["most_popular"]["ndcg@10"]
    # measured: ~0.4 against ~0.2 (the clusters are what popularity cannot see)
    assert model > popular + 0.1 and model > 1.5 * popular, (model, popular)
    assert out["interest_only"]["ndcg@10"] > popular
    assert out["candidate_recall@200"] > 0.9  # 150 items: the merged sources hold nearly all of them
    assert out["data"]["users"] == 120 and out["data"]["items"] <= 150
    assert out["data"]["train_rows"] + out["data"]["test_rows"] == out["data"]["input_rows"]
    assert out["split"] == {"method": split, "ratio": 0.75, "seed": 7, "interactions": path}
    assert out["ranker"]["label_split"] == split and out["ranker"]["positives"] > 0


def test_explicit_train_and_test_files(tmp_path):
    rows = planted(n_users=60, n_items=80, per_user=20, seed=1)
    cut = T0 + 20 * 86_400
    train = [(u, i, t, 1) for u, i, _, t in rows if t < cut]
    test = [(u, i, t, 1) for u, i, _, t in rows if t >= cut]
    seen_user, seen_item = train[0][0], train[0][1]
    test += [(seen_user, seen_item, cut + 5, 1),  # already in the user's train: not counted
             (seen_user, "never-in-train", cut + 6, 1)]  # outside the catalogue: not counted
    out = log_eval(fmt="csv", train=write_csv(tmp_path / "train.csv", train),
                   test=write_csv(tmp_path / "test.csv", test), ks=(5,))
    check_result(out, ks=(5,))
    assert out["split"]["method"] == "explicit"
    assert out["data"]["excluded_test_pairs"]["already_in_users_train"] >= 1
    assert out["data"]["excluded_test_pairs"]["item_not_in_train"] >= 1
    assert out["ranker"]["label_split"] == "time"
    with pytest.raises(LogError, match="either --interactions"):
        log_eval(fmt="csv", train=tmp_path / "train.csv")


def test_cli_prints_the_json_and_writes_out(tmp_path):
    path = write_tsv(tmp_path / "u.data", planted(n_users=40, n_items=50, per_user=12, seed=2))
    out_file = tmp_path / "result.json"
    r = CliRunner().invoke(main, ["ranking", "eval", "--interactions", path, "--format", "movielens",
                                  "--split", "time", "--k", "5,10", "--out", str(out_file)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    check_result(out, ks=(5, 10))
    assert json.loads(out_file.read_text()) == out
    assert out["split"]["method"] == "time" and out["split"]["ratio"] == 0.75
    bad = CliRunner().invoke(main, ["ranking", "eval", "--interactions", str(tmp_path / "nope.tsv"),
                                    "--format", "movielens"])
    assert bad.exit_code == 1 and "nope.tsv: no such file" in bad.stderr
    help_text = CliRunner().invoke(main, ["ranking", "eval", "--help"]).output
    for word in ("--interactions", "--train", "--test", "--format", "--split", "--ratio", "--k", "movielens",
                 "ISO-8601", "full ranking", "binary"):
        assert word in help_text


# --- splits --------------------------------------------------------------------------------------------------
def _pairs(counts: list[int], seed: int = 0) -> Pairs:
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(len(counts)), counts)
    item = np.concatenate([rng.permutation(50)[:n] for n in counts])
    ts = rng.integers(0, 5, len(user)).astype(float)  # many equal times: ties must not break the time split
    return Pairs(user, item, ts, np.ones(len(user)))


def test_random_split_is_per_user_stratified_and_seeded():
    counts = [1, 2, 3, 4, 5, 7, 10, 13, 20, 1, 2]
    pairs = _pairs(counts)
    mask = split_mask(pairs, "random", 0.75, seed=3)
    for u, n in enumerate(counts):
        n_train = int(mask[pairs.user == u].sum())
        if n == 1:
            assert n_train == 1  # a single interaction stays in train
        else:
            assert 1 <= n_train <= n - 1
            assert abs(n_train - 0.75 * n) <= 0.5 or n_train in (1, n - 1)
    assert np.array_equal(mask, split_mask(pairs, "random", 0.75, seed=3))
    assert not np.array_equal(mask, split_mask(pairs, "random", 0.75, seed=4))
    assert train_counts(np.array([1, 2, 4, 8, 10]), 0.75).tolist() == [1, 1, 3, 6, 8]


def test_time_split_keeps_each_users_earliest_in_train():
    counts = [1, 2, 3, 6, 9, 15]
    pairs = _pairs(counts, seed=1)
    mask = split_mask(pairs, "time", 0.6, seed=0)
    for u, n in enumerate(counts):
        mine = pairs.user == u
        train_ts, test_ts = pairs.ts[mine & mask], pairs.ts[mine & ~mask]
        assert len(train_ts) == train_counts(np.array([n]), 0.6)[0]
        if n >= 2:
            assert len(test_ts) and test_ts.min() >= train_ts.max()
    with pytest.raises(LogError, match="ratio"):
        split_mask(pairs, "time", 1.0, seed=0)


# --- loaders -------------------------------------------------------------------------------------------------
def test_loaders_read_both_formats(tmp_path):
    ml = read_movielens(write_tsv(tmp_path / "u.data", [("1", "10", 4, 881250949), ("2", "10", 3, 881250950)]))
    assert ml.user == ["1", "2"] and ml.ts.tolist() == [881250949, 881250950] and ml.weight.tolist() == [1, 1]
    (tmp_path / "a.csv").write_text("timestamp,extra,item_id,user_id\n"
                                    "2026-01-02T00:00:00Z,x,p1,u1\n\n1767225600,y,p2,u1\n2026-01-01 00:00:00,z,p1,u2\n")
    log = read_csv(tmp_path / "a.csv")
    assert log.user == ["u1", "u1", "u2"] and log.item == ["p1", "p2", "p1"]
    assert log.ts.tolist() == [1767312000, 1767225600, 1767225600]  # ISO-8601 without offset is UTC
    assert log.weight.tolist() == [1, 1, 1]  # no weight column: 1
    weighted = read_log(write_csv(tmp_path / "w.csv", [("u", "i", 5, 2.5), ("u", "j", 6, "")]), "csv")
    assert weighted.weight.tolist() == [2.5, 1.0]  # an empty cell is 1


@pytest.mark.parametrize("fmt, content, message", [
    ("movielens", "1\t2\t3\t4\n5\t6\t7\n", "bad line 2: expected 4 tab-separated fields"),
    ("movielens", "1,2,3,4\n", "bad line 1: expected 4 tab-separated fields"),
    ("movielens", "1\t2\t3\t881250949\n1\t3\t4\t2026-01-01\n", "bad line 2: timestamp '2026-01-01' is not unix seconds"),
    ("movielens", "1\t2\tgood\t881250949\n", "bad line 1: rating 'good' is not a finite number"),
    ("movielens", "", "bad: no interactions"),
    ("csv", "user_id,item,timestamp\nu,i,1\n", "bad line 1: header lacks column(s) item_id"),
    ("csv", "user_id,item_id,timestamp\nu,i,1\nu,j\n", "bad line 3: expected 3 comma-separated fields"),
    ("csv", "user_id,item_id,timestamp\nu,i,1\nu,j,yesterday\n", "bad line 3: timestamp 'yesterday' is not unix seconds or ISO-8601"),
    ("csv", "user_id,item_id,timestamp\nu,i,nan\n", "bad line 2: timestamp 'nan'"),
    ("csv", "user_id,item_id,timestamp,weight\nu,i,1,-2\n", "bad line 2: weight '-2' is not a finite number >= 0"),
    ("csv", "user_id,item_id,timestamp\n,i,1\n", "bad line 2: empty user id"),
    ("csv", "", "bad: empty file"),
])
def test_loader_errors_name_the_file_line_and_value(tmp_path, fmt, content, message):
    path = tmp_path / "bad"
    path.write_text(content)
    with pytest.raises(LogError) as err:
        read_log(path, fmt)
    assert str(err.value).startswith(str(tmp_path) + "/")
    assert message in str(err.value)


def test_missing_file_and_bad_k(tmp_path):
    with pytest.raises(LogError, match="missing.tsv: no such file"):
        read_log(tmp_path / "missing.tsv", "movielens")
    assert parse_ks("20, 10,10") == (10, 20)
    for text in ("", "0,10", "ten"):
        with pytest.raises(LogError, match="--k"):
            parse_ks(text)
