"""The dbt docs site for analysts: what ``dbt docs generate`` writes (index.html, manifest.json, catalog.json),
served as static files at :data:`DBT_DOCS_PATH` from the folder ``settings.dbt_docs`` names."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

DBT_DOCS_PATH = "/analytics/dbt-docs"
NOT_GENERATED = ("the dbt docs are not generated yet: `make demo` generates them at its end, "
                 "`socialpulse warehouse docs` regenerates them")


class DbtDocs(StaticFiles):
    """Static files of a docs site that may not exist yet: until its index.html does, every path answers
    404 with :data:`NOT_GENERATED` (never a server error, never the folder's path)."""

    def __init__(self, directory: Path):
        super().__init__(directory=directory, html=True, check_dir=False)
        self.index = Path(directory) / "index.html"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.index.is_file():
            await JSONResponse({"error": NOT_GENERATED}, status_code=404)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
