"""The HTTP API of a daemon's engine (FastAPI on uvicorn; docs/operations/http.md).

Handlers parse and check on the event loop and run every engine call (recall,
spreading, scans, writes and their fsync waits) in a bounded thread pool, so the
loop only moves bytes. The paths and names are orchard9/engram's
(../shared/http-api.md) with real semantics; errors carry Engram's shape,
``{"error": {"code", "message", "type"}}``, where type names the engram.errors
class (engram.Client raises the same).
"""
from __future__ import annotations

from importlib.metadata import version

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from engram import errors
from engram.daemon import memories, recall, stream, system
from engram.daemon import models as m
from engram.daemon.common import Service, engram_error, error_response
from engram.daemon.express import Express
from engram.daemon.guard import BodyTooLarge

__all__ = ["Service", "create_app"]


def create_app(service: Service, *, docs: bool = True) -> Express:
    """The API as an ASGI app: FastAPI, behind the express lane of its JSON-body POSTs."""
    app = FastAPI(title="engram", version=version("engram"), docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/api-docs/openapi.json",
                  description="A cognitive memory engine: remember vectors, link them, recall with spreading "
                              "activation. Paths and names follow orchard9/engram.")
    @app.exception_handler(errors.EngramError)
    async def _engram(request, e):
        return engram_error(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e):
        where = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:5])
        return error_response(400, "INVALID_MEMORY_INPUT", f"invalid request: {where}", "InvalidInputError")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, e):
        return error_response(413, "PAYLOAD_TOO_LARGE", str(e), "InvalidInputError")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e):
        code = {404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(e.status_code, "BAD_REQUEST")
        headers = getattr(e, "headers", None)
        if e.status_code == 405:       # every method of the path, not only the first route's
            allowed = sorted({meth for r in app.routes if isinstance(r, APIRoute) and r.path_regex.match(
                request.url.path) for meth in r.methods})
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return error_response(e.status_code, code, str(e.detail), "EngramError", headers)

    routers = [module.routes(service) for module in (recall, memories, system, stream)]
    for router in routers:                    # recall first: /memories/recall before /memories/{id}
        app.include_router(router)
    app.openapi = lambda: app.openapi_schema or _spec(app, service.engine.dim)
    return Express(app, [r for router in routers for r in router.routes])


def _spec(app: FastAPI, dim: int) -> dict:
    """The generated spec, made exact for this daemon: every embedding has its dim, the
    GET recall's embedding is a JSON-encoded parameter, and the batch's JSON body schema
    is in the components (its route reads the body itself, for the binary form)."""
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    vector = {"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    batch = m.BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(batch.pop("$defs", {}))
    schemas["BatchRequest"] = batch

    def exact(node):
        if isinstance(node, dict):
            props = node.get("properties", {})
            if "embedding" in props:
                props["embedding"] = {**vector, "description": props["embedding"].get("description", "")} \
                    if props["embedding"].get("type") == "array" or "anyOf" not in props["embedding"] \
                    else {"anyOf": [vector, {"type": "null"}]}
            for v in node.values():
                exact(v)
        elif isinstance(node, list):
            for v in node:
                exact(v)
    exact(schemas)
    for ops in spec["paths"].values():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["name"] == "embedding" and p["in"] == "query":
                    p.pop("schema", None)
                    p["content"] = {"application/json": {"schema": vector}}
    app.openapi_schema = spec
    return spec
