"""Bearer tokens for tests: signed by the embedded signer of a test's settings (its state folder's development
key, the one the app under test verifies against)."""

from __future__ import annotations


def bearer(settings, user_id: str, role: str = "user") -> dict[str, str]:
    """Request headers carrying a token for ``user_id`` with ``role``."""
    from socialpulse.auth import issue_token

    return {"Authorization": f"Bearer {issue_token(settings, user_id, role)}"}
