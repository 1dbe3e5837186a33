"""The `socialpulse search` commands: query the vector index, run the content assets, evaluate retrieval."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import day_range, emit, fail, progress


def _encoder():
    from transformers.utils import logging as hf_logging

    from socialpulse.encoder import TextEncoder

    hf_logging.set_verbosity_error()
    return TextEncoder(batch_size=64, max_length=256)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def search() -> None:
    """Semantic + keyword search over the post vector index (Postgres search schema), the content assets
    that keep it fresh, and retrieval evaluations."""


@search.command("query")
@click.argument("text")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 50), help="posts to print")
def query_cmd(text: str, limit: int) -> None:
    """Run TEXT through the same hybrid ranking as GET /v1/search (without the API); prints JSON."""
    import psycopg

    from socialpulse import vectors
    from socialpulse.search import QueryError, parse_query
    from socialpulse.settings import get_settings

    try:
        q = parse_query(text)
    except QueryError as exc:
        fail(str(exc))
    vec = _encoder().encode([q.text])[0]
    try:
        with psycopg.connect(get_settings().postgres, connect_timeout=5) as conn:
            fused, rows = vectors.hybrid(conn, q, vec)
    except vectors.IndexNotBuilt as exc:
        fail(f"{exc}; run `socialpulse search run`")
    except psycopg.OperationalError as exc:
        fail(f"Postgres is unreachable ({exc}); start it with `socialpulse services up`")
    posts = [{"post_id": f.id, "score": f.score, "matched_by": dict(f.ranks),
              "snippet": rows[f.id]["contents"][:160]} for f in fused[:limit]]
    emit({"query": q.text, "posts": posts})


@search.command("run")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first day (UTC)")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="last day (default: today, UTC)")
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1), help="days ending at --end")
@click.option("--interest/--no-interest", default=True, show_default=True,
              help="also recompute user interest vectors (interest_job) for each day")
def run_cmd(start, end, days: int, interest: bool) -> None:
    """Run content_job (embed new or changed posts, sync the vector index) and interest_job for each day
    through Dagster (the runs show in the Dagster UI). A new encoder version re-embeds every post of the
    days given: that is the backfill. Needs the services and the day's moderation decisions."""
    from orchestration.runner import index_all
    from socialpulse.settings import get_settings

    summary = index_all(get_settings(), day_range(start, end, days), interest=interest, progress=progress)
    emit(summary)
    if summary["failed"]:
        fail(f"{len(summary['failed'])} run(s) failed: see the runs in the Dagster UI")


@search.group("eval")
def eval_group() -> None:
    """Retrieval quality: interest clusters on the synthetic world, event search on CrisisLex T6."""


@eval_group.command("synthetic")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="candidate posts' day (vectors as of the day before; default: the latest such day)")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 100), help="precision@k")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write JSON here")
def eval_synthetic_cmd(day, k: int, output: Path | None) -> None:
    """Cluster precision@k of each user's nearest new posts against chance (reads the lake; no service)."""
    from assets.content.evaluation import synthetic_interest_eval
    from socialpulse.settings import get_settings

    try:
        out = synthetic_interest_eval(get_settings(), day.date() if day else None, k=k)
    except (LookupError, ValueError) as exc:
        fail(str(exc))
    emit(out, output)


@eval_group.command("crisislex")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CrisisLex T6 stream.jsonl (tweet_id, text, hashtags, event, on_topic)")
@click.option("--per-event", default=None, type=click.IntRange(min=10),
              help="index at most N tweets per event (random, seeded; default: all)")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 100), help="precision@k")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write JSON here")
def eval_crisislex_cmd(input_path: Path, per_event: int | None, k: int, output: Path | None) -> None:
    """Precision@k per event of a query naming it, semantic vs keyword vs hybrid, in one run over a scratch
    index (a temporary database on the configured Postgres, dropped afterwards). Needs Postgres."""
    import psycopg

    from assets.content.evaluation import crisislex_search, read_event_tweets, sample_per_event
    from socialpulse.settings import get_settings

    records, bad = read_event_tweets(input_path)
    if not records:
        fail(f"{input_path} has no rows with tweet_id, text and event")
    if per_event:
        records = sample_per_event(records, per_event)
    try:
        out = crisislex_search(records, _encoder(), get_settings().postgres, k=k, progress=progress)
    except psycopg.OperationalError as exc:
        fail(f"Postgres is unreachable ({exc}); start it with `socialpulse services up postgres`")
    emit({"input": str(input_path), "skipped_lines": bad, "per_event": per_event, **out}, output)
