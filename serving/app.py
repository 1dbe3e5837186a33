"""The FastAPI app: ``create_app(settings)`` builds one; ``app`` is the one uvicorn serves."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.staticfiles import StaticFiles

import socialpulse
from serving.api import api_router
from serving.api.routes.dashboard import STATIC_DIR
from serving.dbt_docs import DBT_DOCS_PATH, DbtDocs
from serving.deps import Stores
from serving.errors import install_error_handlers
from socialpulse.runtime import prepare_process
from socialpulse.settings import Settings, get_settings


log = logging.getLogger("serving")


def _warm_feature_store(settings: Settings) -> None:
    """Import the feature-store client and open the store off the request path (a cold import of feast
    takes 20-30 s on two cores; the first stats request should not pay it)."""
    try:
        from socialpulse.features import feature_store

        feature_store(settings)
    except Exception as exc:  # noqa: BLE001 - a warm-up failure surfaces on the first real request
        log.warning("feature store warm-up failed: %s", exc)


def _warm_query_encoder(stores: Stores) -> None:
    """Load the search query encoder (torch + MiniLM, a few seconds) before the first search needs it."""
    try:
        stores.query_encoder.encode("warm up")
    except Exception as exc:  # noqa: BLE001 - a warm-up failure surfaces on the first search
        log.warning("query encoder warm-up failed: %s", exc)


def create_app(settings: Settings | None = None, *, warm: bool = True) -> FastAPI:
    settings = settings or get_settings()
    prepare_process(settings)  # before the feature store client (Feast) is imported

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.stores = Stores(settings)
        if warm:
            threading.Thread(target=_warm_feature_store, args=(settings,), name="warm-features", daemon=True).start()
            threading.Thread(target=_warm_query_encoder, args=(app.state.stores,), name="warm-encoder",
                             daemon=True).start()
            app.state.stores.ranker.get()  # starts loading the champion feed ranker in the background
        try:
            yield
        finally:
            app.state.stores.close()

    # /docs and /redoc load Swagger UI and ReDoc from the fastapi-offline wheel, not a CDN: they work on a
    # machine without internet (no validator badge either: it would call validator.swagger.io)
    app = FastAPIOffline(
        title="SocialPulse API",
        version=socialpulse.__version__,
        description="Ingestion (posts with media, events) and reads of the materialized SocialPulse stores.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")  # the creator dashboard's files
    app.mount(DBT_DOCS_PATH, DbtDocs(settings.dbt_docs), name="dbt-docs")  # the analysts' dbt docs site
    return app


app = create_app()
