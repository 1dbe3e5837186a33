"""HTTP API: the router of every route module."""

from fastapi import APIRouter

from serving.api.routes import creators, dashboard, feed, health, ingest, notifications, posts, search, trends, users
from serving.api.routes import admin, moderation, review_page
from serving.api.routes import captions

api_router = APIRouter()
api_router.include_router(admin.router)
api_router.include_router(captions.router)
api_router.include_router(creators.router)
api_router.include_router(dashboard.router)
api_router.include_router(feed.router)
api_router.include_router(health.router)
api_router.include_router(ingest.router)
api_router.include_router(notifications.router)
api_router.include_router(posts.router)
api_router.include_router(search.router)
api_router.include_router(trends.router)
api_router.include_router(users.router)
api_router.include_router(moderation.router)
api_router.include_router(review_page.router)

__all__ = ["api_router"]
