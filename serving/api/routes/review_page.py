"""The moderators' review page, ``GET /moderation/review``: a static page (``serving/static/review.*``: HTML, CSS and
plain JavaScript, nothing from a CDN, no web font) that signs in with a token (from the address's
``#token=...`` fragment or pasted), lists ``GET /v1/moderation/queue`` with each item's media, text, reasons and
scores, and posts decisions to ``POST /v1/moderation/{post_id}/review``. The page itself is public (it holds
no data); every read behind it needs a moderator's token. Not part of the OpenAPI schema."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from serving.api.routes.dashboard import STATIC_DIR

router = APIRouter(include_in_schema=False)


@router.get("/moderation/review")
async def review_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "review.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"})
