"""The express lane: a POST whose endpoint takes only the request and one JSON body model
goes straight to that endpoint, past FastAPI's middleware, routing and dependency solving
(about 0.1 ms of the event loop's time a request here: as much as the rest of a recall's
HTTP handling together).

A request takes the lane only if its body is JSON that the route's model accepts: parsed
by orjson and checked by the same pydantic model FastAPI would use, so exactly as
strict. Anything else (another content type, bad JSON, a refused field, a body over the
limit) goes on to FastAPI with its body, and FastAPI answers as it always does. An
engram.errors exception from the endpoint gets common.engram_error's answer, as FastAPI's
handler gives it. The spec is FastAPI's: the routes are still its routes.
"""
from __future__ import annotations

import inspect

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from engram import errors
from engram.daemon.common import OrjsonRequest, engram_error, header
from engram.daemon.guard import BodyTooLarge


class Express:
    """ASGI app in front of ``app``: the express lanes of ``routes`` (its routes), else ``app``."""

    def __init__(self, app: FastAPI, routes):
        self.app = app
        self.lanes = {(method, r.path): lane for r in routes if (lane := _lane(r)) for method in r.methods}

    async def __call__(self, scope, receive, send):
        lane = self.lanes.get((scope.get("method"), scope["path"])) if scope["type"] == "http" else None
        if lane is None:
            return await self.app(scope, receive, send)
        request = OrjsonRequest(scope, receive)
        if header(scope, b"content-type") != "application/json":
            return await self.app(scope, receive, send)
        try:
            raw = await request.body()
        except BodyTooLarge as e:                   # FastAPI's handler answers it
            return await self.app(scope, _raising(e), send)
        model, request_name, body_name, endpoint = lane
        try:
            body = model.model_validate(await request.json())
        except ValueError:                          # bad JSON or a refused body: FastAPI says why
            return await self.app(scope, _replay(raw, receive), send)
        try:
            response = await endpoint(**{request_name: request, body_name: body})
        except errors.EngramError as e:
            response = engram_error(e)
        await response(scope, receive, send)


def _lane(route):
    """(body model, request parameter, body parameter, endpoint) of a route that takes just
    the request and one body model at a fixed path; None for any other."""
    if not isinstance(route, APIRoute) or route.param_convertors or not inspect.iscoroutinefunction(route.endpoint):
        return None
    d = route.dependant
    if d.path_params or d.query_params or d.header_params or d.cookie_params or d.dependencies \
            or len(d.body_params) != 1 or d.request_param_name is None:
        return None
    field = d.body_params[0]
    model = field.field_info.annotation
    if getattr(field.field_info, "embed", False) or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return model, d.request_param_name, field.name, route.endpoint


def _replay(body: bytes, receive):
    """A receive that gives ``body`` again, then whatever the connection sends next."""
    given = False

    async def replay():
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay


def _raising(e: Exception):
    async def receive():
        raise e
    return receive
