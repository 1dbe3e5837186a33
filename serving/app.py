"""The FastAPI app: ``create_app(settings)`` builds one; ``app`` is the one uvicorn serves."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

import socialpulse
from serving.api import api_router
from serving.deps import Stores
from serving.errors import install_error_handlers
from socialpulse.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.stores = Stores(settings)
        try:
            yield
        finally:
            app.state.stores.close()

    app = FastAPI(
        title="SocialPulse API",
        version=socialpulse.__version__,
        description="Ingestion (posts with media, events) and reads of the materialized SocialPulse stores.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(api_router)
    return app


app = create_app()
