"""The creator dashboard page, ``GET /creators/{creator_id}``: a static page (``serving/static/``: HTML, CSS and
plain JavaScript, nothing from a CDN, no web font) that reads ``GET /v1/creators/{creator_id}/dashboard`` and
draws its charts as inline SVG. Not part of the OpenAPI schema: it is a page, not an API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from serving.api.routes.creators import CreatorId

#: the page's files, served under ``/static`` (package data of ``serving``)
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/creators/{creator_id}")
async def creator_page(creator_id: CreatorId) -> FileResponse:
    """The dashboard of one creator (its script reads the id from the address)."""
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})
