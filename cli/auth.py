"""The `socialpulse auth` commands: development tokens from the embedded signer, and the key set it publishes."""

from __future__ import annotations

import json

import click

from cli.common import fail


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def auth() -> None:
    """Tokens for the API (embedded signer; production tokens come from the identity provider)."""


@auth.command("token")
@click.option("--user", "user_id", required=True, help="the user id the token speaks for (its 'sub')")
@click.option("--role", type=click.Choice(["user", "moderator", "admin"]), default="user", show_default=True,
              help="moderator: the review queue and moderation details; admin: everything, any user's data")
@click.option("--ttl", "ttl_s", type=click.IntRange(min=60), default=None,
              help="lifetime in seconds (default SOCIALPULSE_AUTH_TOKEN_TTL_S, 24 h)")
def token_cmd(user_id: str, role: str, ttl_s: int | None) -> None:
    """Print a bearer token for USER signed by this state folder's development key.

    \b
    Use it as:  curl -H "Authorization: Bearer $(socialpulse auth token --user u-42)" ...
    Refused when tokens come from an identity provider (SOCIALPULSE_AUTH_JWKS_URL set)."""
    import re

    from socialpulse.auth import issue_token
    from socialpulse.ingest import ID_PATTERN
    from socialpulse.settings import get_settings

    settings = get_settings()
    if settings.auth_jwks_url:
        fail(f"tokens are issued by {settings.auth_issuer} (SOCIALPULSE_AUTH_JWKS_URL is set); this platform signs none")
    if not re.fullmatch(ID_PATTERN, user_id) or len(user_id) > 64:
        fail(f"--user {user_id!r} is not a valid user id (1-64 of letters, digits, _ - : .)")
    click.echo(issue_token(settings, user_id, role, ttl_s))


@auth.command("jwks")
def jwks_cmd() -> None:
    """Print the public key set (JWKS) tokens of the embedded signer verify against."""
    from socialpulse.auth import public_jwks
    from socialpulse.settings import get_settings

    click.echo(json.dumps(public_jwks(get_settings()), indent=2))
