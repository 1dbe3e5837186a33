"""Bearer tokens for tests: signed by the embedded signer of a test's settings (its state folder's development
key, the one the app under test verifies against)."""

from __future__ import annotations


def bearer(settings, user_id: str, role: str = "user") -> dict[str, str]:
    """Request headers carrying a token for ``user_id`` with ``role``."""
    from socialpulse.auth import issue_token

    return {"Authorization": f"Bearer {issue_token(settings, user_id, role)}"}


def token(settings, user_id: str, role: str = "user") -> str:
    """The bare token (for a page's ``#token=`` sign-in)."""
    return bearer(settings, user_id, role)["Authorization"].split(" ", 1)[1]


def post_events(client, settings, events: list[dict]) -> dict:
    """POST ``events`` of several users the way their apps would: one batch per user, each with that user's token
    (``user_id`` left in: it matches). Returns the summed ``accepted`` and ``duplicates``."""
    by_user: dict[str, list[dict]] = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(event)
    total = {"accepted": 0, "duplicates": 0}
    for user_id, batch in by_user.items():
        res = client.post("/v1/events", json={"events": batch}, headers=bearer(settings, user_id))
        assert res.status_code == 202, res.text
        for key in total:
            total[key] += res.json()[key]
    return total
