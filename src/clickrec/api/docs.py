"""The API reference a person can open: ``GET /docs`` (Swagger UI, from the package's own
files, no CDN) over ``GET /openapi.json``. Both are public, like the dashboard page: the
schema describes the routes and holds no data; trying a route needs a key ("Authorize")."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from clickrec.api import errors
from clickrec.core.errors import NotFound
from clickrec.core.types import EventBatch

router = APIRouter(include_in_schema=False)
OWN = resources.files("clickrec.api") / "static" / "docs"
SWAGGER_UI = resources.files("fastapi_offline") / "static"
ASSETS = {
    "docs.js": (OWN, "text/javascript; charset=utf-8"),
    "swagger-ui-bundle.js": (SWAGGER_UI, "text/javascript; charset=utf-8"),
    "swagger-ui.css": (SWAGGER_UI, "text/css; charset=utf-8"),
}
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "a clickrec key: ck_…"}}


def schema_of(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema, built once per app: every route but the health checks
    asks for a Bearer key."""
    cached: dict[str, Any] | None = getattr(app.state, "openapi_schema", None)
    if cached is not None:
        return cached
    schema: dict[str, Any] = get_openapi(title=app.title, version=app.version, routes=app.routes)
    errors.add_body_schemas(schema, [EventBatch])
    schema.setdefault("components", {})["securitySchemes"] = BEARER
    for path, operations in schema["paths"].items():
        if path not in ("/healthz", "/readyz"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    app.state.openapi_schema = schema
    return schema


@router.get("/openapi.json")
def openapi(request: Request) -> dict[str, Any]:
    return schema_of(request.app)


@router.get("/docs")
async def page() -> Response:
    return Response(OWN.joinpath("index.html").read_bytes(), media_type="text/html; charset=utf-8")


@router.get("/docs/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no docs file {name}")
    folder, media_type = ASSETS[name]
    return Response(folder.joinpath(name).read_bytes(), media_type=media_type)
