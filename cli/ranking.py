"""The `socialpulse ranking` commands: train and evaluate the feed's candidate + ranking pipeline offline."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import emit, fail, progress

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ranking() -> None:
    """The feed's candidate sources and LambdaRank ranker, trained and evaluated offline."""


@ranking.command("eval")
@click.option("--interactions", type=_FILE, default=None,
              help="one interaction log, split into train and test by --split and --ratio")
@click.option("--train", "train_path", type=_FILE, default=None,
              help="an explicit train log (with --test, instead of --interactions; the ranker's label period is "
              "then each user's latest train interactions)")
@click.option("--test", "test_path", type=_FILE, default=None, help="an explicit test log (with --train)")
@click.option("--format", "fmt", required=True, type=click.Choice(["movielens", "csv"]),
              help="movielens: tab-separated user, item, rating, timestamp (unix seconds), no header, like "
              "ml-100k's u.data (each rating is one interaction of weight 1); csv: a header with "
              "user_id,item_id,timestamp and optionally weight (default 1), timestamps in unix seconds or ISO-8601 "
              "(UTC when no offset)")
@click.option("--split", type=click.Choice(["random", "time"]), default="random", show_default=True,
              help="with --interactions: random = each user's interactions shuffled (seeded) and split at --ratio; "
              "time = each user's earliest --ratio go to train. Users with one interaction stay in train only")
@click.option("--ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.75, show_default=True,
              help="share of each user's interactions that goes to train (rounded half up, at least one on each side)")
@click.option("--k", "k_text", default="10,20", show_default=True,
              help="cut-offs K, comma-separated: ndcg@K, map@K, precision@K and recall@K for each")
@click.option("--seed", default=7, show_default=True, type=int,
              help="seed of the split, the SVD and the validation users: the same seed gives the same result")
@click.option("--out", type=_FILE, default=None, help="also write the JSON here")
def eval_cmd(interactions: Path | None, train_path: Path | None, test_path: Path | None, fmt: str, split: str,
             ratio: float, k_text: str, seed: int, out: Path | None) -> None:
    """Train and evaluate the feed's candidate + ranking pipeline on an external user-item-time log and print
    JSON: ndcg@K, map@K, precision@K and recall@K of the model and of two baselines (most_popular: train
    interactions per item; interest_only: cosine to the user's interest vector), in the same run, plus the
    merged candidate sources' recall (candidate_recall@200) and timings. Progress goes to stderr.

    \b
    Protocol (stated in the output's "protocol" field):
    - repeated rows of one user and item are one interaction (weights summed, first time kept);
    - full ranking: for each test user the model scores every catalogue item (one with a train
      interaction) the user has not interacted with in train; the best max(K) form the list;
    - relevance is binary: 1 for each item the user interacted with in test (items outside the
      catalogue or already in the user's train are not counted; the JSON says how many);
    - metrics are averaged over the test users with a relevant item.

    \b
    Training reads train only: each user's train interactions are split again the way the test was
    (random, or latest 20% for time and explicit splits) into history and label period. From the
    history: item vectors (truncated SVD of the user x item matrix, at most 64 dimensions), interest
    vectors, popularity and recency features (the platform's FEATURES; follows, watch time and likes
    are missing). Candidates per user: interest, popular and fresh sources merged to 200; a candidate
    the user interacted with in the label period is a positive; 10% of the users validate (early
    stopping) the LambdaRank ranker. For the evaluation the features are recomputed from all of train.
    """
    from assets.ranking.logeval import LogError, log_eval, parse_ks

    try:
        result = log_eval(fmt=fmt, interactions=interactions, train=train_path, test=test_path, split=split,
                          ratio=ratio, ks=parse_ks(k_text), seed=seed, progress=progress)
    except LogError as exc:
        fail(str(exc))
    emit(result, out)


@ranking.command("train")
@click.option("--days", type=click.IntRange(3), default=None,
              help="training-set days to use, the last held out as test [default: SOCIALPULSE_FEED_TRAINING_DAYS]")
@click.option("--register/--no-register", default=True, show_default=True,
              help="log the run to MLflow and promote the model to champion if it beats the current one on the "
              "held-out day (the champion is re-scored on the same day)")
@click.option("--out", type=_FILE, default=None, help="also write the evaluation JSON here")
def train_cmd(days: int | None, register: bool, out: Path | None) -> None:
    """Train the feed's LambdaRank ranker on lake/gold/feed_training_set (what feed_ranker_job does) and print
    its held-out evaluation beside the baselines: most_popular (7-day views), interest_only (cosine to the
    interest vector), logged_order (what was served) and, when registering, the current champion; plus the
    Recall@200 of candidate generation. Needs at least 3 days of training set (materialize feed_training_job
    for them first)."""
    from assets.ranking.train import NotEnoughData, train_and_register
    from socialpulse.model_registry import RegistryUnavailable
    from socialpulse.settings import get_settings

    try:
        result = train_and_register(get_settings(), register=register, log=progress, days=days)
    except (NotEnoughData, RegistryUnavailable) as exc:
        fail(str(exc))
    result.pop("ranker", None)
    emit(result, out)


@ranking.command("publish-state")
def publish_state_cmd() -> None:
    """Rebuild the feed's serving state in Redis now (what feed_state_job does on its schedule): candidate
    lists, packed post features, per-user follows, blocks, not-interested posts and seen posts."""
    import psycopg
    import redis

    from assets.ranking.state_job import publish_state
    from socialpulse.settings import get_settings

    s = get_settings()
    try:
        result = publish_state(s, redis.Redis.from_url(s.redis))
    except (redis.exceptions.ConnectionError, psycopg.OperationalError, OSError) as exc:
        fail(f"a store is unreachable: {exc} (start them with `socialpulse services up`)")
    emit(result)
