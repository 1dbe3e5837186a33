"""The `socialpulse captions` commands: generate alt-text, captions and hashtags for days of posts, and show what
is served for one post."""

from __future__ import annotations

import click

from cli.common import day_range, emit, fail, progress


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def captions() -> None:
    """Alt-text, caption and hashtag suggestions written from what each post's media shows, its on-screen text,
    its speech and its creator's words (the generator is SOCIALPULSE_CAPTIONS_GENERATOR, grounded by default)."""


@captions.command("run")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first day (default: --days back)")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="last day (default: today UTC)")
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1),
              help="how many days back when --start is not given")
@click.option("--evaluate/--no-evaluate", default=False, show_default=True,
              help="then evaluate each day: hashtag hit@5 against creators' own tags held back (beside the "
              "existing suggester), alt-text coverage and length, the guard's rejections by reason")
def run_cmd(start, end, days: int, evaluate: bool) -> None:
    """Caption each day through Dagster (runs show in the Dagster UI): label new media (EfficientNet-Lite0), write
    alt-text and suggestions, publish them to Postgres for the API. Run it after moderation for the same days
    (its scores hold the on-screen text and speech); in a running platform captions_sensor does this by itself.
    Needs the services. Prints a JSON summary; exits 1 when a run failed."""
    from orchestration.runner import captions_all
    from socialpulse.settings import get_settings

    summary = captions_all(get_settings(), day_range(start, end, days), evaluate=evaluate, progress=progress)
    emit(summary)
    if summary["failed"]:
        fail(f"{len(summary['failed'])} run(s) failed: see the runs in the Dagster UI")


@captions.command("show")
@click.argument("post_id")
def show_cmd(post_id: str) -> None:
    """What the API serves for POST_ID (GET /v1/posts/POST_ID/captions, read from Postgres): alt-text, caption and
    hashtag suggestions, the generator's version, whether it fell back, what the guard rejected."""
    import psycopg

    from socialpulse import captions as store
    from socialpulse.settings import get_settings

    try:
        with psycopg.connect(get_settings().postgres, connect_timeout=5) as conn:
            row = store.for_post(conn, post_id)
    except LookupError as exc:
        fail(str(exc))
    except psycopg.OperationalError as exc:
        fail(f"Postgres is not reachable ({exc}); start it with `socialpulse services up`")
    if row is None:
        fail(f"no captions for post {post_id!r} yet (run `socialpulse captions run` for its day)")
    emit(row)
