"""The `socialpulse notifications` commands: a delivery pass by hand, and the operator's answer to a sender
that died between a claim and its confirmation."""

from __future__ import annotations

import dataclasses
import datetime as dt

import click

from cli.common import emit


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def notifications() -> None:
    """Push notifications: deliver what is due, fail what a dead sender left unconfirmed."""


@notifications.command("deliver")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1),
              help="notifications to push at most in this pass")
def deliver_cmd(limit: int) -> None:
    """One delivery pass through the configured provider (what notification_delivery_job runs)."""
    from socialpulse import notifications as n
    from socialpulse.settings import get_settings

    emit(dataclasses.asdict(n.deliver(get_settings(), limit)))


@notifications.command("fail-unconfirmed")
@click.option("--older-than-s", default=60, show_default=True, type=click.IntRange(min=0),
              help="only notifications claimed at least this long ago (a sender still running has just claimed)")
def fail_unconfirmed_cmd(older_than_s: int) -> None:
    """Mark failed the notifications a dead sender claimed and never confirmed (never re-sent: they may
    have gone out). Delivery runs do this by themselves after 15 minutes."""
    import psycopg

    from socialpulse import notifications as n
    from socialpulse.settings import get_settings

    with psycopg.connect(get_settings().postgres, autocommit=True, connect_timeout=5) as conn:
        failed = n.expire_unconfirmed(conn, dt.datetime.now(dt.timezone.utc), dt.timedelta(seconds=older_than_s))
    emit({"failed": failed})
