"""What every command group shares: progress and errors on stderr, JSON out, day ranges from options."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click


def progress(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


def fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def emit(out: dict, output: Path | None = None) -> None:
    """Print ``out`` as JSON; also write it to ``output`` when given."""
    text = json.dumps(out, indent=2, default=str)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
        click.echo(f"wrote {output}", err=True)
    click.echo(text)


def day_range(start: dt.datetime | None, end: dt.datetime | None, days: int) -> list[dt.date]:
    """The UTC days from ``--start`` (default: ``--days`` back from the end) to ``--end`` (default: today)."""
    end_d = end.date() if end else dt.datetime.now(dt.timezone.utc).date()
    start_d = start.date() if start else end_d - dt.timedelta(days=days - 1)
    if start_d > end_d:
        fail(f"--start {start_d} is after --end {end_d}")
    return [start_d + dt.timedelta(days=i) for i in range((end_d - start_d).days + 1)]

